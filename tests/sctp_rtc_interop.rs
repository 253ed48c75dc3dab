//! Our SCTP association against an independent implementation: the `rtc` crate's SCTP
//! (sans-IO, no sockets), packets carried by hand on a virtual clock, with losses. Either side
//! starts the handshake; messages flow both ways, fragmented and whole; the peer's stream reset
//! (RFC 6525, a data channel closing) reaches us as `StreamsReset`.
#![cfg(feature = "native")]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lansync::sctp::{Association, Config, Event};
use rtc::sctp::{
    Association as RtcAssociation, ClientConfig, DatagramEvent, Endpoint, EndpointConfig,
    Event as RtcEvent, Payload, PayloadProtocolIdentifier, ServerConfig, StreamEvent,
    TransportConfig,
};
use rtc::shared::TransportProtocol;

fn ours_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4001)
}

fn theirs_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4002)
}

/// Our association and theirs, a virtual clock, and a deterministic loss pattern.
struct Link {
    now: Instant,
    ours: Association,
    ep: Endpoint,
    theirs: Option<RtcAssociation>,
    /// Probability a packet is lost, each direction.
    loss: f64,
    rng: u64,
    /// Messages we received: (stream, payload).
    ours_got: Vec<(u16, Bytes)>,
    ours_events: Vec<Event>,
    /// Messages they received, per stream.
    theirs_got: HashMap<u16, Vec<Bytes>>,
    theirs_connected: bool,
}

impl Link {
    /// `they_connect`: the `rtc` side sends INIT (as the DTLS client would); otherwise we do.
    fn new(they_connect: bool, loss: f64) -> Self {
        let now = Instant::now();
        let server =
            (!they_connect).then(|| Arc::new(ServerConfig::new(TransportConfig::default())));
        let mut ep = Endpoint::new(
            theirs_addr(),
            TransportProtocol::UDP,
            Arc::new(EndpointConfig::default()),
            server,
        );
        let mut ours = Association::new(Config::default(), [9; 16], now);
        let theirs = if they_connect {
            let (_, a) = ep
                .connect(
                    now,
                    ClientConfig::new(TransportConfig::default()),
                    ours_addr(),
                )
                .expect("rtc connect");
            Some(a)
        } else {
            ours.connect(now);
            None
        };
        Self {
            now,
            ours,
            ep,
            theirs,
            loss,
            rng: 0x5eed,
            ours_got: Vec::new(),
            ours_events: Vec::new(),
            theirs_got: HashMap::new(),
            theirs_connected: false,
        }
    }

    /// A seeded pseudo-random loss (splitmix64), the same on every run.
    fn lost(&mut self) -> bool {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < self.loss
    }

    /// Moves every packet both sides have now, then collects events.
    fn exchange(&mut self) -> bool {
        let mut moved = false;
        while let Some(p) = self.ours.poll_transmit(self.now) {
            moved = true;
            if self.lost() {
                continue;
            }
            match self.ep.handle(self.now, ours_addr(), None, Bytes::from(p)) {
                Some((_, DatagramEvent::NewAssociation(a))) => self.theirs = Some(a),
                Some((_, DatagramEvent::AssociationEvent(e))) => {
                    if let Some(a) = self.theirs.as_mut() {
                        a.handle_event(e);
                    }
                }
                _ => {}
            }
        }
        let mut back = Vec::new();
        if let Some(a) = self.theirs.as_mut() {
            while let Some(t) = a.poll_transmit(self.now) {
                if let Payload::RawEncode(packets) = t.message {
                    back.extend(packets);
                }
            }
        }
        for p in back {
            moved = true;
            if !self.lost() {
                self.ours.handle_packet(self.now, &p);
            }
        }
        while let Some(e) = self.ours.poll_event() {
            match e {
                Event::Message {
                    stream, payload, ..
                } => self.ours_got.push((stream, payload)),
                other => self.ours_events.push(other),
            }
        }
        self.theirs_events();
        moved
    }

    fn theirs_events(&mut self) {
        let Some(a) = self.theirs.as_mut() else {
            return;
        };
        let mut readable = Vec::new();
        while let Some(e) = a.poll() {
            match e {
                RtcEvent::Connected => self.theirs_connected = true,
                RtcEvent::Stream(StreamEvent::Opened { id }) => {
                    let _ = a.accept_stream();
                    readable.push(id);
                }
                RtcEvent::Stream(StreamEvent::Readable { id }) => readable.push(id),
                _ => {}
            }
        }
        for id in readable {
            let Ok(mut s) = a.stream(id) else { continue };
            while let Ok(Some(chunks)) = s.read_sctp() {
                let payload = chunks.to_payload(1 << 20).expect("message fits");
                self.theirs_got
                    .entry(id)
                    .or_default()
                    .push(payload.freeze());
            }
        }
    }

    /// Runs until `done` or a virtual minute passes.
    fn run_until(&mut self, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + Duration::from_secs(60);
        while self.now < end {
            while self.exchange() {}
            if done(self) {
                return true;
            }
            let next = [
                self.ours.poll_timeout(),
                self.theirs.as_ref().and_then(|a| a.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else {
                return done(self);
            };
            self.now = self.now.max(next);
            self.ours.handle_timeout(self.now);
            if let Some(a) = self.theirs.as_mut() {
                a.handle_timeout(self.now);
            }
        }
        done(self)
    }

    fn theirs(&mut self) -> &mut RtcAssociation {
        self.theirs.as_mut().expect("their association")
    }
}

fn message(n: u32, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u32).wrapping_mul(31).wrapping_add(n) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn exchange_messages(they_connect: bool, loss: f64) {
    let mut l = Link::new(they_connect, loss);
    assert!(
        l.run_until(|l| l.ours.is_established() && l.theirs_connected),
        "handshake with rtc (they connect: {they_connect})"
    );
    assert!(l.ours_events.contains(&Event::Connected));

    // They send on stream 1: 16 KiB messages (fragmented) and small ones.
    let now = l.now;
    let sizes: Vec<usize> = (0..30)
        .map(|n| if n % 3 == 0 { 100 } else { 16 * 1024 })
        .collect();
    {
        let mut s = l
            .theirs()
            .open_stream(1, PayloadProtocolIdentifier::Binary)
            .expect("open stream");
        for (n, &len) in sizes.iter().enumerate() {
            s.write_sctp(
                now,
                &message(n as u32, len),
                PayloadProtocolIdentifier::Binary,
            )
            .expect("write");
        }
    }
    let ok = l.run_until(|l| l.ours_got.len() == sizes.len());
    assert!(ok, "we got {} of {}", l.ours_got.len(), sizes.len());
    for (n, (stream, payload)) in l.ours_got.iter().enumerate() {
        assert_eq!(*stream, 1);
        assert_eq!(*payload, message(n as u32, sizes[n]), "message {n}");
    }

    // We send on stream 0 (control) and 1 (binary).
    for n in 0..30u32 {
        let stream = (n % 2) as u16;
        let len = if stream == 0 { 300 } else { 16 * 1024 };
        l.ours.send(stream, 53, message(n, len), false).unwrap();
    }
    assert!(
        l.run_until(|l| l.theirs_got.values().map(Vec::len).sum::<usize>() == 30),
        "they got {:?}",
        l.theirs_got
            .iter()
            .map(|(k, v)| (*k, v.len()))
            .collect::<Vec<_>>()
    );
    for stream in 0..2u16 {
        let expected: Vec<Bytes> = (0..30u32)
            .filter(|n| (n % 2) as u16 == stream)
            .map(|n| message(n, if stream == 0 { 300 } else { 16 * 1024 }))
            .collect();
        assert_eq!(l.theirs_got[&stream], expected, "stream {stream}");
    }
    assert!(l.run_until(|l| l.ours.buffered(0) + l.ours.buffered(1) == 0));

    // They close stream 1: an Outgoing SSN Reset Request reaches us.
    let now = l.now;
    l.theirs()
        .stream(1)
        .expect("stream 1")
        .stop(now)
        .expect("reset");
    assert!(
        l.run_until(|l| l.ours_events.contains(&Event::StreamsReset(vec![1]))),
        "no StreamsReset: {:?}",
        l.ours_events
    );
    assert!(l.ours.is_established());
}

#[test]
fn rtc_connects_and_messages_flow_both_ways() {
    exchange_messages(true, 0.0);
}

#[test]
fn we_connect_and_messages_flow_both_ways() {
    exchange_messages(false, 0.0);
}

#[test]
fn messages_flow_both_ways_through_loss() {
    exchange_messages(true, 0.05);
    exchange_messages(false, 0.10);
}
