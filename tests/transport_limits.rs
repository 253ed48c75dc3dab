//! A hostile peer that ignores the advertised `a=max-message-size` (PROTOCOL.md §1): messages
//! over the limits are never delivered, the link is closed, and memory stays bounded. Real links
//! on loopback; the hostile peer is built here directly on the `rtc` engine, answering a lansync
//! offer after rewriting the limit it read in it.
#![cfg(feature = "native")]

use bytes::BytesMut;
use lansync::transport::{self, Link, LinkEvent, TransportConfig};
use rtc::crypto::SignatureScheme;
use rtc::data_channel::RTCDataChannelInit;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::setting_engine::{
    SctpMaxMessageSize, SettingEngineBuilder,
};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

const DEADLINE: Duration = Duration::from_secs(30);

/// What the hostile peer sends once the link is open.
#[derive(Clone, Copy)]
enum Attack {
    /// 256 KiB messages on `control` (stream 0), four times the limit, `total` bytes in all,
    /// each followed by a small, valid message on `binary`: deliveries in between must not
    /// excuse the bytes of the refused ones.
    HugeControl { total: usize },
    /// One 20 KiB message on `binary` (stream 1), over its 16 KiB limit.
    BigBinary,
}

/// The hostile side: an `rtc` peer connection on one loopback socket.
struct Hostile {
    pc: RTCPeerConnection,
    sock: UdpSocket,
    local: std::net::SocketAddr,
}

impl Hostile {
    /// Answers `offer` after raising the `max-message-size` it advertises to the engine's
    /// ceiling, so the engine lets this side send messages over lansync's limit.
    async fn answer(offer: &str) -> (Hostile, String) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = sock.local_addr().unwrap();
        let provider = rtc::crypto::default_provider().unwrap();
        let cert = RTCCertificate::generate(
            provider.crypto(),
            SignatureScheme::EcdsaP256Sha256,
            CertificateParams::new(vec!["hostile".into()]).unwrap(),
        )
        .unwrap();
        let settings = SettingEngineBuilder::new()
            .with_include_loopback_candidate(true)
            .with_sctp_max_message_size(SctpMaxMessageSize::Unbounded)
            .build();
        let config = RTCConfigurationBuilder::new()
            .with_certificates(vec![cert])
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(config)
            .with_setting_engine(settings)
            .build(Instant::now())
            .unwrap();
        for (label, id) in [("control", 0), ("binary", 1)] {
            let init = RTCDataChannelInit {
                ordered: true,
                negotiated: Some(id),
                ..Default::default()
            };
            pc.create_data_channel(label, Some(init)).unwrap();
        }
        let cand = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".into(),
                address: local.ip().to_string(),
                port: local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .unwrap();
        pc.add_local_candidate(RTCIceCandidate::from(&cand).to_json().unwrap())
            .unwrap();

        assert!(offer.contains("a=max-message-size:65536"), "{offer}");
        let lied = offer.replace("a=max-message-size:65536", "a=max-message-size:262144");
        pc.set_remote_description(Instant::now(), RTCSessionDescription::offer(lied).unwrap())
            .unwrap();
        let answer = pc.create_answer(None).unwrap();
        pc.set_local_description(Instant::now(), answer).unwrap();
        let sdp = pc.local_description().unwrap().sdp;
        (Hostile { pc, sock, local }, sdp)
    }

    fn flush(&mut self) {
        while let Some(m) = self.pc.poll_write() {
            let _ = self.sock.try_send_to(&m.message, m.transport.peer_addr);
        }
    }

    /// Runs the peer: opens the channels, sends the ready marker and one ordinary message,
    /// then the attack, paced so this side's own memory stays small. Runs until aborted.
    async fn run(mut self, attack: Attack) {
        let mut buf = vec![0u8; 65536];
        let (mut open, mut attacked) = (0, false);
        let mut sent = 0usize;
        loop {
            while let Some(ev) = self.pc.poll_event() {
                if let RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(_)) = ev {
                    open += 1;
                    if open == 2 {
                        let mut dc = self.pc.data_channel(0).unwrap();
                        dc.send_text(Instant::now(), "{\"lansync\":\"ready\"}")
                            .unwrap();
                        dc.send_text(Instant::now(), "hello").unwrap();
                    }
                }
            }
            while self.pc.poll_read().is_some() {}
            if open == 2 && !attacked {
                match attack {
                    Attack::HugeControl { total } => {
                        // Gone once the victim closed the link: the attack is over.
                        let Some(mut dc) = self.pc.data_channel(0) else {
                            return;
                        };
                        if dc.outstanding_bytes() < 512 * 1024 {
                            if dc
                                .send_text(Instant::now(), "x".repeat(256 * 1024))
                                .is_err()
                            {
                                return;
                            }
                            sent += 256 * 1024;
                            attacked = sent >= total;
                        }
                    }
                    Attack::BigBinary => {
                        let mut dc = self.pc.data_channel(1).unwrap();
                        dc.send(Instant::now(), BytesMut::from(&[7u8; 20 * 1024][..]))
                            .unwrap();
                        self.pc
                            .data_channel(0)
                            .unwrap()
                            .send_text(Instant::now(), "after")
                            .unwrap();
                        attacked = true;
                    }
                }
            }
            self.flush();
            let deadline = self
                .pc
                .poll_timeout()
                .unwrap_or(Instant::now() + Duration::from_millis(50))
                .min(Instant::now() + Duration::from_millis(20));
            let wait = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, self.sock.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) => {
                    let msg = TaggedBytesMut {
                        now: Instant::now(),
                        transport: TransportContext {
                            local_addr: self.local,
                            peer_addr: from,
                            ecn: None,
                            transport_protocol: TransportProtocol::UDP,
                        },
                        message: BytesMut::from(&buf[..n]),
                    };
                    let _ = self.pc.handle_read(msg);
                }
                Ok(Err(_)) => {}
                Err(_) => {
                    let _ = self.pc.handle_timeout(Instant::now());
                }
            }
        }
    }
}

/// Resident set size of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Connects a lansync link (the offerer) to a hostile answerer running `attack`.
async fn attacked_link(attack: Attack) -> (Link, tokio::task::JoinHandle<()>) {
    let cfg = TransportConfig {
        loopback_only: true,
        ..TransportConfig::default()
    };
    let pending = transport::create_offer(&cfg).await.unwrap();
    let (hostile, answer) = Hostile::answer(pending.sdp()).await;
    let task = tokio::spawn(hostile.run(attack));
    let mut link = pending.accept_answer(&answer).await.unwrap();
    link.wait_open(DEADLINE).await.unwrap();
    (link, task)
}

/// Reads the link until it closes; returns the control messages seen and the peak RSS growth.
async fn read_until_closed(link: &mut Link, before: usize) -> (Vec<String>, usize) {
    let mut texts = Vec::new();
    let mut peak = 0;
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let ev = tokio::time::timeout_at(end, link.recv())
            .await
            .expect("the link is closed in time");
        peak = peak.max(rss().saturating_sub(before));
        match ev {
            Some(LinkEvent::Control(t)) => {
                assert!(t.len() <= 65536, "an over-limit message was delivered");
                texts.push(t);
            }
            Some(LinkEvent::Binary(b)) => {
                assert!(
                    b.len() <= 16384,
                    "an over-limit binary message was delivered"
                );
            }
            Some(LinkEvent::Closed) | None => return (texts, peak),
            Some(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_messages_over_64_kib_are_refused_and_the_link_closed() {
    let (mut link, hostile) = attacked_link(Attack::HugeControl {
        total: 64 * 1024 * 1024,
    })
    .await;
    let before = rss();
    let (texts, peak) = read_until_closed(&mut link, before).await;
    hostile.abort();
    assert_eq!(texts, ["hello"], "only the ordinary message is delivered");
    eprintln!("RSS growth while attacked: {} KiB", peak / 1024);
    assert!(peak < 8 * 1024 * 1024, "RSS grew by {peak} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_message_over_16_kib_is_refused_and_the_link_closed() {
    let (mut link, hostile) = attacked_link(Attack::BigBinary).await;
    let (texts, _) = read_until_closed(&mut link, rss()).await;
    hostile.abort();
    assert_eq!(
        texts,
        ["hello"],
        "nothing after the over-limit message is delivered"
    );
}
