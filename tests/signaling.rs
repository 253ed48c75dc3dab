//! The LAN join endpoint over real HTTP on 127.0.0.1: both round trips, every rejection, the
//! size and rate limits, replays, impostor masters, what a sniffer can learn, and one join that
//! ends in a real WebRTC link.
#![cfg(feature = "native")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lansync::auth;
use lansync::protocol::RejectReason;
use lansync::session::{DoorAuth, DoorQuery, DoorReply, DoorSecret, JoinCredentials, SessionCode};
use lansync::signaling::{
    request_join, serve, serve_with_rate_limit, Door, JoinAuth, JoinServer, OfferIn, RateLimit,
    SignalingError, VerifiedAnswer,
};
use lansync::transport::{self, TransportConfig};

const TOKEN: &str = "00112233445566778899aabbccddeeff";
const CODE: &str = "ABCD-EFGH";
const FP: &str = "sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9";
const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
const MEMBER_SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn canned_answer() -> String {
    format!("v=0\r\no=- 2 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=fingerprint:{FP}\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=setup:active\r\n")
}

/// What the test's master knows: the stand-in for the session core behind the door.
#[derive(Debug, Clone, Default)]
struct Session {
    password: Option<String>,
    ended: bool,
    full: bool,
    /// Device id → member secret.
    members: BTreeMap<String, String>,
}

type SessionRef = Arc<Mutex<Session>>;

fn session(password: Option<&str>) -> SessionRef {
    Arc::new(Mutex::new(Session {
        password: password.map(Into::into),
        ..Default::default()
    }))
}

/// A door that answers from `session` at the instant of each query.
fn door(session: SessionRef) -> Door {
    Arc::new(move |q: DoorQuery| {
        let s = session.lock().unwrap().clone();
        let ours = |c: &str| SessionCode::parse(c).is_some_and(|c| c.as_str() == CODE);
        let secret = match q.auth {
            DoorAuth::Token => Some(DoorSecret::Token(TOKEN.into())),
            DoorAuth::Code if q.session_code.as_deref().is_some_and(ours) => {
                Some(DoorSecret::Code {
                    code: CODE.into(),
                    password: s.password.clone().unwrap_or_default(),
                })
            }
            DoorAuth::Code => None,
            DoorAuth::Member => s.members.get(&q.device_id).cloned().map(DoorSecret::Member),
        };
        let verdict = if s.ended {
            Err(RejectReason::SessionEnded)
        } else if s.full && !s.members.contains_key(&q.device_id) {
            Err(RejectReason::SessionFull)
        } else {
            Ok(())
        };
        let reply = DoorReply { secret, verdict };
        Box::pin(async move { reply })
    })
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server whose callback answers every offer with the canned answer and records what it got.
async fn fake_server(session: SessionRef) -> (JoinServer, Arc<Mutex<Vec<OfferIn>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = serve(localhost(), door(session), move |offer: OfferIn| {
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

fn by_member(secret: &str) -> JoinCredentials {
    JoinCredentials {
        member_secret: Some(secret.into()),
        ..Default::default()
    }
}

async fn join(addr: SocketAddr, creds: &JoinCredentials) -> Result<String, SignalingError> {
    request_join(addr, creds, Some(FP), "tablet-7", "Alto 2", OFFER)
        .await
        .map(|a| a.answer)
}

fn rejected(r: Result<String, SignalingError>) -> RejectReason {
    match r {
        Err(SignalingError::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// POSTs raw bytes to `path`; returns the status and the JSON body.
async fn post_raw(addr: SocketAddr, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

async fn post_json(
    addr: SocketAddr,
    path: &str,
    v: &serde_json::Value,
) -> (u16, serde_json::Value) {
    post_raw(addr, path, v.to_string().into_bytes()).await
}

/// A token join made by hand: the start, then the join request's body (not yet sent).
async fn token_request(addr: SocketAddr, device_id: &str) -> serde_json::Value {
    let (status, start) = post_json(
        addr,
        "/v1/join/start",
        &serde_json::json!({"v": 2, "auth": "token", "device_id": device_id}),
    )
    .await;
    assert_eq!(status, 200, "{start}");
    let nonce = auth::unhex(start["nonce"].as_str().unwrap()).unwrap();
    let proof = auth::proof(&auth::token_key(TOKEN), &nonce, device_id, OFFER);
    serde_json::json!({
        "v": 2, "nonce": start["nonce"], "device_id": device_id, "device_name": "Alto 2",
        "offer": OFFER, "proof": auth::hex(&proof),
    })
}

#[tokio::test]
async fn token_join_gets_a_verified_answer() {
    let (server, seen) = fake_server(session(None)).await;
    let answer = join(server.local_addr(), &by_token(TOKEN)).await.unwrap();
    assert_eq!(answer, canned_answer());
    // Without an expected fingerprint the MAC alone is checked; the verified answer names the
    // master's fingerprint.
    let VerifiedAnswer {
        answer,
        fingerprint,
    } = request_join(server.local_addr(), &by_token(TOKEN), None, "d2", "", OFFER)
        .await
        .unwrap();
    assert_eq!(answer, canned_answer());
    assert_eq!(fingerprint, FP);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].device_id, "tablet-7");
    assert_eq!(seen[0].device_name, "Alto 2");
    assert_eq!(seen[0].offer_sdp, OFFER);
    assert_eq!(seen[0].auth, JoinAuth::Token);
    assert_eq!(seen[1].device_id, "d2");
    server.shutdown().await;
}

#[tokio::test]
async fn code_joins_with_and_without_password() {
    let (server, seen) = fake_server(session(None)).await;
    // Typed the way people type codes.
    let answer = join(server.local_addr(), &by_code("abcd efgh", None))
        .await
        .unwrap();
    assert_eq!(answer, canned_answer());
    assert_eq!(seen.lock().unwrap()[0].auth, JoinAuth::Code);
    server.shutdown().await;

    let (server, _) = fake_server(session(Some("sopranos"))).await;
    let addr = server.local_addr();
    assert_eq!(
        join(addr, &by_code(CODE, Some("sopranos"))).await.unwrap(),
        canned_answer()
    );
    // The token still works on a session with a password.
    assert!(join(addr, &by_token(TOKEN)).await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_fails_with_invalid_password() {
    let (server, seen) = fake_server(session(Some("sopranos"))).await;
    let addr = server.local_addr();
    assert_eq!(
        rejected(join(addr, &by_code(CODE, Some("tenors"))).await),
        RejectReason::InvalidPassword
    );
    assert_eq!(
        rejected(join(addr, &by_code(CODE, None)).await),
        RejectReason::InvalidPassword
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "the app saw a refused offer"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_secrets_and_codes_are_rejected_specifically() {
    let (server, seen) = fake_server(session(None)).await;
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
    // A member secret for a device that is no member looks like any wrong secret.
    assert_eq!(
        rejected(join(addr, &by_member(MEMBER_SECRET)).await),
        RejectReason::InvalidToken
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "the app saw a refused offer"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_member_rejoins_with_its_secret_only() {
    let s = session(None);
    s.lock()
        .unwrap()
        .members
        .insert("tablet-7".into(), MEMBER_SECRET.into());
    let (server, seen) = fake_server(s.clone()).await;
    let addr = server.local_addr();
    assert!(join(addr, &by_member(MEMBER_SECRET)).await.is_ok());
    assert_eq!(seen.lock().unwrap()[0].auth, JoinAuth::Member);
    assert_eq!(
        rejected(join(addr, &by_member("ffffffffffffffffffffffffffffffff")).await),
        RejectReason::InvalidToken
    );
    // Another device cannot use tablet-7's secret: the key binds the device id.
    let r = request_join(addr, &by_member(MEMBER_SECRET), None, "tablet-8", "", OFFER).await;
    assert!(
        matches!(r, Err(SignalingError::Rejected(RejectReason::InvalidToken))),
        "{r:?}"
    );
    // A member is let back into a full session.
    s.lock().unwrap().full = true;
    assert!(join(addr, &by_member(MEMBER_SECRET)).await.is_ok());
    assert_eq!(seen.lock().unwrap().len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn ended_and_full_sessions_refuse_joins() {
    let s = session(None);
    let (server, _) = fake_server(s.clone()).await;
    let addr = server.local_addr();
    s.lock().unwrap().full = true;
    assert_eq!(
        rejected(join(addr, &by_token(TOKEN)).await),
        RejectReason::SessionFull
    );
    // A participant of the session ("tablet-7") may always come back, full or not.
    s.lock()
        .unwrap()
        .members
        .insert("tablet-7".into(), MEMBER_SECRET.into());
    assert!(join(addr, &by_token(TOKEN)).await.is_ok());
    s.lock().unwrap().members.clear();
    s.lock().unwrap().ended = true;
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
        let mut s = s.lock().unwrap();
        s.ended = false;
        s.full = false;
    }
    assert!(join(addr, &by_token(TOKEN)).await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn the_verdict_is_taken_when_the_offer_arrives() {
    // The session ends between the two round trips: the join request sees it.
    let s = session(None);
    let (server, seen) = fake_server(s.clone()).await;
    let addr = server.local_addr();
    let request = token_request(addr, "tablet-7").await;
    s.lock().unwrap().ended = true;
    let (status, body) = post_json(addr, "/v1/join", &request).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (410, Some("session_ended"))
    );
    assert!(seen.lock().unwrap().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn a_replayed_join_request_is_refused_and_makes_no_answer() {
    let (server, seen) = fake_server(session(None)).await;
    let addr = server.local_addr();
    let request = token_request(addr, "tablet-7").await;
    let (status, body) = post_json(addr, "/v1/join", &request).await;
    assert_eq!(status, 200, "{body}");
    // The same bytes again, as a sniffer on the LAN would send them.
    for _ in 0..5 {
        let (status, body) = post_json(addr, "/v1/join", &request).await;
        assert_eq!((status, body["error"].as_str()), (403, Some("stale_nonce")));
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a replay reached the application"
    );
    // A nonce that was never issued is no better.
    let mut forged = request.clone();
    forged["nonce"] = "ab".repeat(32).into();
    let (status, body) = post_json(addr, "/v1/join", &forged).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("stale_nonce")));
    assert_eq!(seen.lock().unwrap().len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_proof_for_another_device_id_fails() {
    let (server, seen) = fake_server(session(None)).await;
    let addr = server.local_addr();
    // A sniffed request re-sent under the victim's device id (before the real one).
    let mut stolen = token_request(addr, "tablet-7").await;
    stolen["device_id"] = "victim".into();
    let (status, body) = post_json(addr, "/v1/join", &stolen).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("invalid_token"))
    );
    // A valid proof for another id than the start named.
    let mut switched = token_request(addr, "tablet-7").await;
    let nonce = auth::unhex(switched["nonce"].as_str().unwrap()).unwrap();
    let proof = auth::proof(&auth::token_key(TOKEN), &nonce, "victim", OFFER);
    switched["device_id"] = "victim".into();
    switched["proof"] = auth::hex(&proof).into();
    let (status, body) = post_json(addr, "/v1/join", &switched).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("invalid_token"))
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "the app saw a forged device id"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn app_callback_rejection_reaches_the_client() {
    let server = serve(localhost(), door(session(None)), |_offer: OfferIn| async {
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
    let (server, _) = fake_server(session(None)).await;
    let addr = server.local_addr();

    for path in ["/v1/join/start", "/v1/join"] {
        let (status, body) = post_raw(addr, path, b"{\"v\":2,\"auth\":".to_vec()).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
        let (status, body) = post_json(
            addr,
            path,
            &serde_json::json!({"v": 3, "whatever": "a later version"}),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("version_mismatch"))
        );
    }
    // Version 1 requests (one round trip) are a version mismatch now.
    let v1 = serde_json::json!({
        "v": 1, "auth": "token", "device_id": "d1", "device_name": "x",
        "offer": OFFER, "proof": "00".repeat(32),
    });
    let (status, body) = post_json(addr, "/v1/join", &v1).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("version_mismatch"))
    );
    // A code start without its PAKE message.
    let (status, body) = post_json(
        addr,
        "/v1/join/start",
        &serde_json::json!({"v": 2, "auth": "code", "session_code": CODE, "device_id": "d1"}),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    assert!(join(addr, &by_token(TOKEN)).await.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn oversize_fields_through_the_client_are_bad_requests() {
    let (server, _) = fake_server(session(None)).await;
    let addr = server.local_addr();
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
async fn one_mebibyte_body_is_too_large_and_the_server_carries_on() {
    let (server, seen) = fake_server(session(None)).await;
    let addr = server.local_addr();
    let (status, body) = post_raw(addr, "/v1/join", vec![b' '; 1024 * 1024]).await;
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
    let (server, _) = fake_server(session(None)).await;
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
    // Two requests a join: the burst of 10 serves 5 joins.
    assert!(answered >= 5, "the burst was not served ({answered})");
    // Poll until the bucket has tokens again: a valid join then succeeds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match join(addr, &by_token(TOKEN)).await {
            Ok(answer) => {
                assert_eq!(answer, canned_answer());
                break;
            }
            Err(SignalingError::RateLimited) if tokio::time::Instant::now() < deadline => {
                // A join takes two tokens: wait for the bucket, do not drain it by polling.
                tokio::time::sleep(Duration::from_millis(1000)).await;
            }
            Err(e) => panic!("no recovery from rate limiting: {e:?}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_generous_rate_limit_serves_many_joins_from_one_address() {
    // What a one-host demo with many followers on loopback needs.
    let rate = RateLimit {
        per_sec: 1000.0,
        burst: 100.0,
    };
    let server = serve_with_rate_limit(
        localhost(),
        door(session(None)),
        rate,
        |_o: OfferIn| async { Ok(canned_answer()) },
    )
    .await
    .unwrap();
    for _ in 0..40 {
        join(server.local_addr(), &by_token(TOKEN)).await.unwrap();
    }
    server.shutdown().await;
}

#[tokio::test]
async fn fingerprint_mismatch_is_bad_binding() {
    let (server, _) = fake_server(session(None)).await;
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
    let (server, _) = fake_server(session(None)).await;
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
    assert_eq!(answer.answer, canned_answer());
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
    let server = serve(localhost(), door(session(None)), move |offer: OfferIn| {
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
    let mut follower_link = pending.accept_answer(&answer.answer).await.unwrap();
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

/// What an impostor on the LAN signs its answers with.
#[derive(Clone, Copy)]
enum Forge {
    /// The key of this token (a real MAC for the wrong secret).
    Token(&'static str),
    /// The PAKE run with the session code and this password guess.
    Code(&'static str),
    /// This text, verbatim.
    Mac(&'static str),
}

/// An impostor master: speaks the protocol, answers every join with the canned answer, and signs
/// it as `forge` says, ignoring the follower's proof.
async fn impostor(forge: Forge) -> SocketAddr {
    let keys: Arc<Mutex<BTreeMap<String, auth::Key>>> = Default::default();
    let start_keys = keys.clone();
    let start = move |axum::Json(req): axum::Json<serde_json::Value>| {
        let keys = start_keys.clone();
        async move {
            let nonce = auth::hex(&[7u8; 32]);
            let mut reply = serde_json::json!({ "nonce": nonce });
            if let (Forge::Code(guess), Some(msg)) = (forge, req["pake"].as_str()) {
                let msg = auth::unhex(msg).unwrap();
                let (key, pake) = auth::pake_master(CODE, guess, &msg, [9; 32]).unwrap();
                keys.lock().unwrap().insert(nonce, key);
                reply["pake"] = auth::hex(&pake).into();
            }
            axum::Json(reply)
        }
    };
    let join = move |axum::Json(req): axum::Json<serde_json::Value>| async move {
        let answer = canned_answer();
        let nonce = req["nonce"].as_str().unwrap_or_default().to_string();
        let raw_nonce = auth::unhex(&nonce).unwrap_or_default();
        let mac = match forge {
            Forge::Mac(mac) => mac.to_string(),
            Forge::Token(token) => auth::hex(&auth::answer_mac(
                &auth::token_key(token),
                &raw_nonce,
                &answer,
            )),
            Forge::Code(_) => {
                let key = keys.lock().unwrap().get(&nonce).copied().unwrap_or([0; 32]);
                auth::hex(&auth::answer_mac(&key, &raw_nonce, &answer))
            }
        };
        axum::Json(serde_json::json!({ "answer": answer, "mac": mac }))
    };
    let listener = tokio::net::TcpListener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/v1/join/start", axum::routing::post(start))
        .route("/v1/join", axum::routing::post(join));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test]
async fn an_impostor_master_is_bad_binding() {
    // Sanity: the impostor's MAC construction is right — a follower sharing its token accepts.
    let same = impostor(Forge::Token("deadbeefdeadbeefdeadbeefdeadbeef")).await;
    assert!(join(same, &by_token("deadbeefdeadbeefdeadbeefdeadbeef"))
        .await
        .is_ok());
    // A follower of our session: the impostor cannot sign with our token.
    let r = join(same, &by_token(TOKEN)).await;
    assert!(matches!(r, Err(SignalingError::BadBinding)), "{r:?}");
    // Garbage or missing MACs.
    for mac in ["", "zz", "1111"] {
        let addr = impostor(Forge::Mac(mac)).await;
        let r = join(addr, &by_token(TOKEN)).await;
        assert!(
            matches!(r, Err(SignalingError::BadBinding)),
            "{mac:?}: {r:?}"
        );
    }
}

#[tokio::test]
async fn an_impostor_endpoint_cannot_answer_a_code_password_joiner() {
    let joiner = by_code(CODE, Some("sopranos"));
    // An impostor re-hosting the advertised code, without a password or with another one, and
    // signing its answer with the key its own PAKE run gave it: one wrong guess, no link.
    for guess in ["", "altos", "sopranos "] {
        let addr = impostor(Forge::Code(guess)).await;
        let r = join(addr, &joiner).await;
        assert!(
            matches!(r, Err(SignalingError::BadBinding)),
            "{guess:?}: {r:?}"
        );
    }
    // Sanity: an impostor that guessed the password is accepted — one guess per handshake.
    let lucky = impostor(Forge::Code("sopranos")).await;
    assert!(join(lucky, &joiner).await.is_ok());

    // A second lansync master with the same code and another password (or none) refuses the
    // joiner: nothing it returns can be taken for an answer.
    for password in [None, Some("altos")] {
        let (server, seen) = fake_server(session(password)).await;
        let r = join(server.local_addr(), &joiner).await;
        assert!(
            matches!(r, Err(SignalingError::Rejected(_))),
            "{password:?}: {r:?}"
        );
        assert!(seen.lock().unwrap().is_empty());
        server.shutdown().await;
    }
}

/// A TCP relay that records every byte each way: what a sniffer on the LAN sees.
async fn sniffer(to: SocketAddr) -> (SocketAddr, Arc<Mutex<(Vec<u8>, Vec<u8>)>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen: Arc<Mutex<(Vec<u8>, Vec<u8>)>> = Default::default();
    let listener = tokio::net::TcpListener::bind(localhost()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(to).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let (up, down) = (log.clone(), log.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = cr.read(&mut buf).await {
                    up.lock().unwrap().0.extend_from_slice(&buf[..n]);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = sr.read(&mut buf).await {
                    down.lock().unwrap().1.extend_from_slice(&buf[..n]);
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Every JSON object that starts a line or a body in `bytes` (HTTP bodies here are one object).
fn json_objects(bytes: &[u8]) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'{' && (i == 0 || bytes[i - 1] == b'\n') {
            let mut it = serde_json::Deserializer::from_slice(&bytes[i..]).into_iter();
            if let Some(Ok(v)) = it.next() {
                found.push(v);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_sniffed_code_join_cannot_be_checked_offline() {
    let password = "sopranos";
    let (server, _) = fake_server(session(Some(password))).await;
    let (relay, seen) = sniffer(server.local_addr()).await;
    join(relay, &by_code(CODE, Some(password))).await.unwrap();
    let (up, down) = seen.lock().unwrap().clone();
    let requests = json_objects(&up);
    let replies = json_objects(&down);
    let request = requests
        .iter()
        .find(|v| v.get("proof").is_some())
        .expect("the join request was seen");
    let answer = replies
        .iter()
        .find(|v| v.get("mac").is_some())
        .expect("the answer was seen");
    let proof = auth::unhex(request["proof"].as_str().unwrap()).unwrap();
    let mac = auth::unhex(answer["mac"].as_str().unwrap()).unwrap();
    let nonce = auth::unhex(request["nonce"].as_str().unwrap_or_default()).unwrap_or_default();
    let offer = request["offer"].as_str().unwrap();
    let device = request["device_id"].as_str().unwrap();
    let sdp = answer["answer"].as_str().unwrap();

    // An offline guesser holding the right password: every key made from the code and password
    // alone, over every transcript the wire shows, must fail to verify what it captured.
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    let candidate_keys: Vec<Vec<u8>> = [
        &b"lansync join code\0"[..],
        &b"lansync join token\0"[..],
        &b""[..],
    ]
    .iter()
    .map(|label| {
        Sha256::new()
            .chain_update(label)
            .chain_update(CODE.as_bytes())
            .chain_update(b"\0")
            .chain_update(password.as_bytes())
            .finalize()
            .to_vec()
    })
    .collect();
    let mut transcripts: Vec<Vec<u8>> = vec![offer.as_bytes().to_vec(), sdp.as_bytes().to_vec()];
    for label in [&b"lansync join v2\0"[..], &b"lansync answer v2\0"[..]] {
        let mut t = label.to_vec();
        t.extend_from_slice(&nonce);
        t.extend_from_slice(device.as_bytes());
        t.push(0);
        t.extend_from_slice(offer.as_bytes());
        transcripts.push(t);
        let mut t = label.to_vec();
        t.extend_from_slice(&nonce);
        t.extend_from_slice(sdp.as_bytes());
        transcripts.push(t);
    }
    for key in &candidate_keys {
        for data in &transcripts {
            for captured in [&proof, &mac] {
                let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
                m.update(data);
                assert!(
                    m.verify_slice(captured).is_err(),
                    "a captured MAC verifies under a key made from the password alone"
                );
            }
        }
    }
    // The PAKE messages on the wire change with every join, with the same password.
    let pake = |reqs: &[serde_json::Value]| {
        reqs.iter()
            .find_map(|v| v["pake"].as_str().map(str::to_string))
            .expect("a code join carries its PAKE message")
    };
    let first = pake(&requests);
    join(relay, &by_code(CODE, Some(password))).await.unwrap();
    let (up, _) = seen.lock().unwrap().clone();
    let again: Vec<String> = json_objects(&up)
        .iter()
        .filter_map(|v| v["pake"].as_str().map(str::to_string))
        .collect();
    assert_eq!(again.len(), 2);
    assert_ne!(again[1], first);
    server.shutdown().await;
}
