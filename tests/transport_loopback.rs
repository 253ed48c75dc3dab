//! Real WebRTC between two links in one process, over loopback.

use std::time::Duration;

use lansync::transport::{
    accept_offer, create_offer, Identity, Link, LinkEvent, TransportConfig, TransportError,
    MAX_BINARY_MESSAGE, MAX_CONTROL_MESSAGE,
};

const DEADLINE: Duration = Duration::from_secs(20);

fn cfg() -> TransportConfig {
    TransportConfig {
        loopback_only: true,
        ..Default::default()
    }
}

/// Makes a pair of links: (offerer, answerer), both open.
async fn open_pair() -> (Link, Link) {
    let offer = create_offer(&cfg()).await.expect("offer");
    let (answer, mut b) = accept_offer(&cfg(), offer.sdp()).await.expect("answer");
    let mut a = offer.accept_answer(&answer).await.expect("accept answer");
    let (ra, rb) = tokio::join!(a.wait_open(DEADLINE), b.wait_open(DEADLINE));
    ra.expect("offerer open");
    rb.expect("answerer open");
    (a, b)
}

/// The next event that is not a connectivity blip.
async fn next(link: &mut Link) -> LinkEvent {
    loop {
        let ev = tokio::time::timeout(DEADLINE, link.recv())
            .await
            .expect("event in time")
            .expect("link still alive");
        if !matches!(ev, LinkEvent::Down | LinkEvent::Up) {
            return ev;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_messages_both_ways_in_order() {
    let (mut a, mut b) = open_pair().await;
    let (sa, sb) = (a.sender(), b.sender());
    assert!(sa.is_open() && sb.is_open());
    for i in 0..100 {
        sa.send_control(&format!("a{i}")).await.unwrap();
        sb.send_control(&format!("b{i}")).await.unwrap();
    }
    for i in 0..100 {
        assert_eq!(next(&mut b).await, LinkEvent::Control(format!("a{i}")));
        assert_eq!(next(&mut a).await, LinkEvent::Control(format!("b{i}")));
    }
    // The largest allowed control message goes through whole, and so does an empty one.
    let big = "x".repeat(MAX_CONTROL_MESSAGE);
    sa.send_control(&big).await.unwrap();
    assert_eq!(next(&mut b).await, LinkEvent::Control(big));
    sa.send_control("").await.unwrap();
    sa.send_control("after empty").await.unwrap();
    let ev = next(&mut b).await;
    if ev == LinkEvent::Control(String::new()) {
        assert_eq!(next(&mut b).await, LinkEvent::Control("after empty".into()));
    } else {
        assert_eq!(ev, LinkEvent::Control("after empty".into()));
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_messages_arrive_intact_with_backpressure() {
    let (a, mut b) = open_pair().await;
    let sa = a.sender();
    const N: usize = 2000; // ~32 MB: far beyond the 1 MiB send buffer, so senders must wait
    let sender = tokio::spawn(async move {
        for i in 0..N {
            let mut msg = vec![0u8; MAX_BINARY_MESSAGE];
            msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
            for (j, byte) in msg.iter_mut().enumerate().skip(8) {
                *byte = (i + j) as u8;
            }
            sa.send_binary(&msg).await.unwrap();
            assert!(sa.buffered_binary() <= 1024 * 1024 + MAX_BINARY_MESSAGE);
        }
        sa
    });
    for i in 0..N {
        match next(&mut b).await {
            LinkEvent::Binary(data) => {
                assert_eq!(data.len(), MAX_BINARY_MESSAGE);
                assert_eq!(u64::from_le_bytes(data[..8].try_into().unwrap()), i as u64);
                assert!(data
                    .iter()
                    .enumerate()
                    .skip(8)
                    .all(|(j, &v)| v == (i + j) as u8));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let _sa = sender.await.unwrap();
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_does_not_lose_messages() {
    let (a, mut b) = open_pair().await;
    let sa = a.sender();
    // More events than the event channel holds, sent before the reader reads anything.
    const N: usize = 5000;
    for i in 0..N {
        sa.send_binary(&(i as u32).to_le_bytes()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..N {
        assert_eq!(
            next(&mut b).await,
            LinkEvent::Binary(bytes::Bytes::copy_from_slice(&(i as u32).to_le_bytes()))
        );
    }
    a.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused() {
    let (a, b) = open_pair().await;
    let s = a.sender();
    let big = "y".repeat(MAX_CONTROL_MESSAGE + 1);
    assert!(matches!(
        s.send_control(&big).await,
        Err(TransportError::TooLarge { limit, len })
            if limit == MAX_CONTROL_MESSAGE && len == MAX_CONTROL_MESSAGE + 1
    ));
    let bin = vec![0u8; MAX_BINARY_MESSAGE + 1];
    assert!(matches!(
        s.send_binary(&bin).await,
        Err(TransportError::TooLarge { limit, .. }) if limit == MAX_BINARY_MESSAGE
    ));
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_before_open_is_an_error() {
    let offer = create_offer(&cfg()).await.unwrap();
    let (_answer, b) = accept_offer(&cfg(), offer.sdp()).await.unwrap();
    // The offerer has not applied the answer, so the answerer cannot be open.
    let s = b.sender();
    assert!(!s.is_open());
    assert!(matches!(
        s.send_control("hi").await,
        Err(TransportError::NotOpen)
    ));
    assert!(matches!(
        s.send_binary(b"hi").await,
        Err(TransportError::NotOpen)
    ));
    drop(offer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_seen_by_the_peer() {
    let (a, mut b) = open_pair().await;
    let sb = b.sender();
    a.close().await;
    let ev = tokio::time::timeout(DEADLINE, b.recv())
        .await
        .expect("event in time");
    assert_eq!(ev, Some(LinkEvent::Closed));
    // After Closed the link ends, and sends fail.
    assert_eq!(
        tokio::time::timeout(DEADLINE, b.recv()).await.unwrap(),
        None
    );
    assert!(matches!(
        sb.send_control("late").await,
        Err(TransportError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_link_closes_it_for_the_peer() {
    let (a, mut b) = open_pair().await;
    drop(a);
    let ev = tokio::time::timeout(DEADLINE, b.recv())
        .await
        .expect("event in time");
    assert_eq!(ev, Some(LinkEvent::Closed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sdp_is_refused() {
    assert!(matches!(
        accept_offer(&cfg(), "not an sdp").await,
        Err(TransportError::BadSdp(_))
    ));
    let offer = create_offer(&cfg()).await.unwrap();
    assert!(matches!(
        offer.accept_answer("v=0\r\ngarbage").await,
        Err(TransportError::BadSdp(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_sdp_carries_candidates_and_fingerprint() {
    let id = Identity::generate().unwrap();
    let c = TransportConfig {
        certificate: Some(id.clone()),
        ..cfg()
    };
    let offer = create_offer(&c).await.unwrap();
    let sdp = offer.sdp();
    assert!(sdp.contains("a=candidate:"), "{sdp}");
    assert!(sdp.contains("127.0.0.1"), "{sdp}");
    let fp = id.fingerprint();
    assert!(
        sdp.contains(&format!("a=fingerprint:{fp}")),
        "{fp} not in {sdp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_identity_is_presented() {
    let id = Identity::from_pem(&Identity::generate().unwrap().to_pem()).unwrap();
    let c = TransportConfig {
        certificate: Some(id),
        ..cfg()
    };
    let offer = create_offer(&c).await.unwrap();
    let (answer, mut b) = accept_offer(&cfg(), offer.sdp()).await.unwrap();
    let mut a = offer.accept_answer(&answer).await.unwrap();
    let (ra, rb) = tokio::join!(a.wait_open(DEADLINE), b.wait_open(DEADLINE));
    ra.unwrap();
    rb.unwrap();
}

/// A cut (all datagrams to one side dropped) is reported as Down, and the return of traffic as
/// Up; the link stays usable afterwards. Takes ~6 s: ICE declares loss after 5 s of silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_and_recovery_are_reported() {
    let (mut a, mut b) = open_pair().await;
    let (sa, sb) = (a.sender(), b.sender());
    sa.simulate_receive_loss(true);
    let ev = tokio::time::timeout(DEADLINE, a.recv())
        .await
        .expect("Down in time");
    assert_eq!(ev, Some(LinkEvent::Down));
    sa.simulate_receive_loss(false);
    let ev = tokio::time::timeout(DEADLINE, a.recv())
        .await
        .expect("Up in time");
    assert_eq!(ev, Some(LinkEvent::Up));
    sb.send_control("still here").await.unwrap();
    assert_eq!(next(&mut a).await, LinkEvent::Control("still here".into()));
    // The other side saw traffic from `a` all along (its requests kept arriving): no event.
    sa.send_control("and back").await.unwrap();
    assert_eq!(
        tokio::time::timeout(DEADLINE, b.recv()).await.unwrap(),
        Some(LinkEvent::Control("and back".into()))
    );
}

/// The answer reaches the offerer late (a person scanning a code): the answerer's checks have
/// given up by then, and the link must still come up when the offerer starts checking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_answer_still_connects() {
    let offer = create_offer(&cfg()).await.unwrap();
    let (answer, mut b) = accept_offer(&cfg(), offer.sdp()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut a = offer.accept_answer(&answer).await.unwrap();
    let (ra, rb) = tokio::join!(a.wait_open(DEADLINE), b.wait_open(DEADLINE));
    ra.unwrap();
    rb.unwrap();
    a.sender().send_control("late but fine").await.unwrap();
    assert_eq!(
        next(&mut b).await,
        LinkEvent::Control("late but fine".into())
    );
}

/// Datagrams from a stranger (junk shaped like STUN, DTLS, RTP, or nothing) reach a link's
/// socket: they are dropped and the link keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_datagrams_are_harmless() {
    let offer = create_offer(&cfg()).await.unwrap();
    let (answer, mut b) = accept_offer(&cfg(), offer.sdp()).await.unwrap();
    let port: u16 = answer
        .lines()
        .find(|l| l.starts_with("a=candidate:"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|p| p.parse().ok())
        .expect("candidate port in answer");
    let mut a = offer.accept_answer(&answer).await.unwrap();
    let (ra, rb) = tokio::join!(a.wait_open(DEADLINE), b.wait_open(DEADLINE));
    ra.unwrap();
    rb.unwrap();

    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = ("127.0.0.1", port);
    let mut seed = 0x1234_5678_u32;
    for i in 0..2000 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let len = (seed % 1500) as usize;
        let mut junk: Vec<u8> = (0..len)
            .map(|j| (seed.rotate_left(j as u32 % 32) >> 3) as u8)
            .collect();
        if let Some(first) = junk.first_mut() {
            // Cycle the first byte through the demultiplexing ranges (STUN, DTLS, RTP, other).
            *first = [0u8, 1, 20, 22, 23, 64, 128, 200][i % 8];
        }
        let _ = stranger.send_to(&junk, target);
    }
    let _ = stranger.send_to(&[], target);

    a.sender().send_control("still fine").await.unwrap();
    assert_eq!(next(&mut b).await, LinkEvent::Control("still fine".into()));
    b.sender().send_binary(b"and this").await.unwrap();
    assert_eq!(
        next(&mut a).await,
        LinkEvent::Binary(bytes::Bytes::from_static(b"and this"))
    );
}

/// Mangled SDP (truncated, bytes flipped, lines dropped) never panics: it is refused or, if it
/// still makes sense, accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_sdp_never_panics() {
    let offer = create_offer(&cfg()).await.unwrap();
    let good = offer.sdp().to_owned();
    let mut seed = 0x9e37_79b9_u32;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as usize
    };
    for round in 0..300 {
        let mut bytes = good.clone().into_bytes();
        match round % 3 {
            0 => bytes.truncate(rnd() % bytes.len()),
            1 => {
                for _ in 0..(1 + rnd() % 8) {
                    let i = rnd() % bytes.len();
                    bytes[i] = b" :=/0123456789abcdef\r\nax-"[rnd() % 25];
                }
            }
            _ => {
                let lines: Vec<&str> = good.split("\r\n").collect();
                let skip = rnd() % lines.len();
                bytes = lines
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, l)| *l)
                    .collect::<Vec<_>>()
                    .join("\r\n")
                    .into_bytes();
            }
        }
        let sdp = String::from_utf8_lossy(&bytes).into_owned();
        if let Ok((_answer, link)) = accept_offer(&cfg(), &sdp).await {
            drop(link);
        }
        // The same damage applied to an answer.
        if round % 3 == 0 {
            let (answer, _b) = accept_offer(&cfg(), &good).await.unwrap();
            let cut = answer.len() * (rnd() % 100) / 100;
            let fresh = create_offer(&cfg()).await.unwrap();
            if let Ok(link) = fresh.accept_answer(&answer[..cut]).await {
                drop(link);
            }
        }
    }
}

/// The offerer may open first and speak at once, while the answerer has not yet looked at its
/// link (a master still handing the new link to its node): nothing it says may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_before_the_answerer_waits_for_open_are_kept() {
    let offer = create_offer(&cfg()).await.unwrap();
    let (answer, mut answerer) = accept_offer(&cfg(), offer.sdp()).await.unwrap();
    let mut offerer = offer.accept_answer(&answer).await.unwrap();
    offerer.wait_open(Duration::from_secs(20)).await.unwrap();
    let tx = offerer.sender();
    for i in 0..5 {
        tx.send_control(&format!("early {i}")).await.unwrap();
    }
    answerer.wait_open(Duration::from_secs(20)).await.unwrap();
    for i in 0..5 {
        assert_eq!(
            next(&mut answerer).await,
            LinkEvent::Control(format!("early {i}"))
        );
    }
}

/// An offer that insists on `a=setup:active` gets a passive answer: the offerer is then the
/// DTLS client (as when a browser answers `passive`). The answerer speaks as soon as it is
/// open and nothing it says is lost: the negotiated channels are bound from the start,
/// whatever the DTLS roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_answer_makes_the_offerer_the_dtls_client_and_loses_nothing() {
    let offer = create_offer(&cfg()).await.unwrap();
    assert!(
        offer.sdp().contains("a=setup:actpass\r\n"),
        "{}",
        offer.sdp()
    );
    let active = offer.sdp().replace("a=setup:actpass", "a=setup:active");
    let (answer, mut b) = accept_offer(&cfg(), &active).await.unwrap();
    assert!(answer.contains("a=setup:passive\r\n"), "{answer}");
    let mut a = offer.accept_answer(&answer).await.unwrap();
    b.wait_open(DEADLINE).await.unwrap();
    let tx = b.sender();
    for i in 0..5 {
        tx.send_control(&format!("early {i}")).await.unwrap();
    }
    tx.send_binary(b"early bytes").await.unwrap();
    a.wait_open(DEADLINE).await.unwrap();
    for i in 0..5 {
        assert_eq!(next(&mut a).await, LinkEvent::Control(format!("early {i}")));
    }
    assert_eq!(
        next(&mut a).await,
        LinkEvent::Binary(bytes::Bytes::from_static(b"early bytes"))
    );
}

/// The answer we write takes the DTLS client role (`a=setup:active`) for an ordinary offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_answer_is_active() {
    let offer = create_offer(&cfg()).await.unwrap();
    let (answer, _b) = accept_offer(&cfg(), offer.sdp()).await.unwrap();
    assert!(answer.contains("a=setup:active\r\n"), "{answer}");
    assert!(answer.contains("a=max-message-size:65536\r\n"), "{answer}");
}
