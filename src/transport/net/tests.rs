//! STUN URLs, a STUN exchange against a tiny server, segmented sends arriving intact, and
//! the gathering deadline.

use super::*;

#[test]
fn stun_urls() {
    assert_eq!(
        stun_host_port("stun:example.org").as_deref(),
        Some("example.org:3478")
    );
    assert_eq!(
        stun_host_port("stun:example.org:19302").as_deref(),
        Some("example.org:19302")
    );
    assert_eq!(stun_host_port("stun:[::1]").as_deref(), Some("[::1]:3478"));
    assert_eq!(stun_host_port("stun:[::1]:5").as_deref(), Some("[::1]:5"));
    assert_eq!(stun_host_port("turn:example.org"), None);
}

/// A tiny STUN server answers with a made-up public address, which becomes a
/// server-reflexive candidate; the first request is dropped to exercise the resend.
#[tokio::test]
async fn stun_exchange_finds_the_mapped_address() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap();
    let public: SocketAddr = "203.0.113.7:4242".parse().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let mut first = true;
        while let Ok((n, from)) = server.recv_from(&mut buf).await {
            if std::mem::take(&mut first) {
                continue;
            }
            let mut req = Message::new();
            req.raw = buf[..n].to_vec();
            if req.decode().is_err() {
                continue;
            }
            let mut resp = Message::new();
            let built = resp.build(&[
                Box::new(req.transaction_id),
                Box::new(rtc::stun::message::BINDING_SUCCESS),
                Box::new(XorMappedAddress {
                    ip: public.ip(),
                    port: public.port(),
                }),
            ]);
            if built.is_ok() {
                let _ = server.send_to(&resp.raw, from).await;
            }
        }
    });
    let client = bind_one(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    let base = client.addr;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let found = stun_exchange(&[client], &[server_addr], deadline, true).await;
    assert_eq!(found, vec![(base, public)]);
}

/// A run of equal datagrams and a shorter last one arrives intact and in order, whether
/// the kernel coalesced it (UDP_GRO) or not.
#[tokio::test]
async fn segmented_send_arrives_as_the_same_datagrams() {
    let a = bind_one(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    let b = bind_one(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    let sent: Vec<Vec<u8>> = (0..6u8)
        .map(|i| vec![i; if i == 5 { 700 } else { 1200 }])
        .collect();
    let run: Vec<&[u8]> = sent.iter().map(Vec::as_slice).collect();
    a.send_run(b.addr, &run).unwrap();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while got.len() < sent.len() && tokio::time::Instant::now() < deadline {
        b.io.readable().await.unwrap();
        while let Ok((n, from, segment)) = b.recv_coalesced(&mut buf) {
            assert_eq!(from, a.addr);
            let step = if segment == 0 { n } else { segment };
            got.extend(buf[..n].chunks(step).map(<[u8]>::to_vec));
        }
    }
    assert_eq!(got, sent);
}

/// Loopback sockets are never sent to STUN servers, and an unanswered gathering returns
/// at its deadline.
#[tokio::test]
async fn gathering_skips_loopback_and_respects_the_deadline() {
    let client = bind_one(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    let t0 = std::time::Instant::now();
    let found = gather_srflx(
        &[client],
        &["stun:127.0.0.1:9".to_owned(), "turn:127.0.0.1".to_owned()],
        Duration::from_millis(300),
    )
    .await;
    assert!(found.is_empty());
    assert!(t0.elapsed() < Duration::from_secs(1));
}
