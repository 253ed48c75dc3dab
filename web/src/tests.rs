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

mod files {
    use crate::files::{Files, FilesNote};
    use lansync::protocol::{Envelope, Message};
    use lansync::session::Time;
    use lansync::transfer::{
        sha256_hex, FileEntry, Manifest, ManifestKind, Sender, SenderConfig, SenderOutput,
    };

    const T0: Time = Time(1_700_000_000_000_000);

    fn pdf(len: usize) -> Vec<u8> {
        let mut b: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        b[..9].copy_from_slice(b"%PDF-1.7\n");
        b
    }

    fn sender(bytes: &[u8]) -> Sender {
        let manifest = Manifest {
            schema_version: 1,
            kind: ManifestKind::Pack,
            files: vec![FileEntry {
                id: "f0".into(),
                name: "gloria.pdf".into(),
                size: bytes.len() as u64,
                mime: "application/pdf".into(),
                sha256: sha256_hex(bytes),
                media_refs: vec![],
            }],
            updated_at: 1,
            uploaded_by: "master".into(),
        };
        Sender::new(SenderConfig::default(), manifest).unwrap()
    }

    /// Through the wire, as the page gets it.
    fn env(msg: Message) -> Envelope {
        let text = Envelope {
            session_id: "s1".into(),
            sender_id: "master".into(),
            ts: 1,
            seq: 1,
            msg,
        }
        .encode()
        .unwrap();
        Envelope::decode(text.as_bytes()).unwrap()
    }

    /// Runs a round between `sender` (serving `bytes`, with `corrupt` applied to each chunk)
    /// and the page's files until neither has anything to say.
    fn round(
        files: &mut Files,
        sender: &mut Sender,
        bytes: &[u8],
        corrupt: impl Fn(&mut Vec<u8>),
    ) -> Vec<FilesNote> {
        let mut notes = Vec::new();
        sender.offer(T0);
        loop {
            let mut moved = false;
            while let Some(out) = sender.poll_output() {
                moved = true;
                let replies = match out {
                    SenderOutput::Control(m) => files.control(T0, &env(m), &mut notes),
                    SenderOutput::Read { file, offset, len } => {
                        let at = offset as usize;
                        sender
                            .handle_data(T0, file, offset, &bytes[at..at + len])
                            .unwrap();
                        continue;
                    }
                    SenderOutput::Chunk(mut c) => {
                        sender.handle_drained(c.len() as u64);
                        corrupt(&mut c);
                        files.chunk(T0, &c, &mut notes)
                    }
                    SenderOutput::Event(_) => continue,
                };
                for m in replies {
                    let _ = sender.handle_control(T0, &env(m).msg);
                }
            }
            if !moved {
                return notes;
            }
        }
    }

    #[test]
    fn a_pack_is_received_verified_and_handed_over_once() {
        let bytes = pdf(40_000);
        let mut files = Files::default();
        files.set_host("master");
        let notes = round(&mut files, &mut sender(&bytes), &bytes, |_| {});
        assert!(
            notes
                .iter()
                .any(|n| matches!(n, FilesNote::FilesDone { .. })),
            "{notes:?}"
        );
        let list = files.list();
        assert_eq!(list.len(), 1);
        assert!(list[0].verified);
        assert_eq!(files.take(&sha256_hex(&bytes)).as_deref(), Some(&bytes[..]));
        assert_eq!(files.take(&sha256_hex(&bytes)), None);
    }

    #[test]
    fn a_corrupted_file_is_never_handed_over() {
        let bytes = pdf(40_000);
        let mut files = Files::default();
        files.set_host("master");
        let notes = round(&mut files, &mut sender(&bytes), &bytes, |c| {
            if let Some(b) = c.get_mut(20_000 % 16_376 + 8) {
                *b ^= 0xff;
            }
        });
        assert!(
            notes
                .iter()
                .any(|n| matches!(n, FilesNote::FilesFailed { .. })),
            "{notes:?}"
        );
        assert!(!files.list()[0].verified);
        assert_eq!(files.take(&sha256_hex(&bytes)), None);
    }

    #[test]
    fn nothing_is_accepted_before_the_master_is_known() {
        let bytes = pdf(100);
        let mut files = Files::default();
        let notes = round(&mut files, &mut sender(&bytes), &bytes, |_| {});
        assert!(notes.is_empty());
        assert!(files.list().is_empty());
    }
}
