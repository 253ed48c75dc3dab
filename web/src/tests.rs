//! The core as the page drives it, natively (the success paths: a `JsError` needs a browser).

use super::*;
use lansync::auth;

const FRAGMENT: &str = "h=192.168.1.5:47321&c=ABCD-EFGH&t=00112233445566778899aabbccddeeff\
                        &f=0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
const FP: &str = "sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9";

fn drain(core: &mut Core) -> Vec<serde_json::Value> {
    std::iter::from_fn(|| core.poll())
        .map(|t| serde_json::from_str(&t).unwrap())
        .collect()
}

#[test]
fn a_fresh_page_dials_with_the_links_token() {
    let mut core = Core::new(FRAGMENT, "web-1", "Phone", "", &[1; 8], 1.7e12).unwrap();
    let ops = drain(&mut core);
    let dial = ops.iter().find(|o| o["op"] == "dial").expect("a dial");
    assert_eq!(dial["creds"]["token"], "00112233445566778899aabbccddeeff");
    let status: serde_json::Value = serde_json::from_str(&core.status()).unwrap();
    assert_eq!(status["role_state"], "FOLLOWER_JOINING");
    assert_eq!(status["device_id"], "web-1");
}

#[test]
fn a_kept_membership_of_the_same_session_rejoins_as_the_member() {
    let record = serde_json::json!({"role": "follower", "session_id": "s1",
        "session_code": "ABCD-EFGH", "session_name": "Choir", "member_secret": "m1",
        "follow_mode": "follow", "view": {"page_index": 3}});
    let mut core = Core::new(
        FRAGMENT,
        "web-1",
        "Phone",
        &record.to_string(),
        &[1; 8],
        1.7e12,
    )
    .unwrap();
    core.timeout(1.7e12 + 1.0);
    let ops = drain(&mut core);
    let dial = ops.iter().find(|o| o["op"] == "dial").expect("a dial");
    assert_eq!(dial["creds"]["member_secret"], "m1");
    // Another session's membership is not used.
    let other = record.to_string().replace("ABCD-EFGH", "WXYZ-WXYZ");
    let mut core = Core::new(FRAGMENT, "web-1", "Phone", &other, &[1; 8], 1.7e12).unwrap();
    let ops = drain(&mut core);
    let dial = ops.iter().find(|o| o["op"] == "dial").expect("a dial");
    assert!(dial["creds"].get("member_secret").is_none(), "{dial}");
}

#[test]
fn the_handshake_proves_and_checks_with_the_protocols_keys() {
    let core = Core::new(FRAGMENT, "tablet-7", "Phone", "", &[1; 8], 1.7e12).unwrap();
    let creds = r#"{"token":"00112233445566778899aabbccddeeff"}"#;
    let mut hs = core.handshake(creds, &[0; 32]).unwrap();
    let start: serde_json::Value = serde_json::from_str(&hs.start_body()).unwrap();
    assert_eq!(start["auth"], "token");
    let nonce: Vec<u8> = (0..32).collect();
    let reply = format!(r#"{{"nonce":"{}"}}"#, auth::hex(&nonce));
    hs.read_start(200, &reply).unwrap();
    let join: serde_json::Value =
        serde_json::from_str(&hs.join_body("Alto 2", "v=0\r\n").unwrap()).unwrap();
    // PROTOCOL.md §9.2's test vector.
    assert_eq!(
        join["proof"],
        "ecfd7ecf24d8dd2888da88cd0c98e709868638f10c3ccd9d041973ced9565579"
    );
    let answer = format!("v=0\r\na=fingerprint:{FP}\r\n");
    let key = auth::token_key("00112233445566778899aabbccddeeff");
    let mac = auth::hex(&auth::answer_mac(&key, &nonce, &answer));
    let body = serde_json::json!({"answer": answer, "mac": mac}).to_string();
    assert_eq!(hs.read_answer(200, &body).unwrap(), answer);
}
