//! The LAN join endpoint over real HTTP on 127.0.0.1: every rejection, the size and rate limits,
//! impostor masters, and one join that ends in a real WebRTC link.
#![cfg(feature = "native")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use lansync::protocol::RejectReason;
use lansync::session::JoinCredentials;
use lansync::signaling::{
    request_join, serve, serve_with_rate_limit, JoinAuth, JoinPolicy, JoinServer, OfferIn,
    RateLimit, SignalingError,
};
use lansync::transport::{self, TransportConfig};

const TOKEN: &str = "00112233445566778899aabbccddeeff";
const CODE: &str = "ABCD-EFGH";
const FP: &str = "sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9";
const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";

fn canned_answer() -> String {
    format!("v=0\r\no=- 2 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:{FP}\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=setup:active\r\n")
}

fn policy(password: Option<&str>) -> Arc<RwLock<JoinPolicy>> {
    Arc::new(RwLock::new(JoinPolicy {
        session_id: "3f9c2a7be1d04c55".into(),
        session_code: CODE.into(),
        token: TOKEN.into(),
        password: password.map(Into::into),
        ended: false,
        full: false,
        members: Default::default(),
    }))
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server whose callback answers every offer with the canned answer and records what it got.
async fn fake_server(policy: Arc<RwLock<JoinPolicy>>) -> (JoinServer, Arc<Mutex<Vec<OfferIn>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = serve(localhost(), policy, move |offer: OfferIn| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(offer);
            Ok(canned_answer())
        }
    })
    .await
    .unwrap();
    (server, seen)
}

fn by_token(token: &str) -> JoinCredentials {
    JoinCredentials {
        token: Some(token.into()),
        ..Default::default()
    }
}

fn by_code(code: &str, password: Option<&str>) -> JoinCredentials {
    JoinCredentials {
        session_code: Some(code.into()),
        password: password.map(Into::into),
        ..Default::default()
    }
}

async fn join(addr: SocketAddr, creds: &JoinCredentials) -> Result<String, SignalingError> {
    request_join(addr, creds, Some(FP), "tablet-7", "Alto 2", OFFER).await
}

fn rejected(r: Result<String, SignalingError>) -> RejectReason {
    match r {
        Err(SignalingError::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// POSTs raw bytes to the endpoint; returns the status and the JSON body.
async fn post_raw(addr: SocketAddr, body: Vec<u8>) -> (u16, serde_json::Value) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client
        .post(format!("http://{addr}/v1/join"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn token_join_gets_a_verified_answer() {
    let (server, seen) = fake_server(policy(None)).await;
    let answer = join(server.local_addr(), &by_token(TOKEN)).await.unwrap();
    assert_eq!(answer, canned_answer());
    // Without an expected fingerprint the MAC alone is checked.
    let answer = request_join(server.local_addr(), &by_token(TOKEN), None, "d2", "", OFFER)
        .await
        .unwrap();
    assert_eq!(answer, canned_answer());
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].device_id, "tablet-7");
    assert_eq!(seen[0].device_name, "Alto 2");
    assert_eq!(seen[0].offer_sdp, OFFER);
    assert_eq!(seen[0].auth, JoinAuth::Token);
    server.shutdown().await;
}

#[tokio::test]
async fn code_joins_with_and_without_password() {
    let (server, seen) = fake_server(policy(None)).await;
    // Typed the way people type codes.
    let answer = join(server.local_addr(), &by_code("abcd efgh", None))
        .await
        .unwrap();
    assert_eq!(answer, canned_answer());
    assert_eq!(seen.lock().unwrap()[0].auth, JoinAuth::Code);
    server.shutdown().await;

    let (server, _) = fake_server(policy(Some("sopranos"))).await;
    let addr = server.local_addr();
    assert_eq!(
        join(addr, &by_code(CODE, Some("sopranos"))).await.unwrap(),
        canned_answer()
    );
    assert_eq!(
        rejected(join(addr, &by_code(CODE, Some("tenors"))).await),
        RejectReason::InvalidPassword
    );
    assert_eq!(
        rejected(join(addr, &by_code(CODE, None)).await),
        RejectReason::InvalidPassword
    );
    // The token still works on a session with a password.
    assert!(join(addr, &by_token(TOKEN)).await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_secrets_and_codes_are_rejected_specifically() {
    let (server, seen) = fake_server(policy(None)).await;
    let addr = server.local_addr();
    assert_eq!(
        rejected(join(addr, &by_token("ffeeddccbbaa99887766554433221100")).await),
        RejectReason::InvalidToken
    );
    assert_eq!(
        rejected(join(addr, &by_code("WXYZ-2345", None)).await),
        RejectReason::SessionNotFound
    );
    // A code join that proves the wrong secret on a session without a password.
    assert_eq!(
        rejected(join(addr, &by_code(CODE, Some("guess"))).await),
        RejectReason::InvalidToken
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "the app saw a refused offer"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ended_and_full_sessions_refuse_joins() {
    let policy = policy(None);
    let (server, _) = fake_server(policy.clone()).await;
    let addr = server.local_addr();
    policy.write().unwrap().full = true;
    assert_eq!(
        rejected(join(addr, &by_token(TOKEN)).await),
        RejectReason::SessionFull
    );
    // A participant of the session ("tablet-7") may always come back, full or not.
    policy.write().unwrap().members.insert("tablet-7".into());
    assert!(join(addr, &by_token(TOKEN)).await.is_ok());
    policy.write().unwrap().members.clear();
    policy.write().unwrap().ended = true;
    assert_eq!(
        rejected(join(addr, &by_token(TOKEN)).await),
        RejectReason::SessionEnded
    );
    // Authentication comes first: a stranger learns nothing about the session's state.
    assert_eq!(
        rejected(join(addr, &by_token("ffeeddccbbaa99887766554433221100")).await),
        RejectReason::InvalidToken
    );
    {
        let mut p = policy.write().unwrap();
        p.ended = false;
        p.full = false;
    }
    assert!(join(addr, &by_token(TOKEN)).await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn app_callback_rejection_reaches_the_client() {
    let server = serve(localhost(), policy(None), |_offer: OfferIn| async {
        Err(RejectReason::SessionFull)
    })
    .await
    .unwrap();
    assert_eq!(
        rejected(join(server.local_addr(), &by_token(TOKEN)).await),
        RejectReason::SessionFull
    );
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_are_bad_requests() {
    let (server, _) = fake_server(policy(None)).await;
    let addr = server.local_addr();

    let (status, body) = post_raw(addr, b"{\"v\":1,\"auth\":".to_vec()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));

    let (status, body) = post_raw(
        addr,
        serde_json::json!({"v": 2, "whatever": "a later version"})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("version_mismatch"))
    );

    // Oversize fields through the client.
    let long_id = "d".repeat(65);
    let r = request_join(addr, &by_token(TOKEN), None, &long_id, "x", OFFER).await;
    assert!(matches!(r, Err(SignalingError::BadRequest(_))), "{r:?}");
    let long_name = "n".repeat(49);
    let r = request_join(addr, &by_token(TOKEN), None, "d1", &long_name, OFFER).await;
    assert!(matches!(r, Err(SignalingError::BadRequest(_))), "{r:?}");
    let big_offer = format!("{OFFER}{}", "a=x\r\n".repeat(4000));
    let r = request_join(addr, &by_token(TOKEN), None, "d1", "x", &big_offer).await;
    assert!(matches!(r, Err(SignalingError::BadRequest(_))), "{r:?}");
    // A client without credentials does not even ask.
    let r = request_join(addr, &JoinCredentials::default(), None, "d1", "x", OFFER).await;
    assert!(matches!(r, Err(SignalingError::BadRequest(_))), "{r:?}");

    assert!(join(addr, &by_token(TOKEN)).await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn version_mismatch_through_a_well_formed_request() {
    let (server, _) = fake_server(policy(None)).await;
    let req = serde_json::json!({
        "v": 2, "auth": "token", "device_id": "d1", "device_name": "x",
        "offer": OFFER, "proof": "00".repeat(32),
    });
    let (status, body) = post_raw(server.local_addr(), req.to_string().into_bytes()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("version_mismatch"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn one_mebibyte_body_is_too_large_and_the_server_carries_on() {
    let (server, seen) = fake_server(policy(None)).await;
    let addr = server.local_addr();
    let (status, body) = post_raw(addr, vec![b' '; 1024 * 1024]).await;
    assert_eq!((status, body["error"].as_str()), (413, Some("too_large")));
    // Through the client: an offer of 1 MiB.
    let huge = "a".repeat(1024 * 1024);
    let r = request_join(addr, &by_token(TOKEN), None, "d1", "x", &huge).await;
    assert!(matches!(r, Err(SignalingError::TooLarge)), "{r:?}");
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(join(addr, &by_token(TOKEN)).await.unwrap(), canned_answer());
    server.shutdown().await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_the_bucket_refills() {
    let (server, _) = fake_server(policy(None)).await;
    let addr = server.local_addr();
    let mut limited = 0;
    let mut answered = 0;
    for _ in 0..50 {
        match join(addr, &by_token(TOKEN)).await {
            Ok(_) => answered += 1,
            Err(SignalingError::RateLimited) => limited += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(limited > 0, "no request was rate limited");
    assert!(answered >= 10, "the burst was not served ({answered})");
    // Poll until the bucket has a token again: a valid join then succeeds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match join(addr, &by_token(TOKEN)).await {
            Ok(answer) => {
                assert_eq!(answer, canned_answer());
                break;
            }
            Err(SignalingError::RateLimited) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no recovery from rate limiting: {e:?}"),
        }
    }
    server.shutdown().await;
}

/// An impostor on the LAN: an HTTP endpoint that takes any request and answers with a MAC made
/// with the key of `token` (a real MAC for the wrong secret), or with `mac` verbatim.
async fn impostor(token: &'static str, mac: Option<&'static str>) -> SocketAddr {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let listener = tokio::net::TcpListener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/v1/join",
        axum::routing::post(move |_body: axum::body::Bytes| async move {
            let answer = canned_answer();
            let mac = match mac {
                Some(mac) => mac.to_string(),
                None => {
                    let key = Sha256::new()
                        .chain_update(b"lansync join token\0")
                        .chain_update(token.as_bytes())
                        .finalize();
                    let mut m = Hmac::<Sha256>::new_from_slice(&key).unwrap();
                    m.update(answer.as_bytes());
                    m.finalize()
                        .into_bytes()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect()
                }
            };
            axum::Json(serde_json::json!({ "answer": answer, "mac": mac }))
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test]
async fn a_generous_rate_limit_serves_many_joins_from_one_address() {
    // What a one-host demo with many followers on loopback needs.
    let rate = RateLimit {
        per_sec: 1000.0,
        burst: 100.0,
    };
    let server = serve_with_rate_limit(localhost(), policy(None), rate, |_o: OfferIn| async {
        Ok(canned_answer())
    })
    .await
    .unwrap();
    for _ in 0..50 {
        join(server.local_addr(), &by_token(TOKEN)).await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_impostor_master_is_bad_binding() {
    // Sanity: the impostor's MAC construction is right — a follower sharing its token accepts.
    let same = impostor("deadbeefdeadbeefdeadbeefdeadbeef", None).await;
    assert!(join(same, &by_token("deadbeefdeadbeefdeadbeefdeadbeef"))
        .await
        .is_ok());
    // A follower of our session: the impostor cannot sign with our token.
    let other = impostor("deadbeefdeadbeefdeadbeefdeadbeef", None).await;
    let r = join(other, &by_token(TOKEN)).await;
    assert!(matches!(r, Err(SignalingError::BadBinding)), "{r:?}");
    let r = join(other, &by_code(CODE, Some("pw"))).await;
    assert!(matches!(r, Err(SignalingError::BadBinding)), "{r:?}");
    // Garbage or missing MACs.
    for mac in ["", "zz", "1111"] {
        let addr = impostor(TOKEN, Some(mac)).await;
        let r = join(addr, &by_token(TOKEN)).await;
        assert!(
            matches!(r, Err(SignalingError::BadBinding)),
            "{mac:?}: {r:?}"
        );
    }
}

#[tokio::test]
async fn fingerprint_mismatch_is_bad_binding() {
    let (server, _) = fake_server(policy(None)).await;
    let other = FP.replace("0A:1B", "FF:FF");
    let r = request_join(
        server.local_addr(),
        &by_token(TOKEN),
        Some(&other),
        "d1",
        "x",
        OFFER,
    )
    .await;
    assert!(matches!(r, Err(SignalingError::BadBinding)), "{r:?}");
    // The bare-hex form of the right fingerprint (as a join link carries it) matches.
    let bare: String = FP[8..].chars().filter(|c| *c != ':').collect();
    let r = request_join(
        server.local_addr(),
        &by_token(TOKEN),
        Some(&bare),
        "d1",
        "x",
        OFFER,
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn no_master_is_unreachable() {
    // Bind then drop a listener: nothing listens on that port any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = join(addr, &by_token(TOKEN)).await;
    assert!(matches!(r, Err(SignalingError::Unreachable(_))), "{r:?}");
}

#[tokio::test]
async fn join_link_carries_what_request_join_needs() {
    let (server, _) = fake_server(policy(None)).await;
    let link = lansync::invite::JoinLink {
        addr: server.local_addr().ip(),
        port: server.local_addr().port(),
        session_code: CODE.into(),
        token: TOKEN.into(),
        fingerprint: FP.into(),
    };
    let read = lansync::invite::JoinLink::parse(&link.to_url()).unwrap();
    let answer = request_join(
        read.socket_addr(),
        &by_token(&read.token),
        Some(&read.fingerprint),
        "d1",
        "x",
        OFFER,
    )
    .await
    .unwrap();
    assert_eq!(answer, canned_answer());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_webrtc_link_through_the_join_endpoint() {
    let identity = transport::Identity::generate().unwrap();
    let fingerprint = identity.fingerprint();
    let master_cfg = TransportConfig {
        loopback_only: true,
        certificate: Some(identity),
        ..Default::default()
    };
    let (links_tx, mut links_rx) = tokio::sync::mpsc::unbounded_channel();
    let server = serve(localhost(), policy(None), move |offer: OfferIn| {
        let cfg = master_cfg.clone();
        let links = links_tx.clone();
        async move {
            match transport::accept_offer(&cfg, &offer.offer_sdp).await {
                Ok((answer, link)) => {
                    let _ = links.send((offer.device_id, link));
                    Ok(answer)
                }
                Err(_) => Err(RejectReason::Unknown),
            }
        }
    })
    .await
    .unwrap();

    let follower_cfg = TransportConfig {
        loopback_only: true,
        ..Default::default()
    };
    let pending = transport::create_offer(&follower_cfg).await.unwrap();
    let answer = request_join(
        server.local_addr(),
        &by_code(CODE, None),
        Some(&fingerprint),
        "follower-1",
        "Bass 1",
        pending.sdp(),
    )
    .await
    .unwrap();
    let mut follower_link = pending.accept_answer(&answer).await.unwrap();
    let (device_id, mut master_link) =
        tokio::time::timeout(Duration::from_secs(20), links_rx.recv())
            .await
            .unwrap()
            .unwrap();
    assert_eq!(device_id, "follower-1");
    let open = Duration::from_secs(20);
    let (a, b) = tokio::join!(follower_link.wait_open(open), master_link.wait_open(open));
    a.unwrap();
    b.unwrap();
    follower_link.sender().send_control("hello").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), master_link.recv())
        .await
        .unwrap();
    assert_eq!(got, Some(transport::LinkEvent::Control("hello".into())));
    follower_link.close().await;
    master_link.close().await;
    server.shutdown().await;
}
