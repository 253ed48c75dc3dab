//! The association's behaviour, end to end on the simulated network. Over the usual file size on
//! purpose: each case is a short script on one shared simulated pair, and splitting them by topic
//! would only scatter that pair's helpers.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::sctp::chunk::{Chunk, ReconfigParam};
use crate::sctp::packet;
use crate::sctp::recv::reset_result;

const PPID_BINARY: u32 = 53;
const PPID_STRING: u32 = 51;

fn connected_events(p: &Pair, i: usize) -> usize {
    p.events[i]
        .iter()
        .filter(|(_, e)| *e == Event::Connected)
        .count()
}

fn packet_has(p: &Packet, f: impl Fn(&Chunk) -> bool) -> bool {
    p.chunks.iter().any(f)
}

#[test]
fn handshake_when_one_side_connects() {
    let mut p = Pair::clean();
    p.a.connect(p.now);
    assert!(!p.a.is_established());
    assert!(
        p.run_until(Duration::from_millis(10), |p| p.a.is_established()
            && p.b.is_established())
    );
    p.run_for(Duration::from_millis(50));
    assert_eq!(connected_events(&p, 0), 1);
    assert_eq!(connected_events(&p, 1), 1);
}

#[test]
fn handshake_when_both_connect_at_once() {
    let mut p = Pair::clean();
    p.a.connect(p.now);
    p.b.connect(p.now);
    assert!(
        p.run_until(Duration::from_millis(10), |p| p.a.is_established()
            && p.b.is_established())
    );
    p.run_for(Duration::from_millis(50));
    assert_eq!(connected_events(&p, 0), 1);
    assert_eq!(connected_events(&p, 1), 1);
    // Messages flow both ways afterwards.
    p.a.send(0, PPID_STRING, message(1, 10), false).unwrap();
    p.b.send(0, PPID_STRING, message(2, 10), false).unwrap();
    assert!(
        p.run_until(Duration::from_millis(100), |p| p.messages(0).len() == 1
            && p.messages(1).len() == 1)
    );
}

#[test]
fn handshake_survives_lost_init_and_cookie_echo_and_cookie_ack() {
    for lose in ["init", "init-ack", "cookie-echo", "cookie-ack"] {
        let mut p = Pair::clean();
        let mut dropped = false;
        p.filter = Some(Box::new(move |_, pk| {
            let hit = packet_has(pk, |c| match lose {
                "init" => matches!(c, Chunk::Init(_)),
                "init-ack" => matches!(c, Chunk::InitAck(_)),
                "cookie-echo" => matches!(c, Chunk::CookieEcho(_)),
                _ => matches!(c, Chunk::CookieAck),
            });
            if hit && !dropped {
                dropped = true;
                return true;
            }
            false
        }));
        p.a.connect(p.now);
        assert!(
            !p.run_until(Duration::from_millis(150), |p| p.a.is_established()),
            "{lose}: established before the retransmission"
        );
        assert!(
            p.run_until(Duration::from_secs(2), |p| p.a.is_established()
                && p.b.is_established()),
            "{lose}: no handshake"
        );
        p.a.send(0, PPID_STRING, message(7, 10), false).unwrap();
        assert!(p.run_until(Duration::from_secs(1), |p| p.messages(1).len() == 1));
    }
}

#[test]
fn handshake_gives_up_after_eight_retransmissions() {
    let mut p = Pair::clean();
    p.paths[0].loss = 1.0;
    p.a.connect(p.now);
    assert!(p.run_until(Duration::from_secs(60), |p| p.closed(0).is_some()));
    let inits = p.sent.iter().filter(|(d, _)| *d == Dir::AtoB).count();
    assert_eq!(inits, 9, "one INIT and eight retransmissions");
    assert!(!p.a.is_established());
}

#[test]
fn messages_both_ways_arrive_in_order_through_loss_duplication_and_reordering() {
    let path = Path {
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.05,
        ..Path::default()
    };
    let mut p = Pair::new(Config::default(), Config::default(), path, 7).connected();
    for n in 0..300u32 {
        let len = 1 + (n as usize * 37) % 3000;
        p.a.send(n as u16 % 2, PPID_BINARY, message(n, len), false)
            .unwrap();
        p.b.send(0, PPID_STRING, message(n, len), false).unwrap();
    }
    assert!(
        p.run_until(Duration::from_secs(10), |p| p.messages(0).len() == 300
            && p.messages(1).len() == 300)
    );
    for (side, got) in [(1usize, p.messages(1)), (0, p.messages(0))] {
        for stream in 0..2u16 {
            let expected: Vec<Bytes> = (0..300u32)
                .filter(|n| side == 0 && stream == 0 || side == 1 && *n as u16 % 2 == stream)
                .map(|n| message(n, 1 + (n as usize * 37) % 3000))
                .collect();
            let seen: Vec<Bytes> = got
                .iter()
                .filter(|(s, _)| *s == stream)
                .map(|(_, b)| b.clone())
                .collect();
            assert_eq!(seen, expected, "side {side} stream {stream}");
        }
    }
}

#[test]
fn fragmented_64k_messages_arrive_whole() {
    let path = Path {
        loss: 0.02,
        ..Path::default()
    };
    let mut p = Pair::new(Config::default(), Config::default(), path, 3).connected();
    for n in 0..20 {
        p.a.send(1, PPID_BINARY, message(n, 64 * 1024), false)
            .unwrap();
    }
    assert!(p.run_until(Duration::from_secs(10), |p| p.messages(1).len() == 20));
    let got = p.messages(1);
    for (n, (_, m)) in got.iter().enumerate() {
        assert_eq!(*m, message(n as u32, 64 * 1024));
    }
    // Fragments travelled in packets no larger than the MTU.
    assert!(p.sent.iter().all(|(_, len)| *len <= 1200));
}

#[test]
fn a_hole_in_the_binary_stream_does_not_delay_control() {
    let mut p = Pair::clean().connected();
    // Lose the first packet of a large binary message, once.
    let mut dropped = false;
    p.filter = Some(Box::new(move |d, pk| {
        let hit = d == Dir::AtoB
            && packet_has(
                pk,
                |c| matches!(c, Chunk::Data(x) if x.stream == 1 && x.begin),
            );
        if hit && !dropped {
            dropped = true;
            return true;
        }
        false
    }));
    p.a.send(1, PPID_BINARY, message(1, 16 * 1024), false)
        .unwrap();
    p.a.send(0, PPID_STRING, message(2, 100), false).unwrap();
    assert!(p.run_until(Duration::from_secs(2), |p| p.messages(1).len() == 2));
    let streams: Vec<u16> = p.messages(1).iter().map(|(s, _)| *s).collect();
    assert_eq!(
        streams,
        vec![0, 1],
        "control first, the binary message after its repair"
    );
}

#[test]
fn a_message_over_the_size_cap_closes_with_abort() {
    let small = Config {
        max_message_size: 10_000,
        ..Config::default()
    };
    let mut p = Pair::new(Config::default(), small, Path::default(), 1).connected();
    p.a.send(1, PPID_BINARY, message(1, 9_000), false).unwrap();
    p.a.send(1, PPID_BINARY, message(2, 30_000), false).unwrap();
    assert!(
        p.run_until(Duration::from_secs(1), |p| p.closed(0).is_some()
            && p.closed(1).is_some())
    );
    let b = p.closed(1).unwrap();
    assert!(b.contains("message too large"), "{b}");
    let a = p.closed(0).unwrap();
    assert!(
        a.contains("peer aborted") && a.contains("message too large"),
        "{a}"
    );
    // The message under the cap was delivered before the close.
    assert_eq!(p.messages(1).len(), 1);
    assert!(!p.a.is_established() && !p.b.is_established());
}

#[test]
fn a_non_reading_application_pushes_the_sender_back() {
    let window = Config {
        receive_window: 128 * 1024,
        ..Config::default()
    };
    let mut p = Pair::new(Config::default(), window, Path::default(), 1).connected();
    p.reading[1] = false;
    let total = 64u32;
    for n in 0..total {
        p.a.send(1, PPID_BINARY, message(n, 16 * 1024), false)
            .unwrap();
    }
    p.run_for(Duration::from_secs(2));
    let held = p.b.receiver.as_ref().unwrap().held();
    assert!(held <= 128 * 1024 + 1200, "held {held}");
    let waiting = p.a.buffered(1);
    assert!(
        waiting >= 16 * 1024 * total as usize - 128 * 1024 - 16 * 1024,
        "{waiting}"
    );
    assert!(
        p.a.is_established() && p.b.is_established(),
        "no deadlock close"
    );
    p.reading[1] = true;
    assert!(p.run_until(Duration::from_secs(5), |p| p.messages(1).len()
        == total as usize));
    for (n, (_, m)) in p.messages(1).iter().enumerate() {
        assert_eq!(*m, message(n as u32, 16 * 1024));
    }
    assert!(p.run_until(Duration::from_secs(1), |p| p.a.buffered(1) == 0));
}

#[test]
fn acked_event_tells_the_sender_room_opened() {
    let mut p = Pair::clean().connected();
    p.a.send(1, PPID_BINARY, message(1, 5000), false).unwrap();
    assert!(p.a.buffered(1) > 0);
    assert!(p.run_until(Duration::from_secs(1), |p| p.events[0]
        .iter()
        .any(|(_, e)| *e == Event::Acked)));
    assert!(p.run_until(Duration::from_secs(1), |p| p.a.buffered(1) == 0));
}

/// A packet to B under B's own tag, as A would send it.
fn to_b(p: &Pair, chunks: Vec<Chunk>) -> Vec<u8> {
    tagged(p.b.local_tag, chunks)
}

fn tagged(tag: u32, chunks: Vec<Chunk>) -> Vec<u8> {
    Packet {
        src_port: 5000,
        dst_port: 5000,
        verification_tag: tag,
        chunks,
    }
    .encode()
}

/// B's packets right now, decoded.
fn from_b(p: &mut Pair) -> Vec<Packet> {
    let mut out = Vec::new();
    while let Some(bytes) = p.b.poll_transmit(p.now) {
        out.push(Packet::decode(&Bytes::from(bytes)).unwrap());
    }
    out
}

#[test]
fn reconfig_resets_incoming_streams_after_their_last_message() {
    let mut p = Pair::clean().connected();
    for n in 0..3 {
        p.a.send(1, PPID_BINARY, message(n, 100), false).unwrap();
    }
    assert!(p.run_until(Duration::from_secs(1), |p| p.messages(1).len() == 3));
    let last_tsn = p.a.sender.as_ref().unwrap().last_assigned_tsn();
    let request = ReconfigParam::OutgoingReset {
        request_seq: p.a.initial_tsn,
        response_seq: 0,
        last_tsn,
        streams: vec![1],
    };
    let now = p.now;
    let bytes = to_b(&p, vec![Chunk::Reconfig(vec![request])]);
    p.b.handle_packet(now, &bytes);
    let answers: Vec<ReconfigParam> = from_b(&mut p)
        .into_iter()
        .flat_map(|pk| pk.chunks)
        .filter_map(|c| match c {
            Chunk::Reconfig(params) => Some(params),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        answers,
        vec![ReconfigParam::Response {
            response_seq: p.a.initial_tsn,
            result: reset_result::PERFORMED
        }]
    );
    p.collect();
    assert_eq!(
        p.events[1].last().map(|(_, e)| e.clone()),
        Some(Event::StreamsReset(vec![1]))
    );
    // Any other request is denied.
    let other = ReconfigParam::IncomingReset {
        request_seq: p.a.initial_tsn.wrapping_add(1),
        streams: vec![1],
    };
    let bytes = to_b(&p, vec![Chunk::Reconfig(vec![other])]);
    p.b.handle_packet(now, &bytes);
    let denied = from_b(&mut p)
        .into_iter()
        .flat_map(|pk| pk.chunks)
        .any(|c| {
            c == Chunk::Reconfig(vec![ReconfigParam::Response {
                response_seq: p.a.initial_tsn.wrapping_add(1),
                result: reset_result::DENIED,
            }])
        });
    assert!(denied);
}

#[test]
fn close_sends_abort_and_the_peer_closes() {
    let mut p = Pair::clean().connected();
    p.a.close(p.now);
    assert!(!p.a.is_established());
    assert_eq!(
        p.a.send(0, PPID_STRING, message(1, 5), false),
        Err(crate::sctp::association::SendError::NotEstablished)
    );
    assert!(p.run_until(Duration::from_millis(10), |p| p.closed(1).is_some()));
    assert_eq!(p.closed(0).as_deref(), Some("closed"));
    assert_eq!(
        p.closed(1).as_deref(),
        Some("peer aborted (user abort: closed)")
    );
    assert!(!p.b.is_established());
    // Closed is the last event, and nothing more happens.
    assert!(p.a.poll_timeout().is_none() && p.b.poll_timeout().is_none());
    assert!(!p.step());
}

#[test]
fn shutdown_is_acknowledged_and_closes() {
    let mut p = Pair::clean().connected();
    let now = p.now;
    let bytes = to_b(&p, vec![Chunk::Shutdown { cum_tsn_ack: 0 }]);
    p.b.handle_packet(now, &bytes);
    let out = from_b(&mut p);
    assert!(out
        .iter()
        .any(|pk| packet_has(pk, |c| *c == Chunk::ShutdownAck)));
    assert!(!p.b.is_established());
    p.collect();
    assert!(p.closed(1).is_some());
}

#[test]
fn a_forged_cookie_is_refused() {
    let mut p = Pair::clean();
    let now = p.now;
    // A cookie of the right length that B did not issue.
    let forged = Chunk::CookieEcho(Bytes::from(vec![7u8; 54]));
    let bytes = to_b(&p, vec![forged]);
    p.b.handle_packet(now, &bytes);
    assert!(!p.b.is_established());
    assert!(from_b(&mut p).is_empty(), "no COOKIE ACK");
    // A real cookie with one byte changed (the peer's tag) is refused too.
    p.a.connect(now);
    let init = p.a.poll_transmit(now).unwrap();
    p.b.handle_packet(now, &init);
    let ack = from_b(&mut p).remove(0);
    let Chunk::InitAck(ack) = &ack.chunks[0] else {
        panic!("INIT ACK expected")
    };
    let mut cookie = ack.cookie.clone().unwrap().to_vec();
    cookie[6] ^= 1;
    let bytes = to_b(&p, vec![Chunk::CookieEcho(Bytes::from(cookie))]);
    p.b.handle_packet(now, &bytes);
    assert!(!p.b.is_established());
    // The genuine one works, with DATA bundled after it; the COOKIE ACK leads the answer
    // (RFC 9260 §5.1 D), the SACK follows.
    let data = Chunk::Data(crate::sctp::chunk::Data {
        tsn: p.a.initial_tsn,
        stream: 0,
        ssn: 0,
        ppid: PPID_STRING,
        unordered: false,
        begin: true,
        end: true,
        immediate: true,
        payload: message(1, 10),
    });
    let bytes = to_b(
        &p,
        vec![Chunk::CookieEcho(ack.cookie.clone().unwrap()), data],
    );
    p.b.handle_packet(now, &bytes);
    assert!(p.b.is_established());
    let answer = from_b(&mut p);
    assert_eq!(answer[0].chunks[0], Chunk::CookieAck);
    assert!(matches!(&answer[0].chunks[1], Chunk::Sack(s) if s.cum_tsn_ack == p.a.initial_tsn));
    p.collect();
    assert_eq!(p.messages(1).len(), 1);
}

#[test]
fn tsns_wrap_around() {
    let mut p = Pair::clean();
    p.a.initial_tsn = u32::MAX - 40;
    let mut p = Pair {
        paths: [
            Path {
                loss: 0.05,
                ..Path::default()
            },
            Path::default(),
        ],
        ..p
    }
    .connected();
    for n in 0..100 {
        p.a.send(1, PPID_BINARY, message(n, 3000), false).unwrap();
    }
    assert!(p.run_until(Duration::from_secs(5), |p| p.messages(1).len() == 100));
    for (n, (_, m)) in p.messages(1).iter().enumerate() {
        assert_eq!(*m, message(n as u32, 3000));
    }
}

#[test]
fn a_wrong_verification_tag_is_dropped() {
    let mut p = Pair::clean().connected();
    let now = p.now;
    let abort = Chunk::Abort {
        reflected: false,
        causes: Bytes::new(),
    };
    p.b.handle_packet(now, &tagged(p.b.local_tag ^ 1, vec![abort.clone()]));
    assert!(p.b.is_established(), "ABORT under a wrong tag ignored");
    // With the T bit, the tag must be the peer's (A's) own.
    let reflected = Chunk::Abort {
        reflected: true,
        causes: Bytes::new(),
    };
    p.b.handle_packet(now, &tagged(p.b.local_tag, vec![reflected.clone()]));
    assert!(p.b.is_established());
    // An INIT under a non-zero tag, or bundled, is dropped.
    let init = Chunk::Init(p.a.our_init(None));
    p.b.handle_packet(now, &tagged(7, vec![init.clone()]));
    p.b.handle_packet(now, &tagged(0, vec![init, Chunk::CookieAck]));
    assert!(from_b(&mut p).is_empty());
    p.b.handle_packet(now, &tagged(p.a.local_tag, vec![reflected]));
    assert!(
        !p.b.is_established(),
        "a reflected ABORT with the peer's tag is valid"
    );
    let _ = abort;
}

#[test]
fn data_under_a_wrong_tag_is_not_delivered() {
    let mut p = Pair::clean().connected();
    p.a.send(0, PPID_STRING, message(1, 50), false).unwrap();
    let now = p.now;
    let bytes = p.a.poll_transmit(now).unwrap();
    let mut wrong = bytes.clone();
    wrong[4] ^= 0x80;
    packet::finish(&mut wrong);
    p.b.handle_packet(now, &wrong);
    p.collect();
    assert!(p.messages(1).is_empty());
    p.b.handle_packet(now, &bytes);
    p.collect();
    assert_eq!(p.messages(1).len(), 1);
}

#[test]
fn heartbeat_is_echoed() {
    let mut p = Pair::clean().connected();
    let now = p.now;
    let info = Bytes::from_static(b"are you there");
    p.b.handle_packet(now, &to_b(&p, vec![Chunk::Heartbeat(info.clone())]));
    let out = from_b(&mut p);
    assert!(out
        .iter()
        .any(|pk| packet_has(pk, |c| *c == Chunk::HeartbeatAck(info.clone()))));
    // One too large to echo is not answered.
    let huge = Bytes::from(vec![0u8; 20_000]);
    p.b.handle_packet(now, &to_b(&p, vec![Chunk::Heartbeat(huge)]));
    assert!(from_b(&mut p).is_empty());
    // A flood of HEARTBEATs with nothing sent in between queues a bounded number of answers.
    for _ in 0..20 {
        let many = vec![Chunk::Heartbeat(info.clone()); 20];
        p.b.handle_packet(now, &to_b(&p, many));
    }
    let acks: usize = from_b(&mut p).iter().map(|pk| pk.chunks.len()).sum();
    assert_eq!(acks, 64);
}

#[test]
fn unknown_chunks_stop_or_are_skipped_by_their_top_bits() {
    let mut p = Pair::clean().connected();
    p.a.send(0, PPID_STRING, message(1, 50), false).unwrap();
    p.a.send(0, PPID_STRING, message(2, 50), false).unwrap();
    let now = p.now;
    let bytes = p.a.poll_transmit(now).unwrap();
    let mut pk = Packet::decode(&Bytes::from(bytes)).unwrap();
    let data: Vec<Chunk> = pk.chunks.drain(..).collect();
    assert_eq!(data.len(), 2);
    let unknown = |kind| Chunk::Unknown {
        kind,
        flags: 0,
        value: Bytes::new(),
    };
    // 0x3f: top bits 00, stop: the DATA after it is not processed.
    let stop = to_b(&p, vec![unknown(0x3f), data[0].clone()]);
    p.b.handle_packet(now, &stop);
    p.collect();
    assert!(p.messages(1).is_empty());
    // 0xbf: top bits 10, skip: the DATA after it is processed.
    let skip = to_b(&p, vec![unknown(0xbf), data[0].clone(), data[1].clone()]);
    p.b.handle_packet(now, &skip);
    p.collect();
    assert_eq!(p.messages(1).len(), 2);
}

#[test]
fn mtu_probe_raises_the_packet_size_when_the_path_carries_it() {
    let probing = Config {
        probe_mtu: Some(4000),
        ..Config::default()
    };
    let path = Path {
        max_packet: 9000,
        ..Path::default()
    };
    let mut p = Pair::new(probing.clone(), Config::default(), path, 1).connected();
    p.run_for(Duration::from_millis(10));
    assert_eq!(p.a.mtu(), 4000);
    p.sent.clear();
    p.a.send(1, PPID_BINARY, message(1, 16 * 1024), false)
        .unwrap();
    assert!(p.run_until(Duration::from_secs(1), |p| p.messages(1).len() == 1));
    let largest = p
        .sent
        .iter()
        .filter(|(d, _)| *d == Dir::AtoB)
        .map(|(_, l)| *l)
        .max();
    assert!(largest > Some(1200) && largest <= Some(4000), "{largest:?}");
    // On a path that drops such packets, three probes fail and the MTU stays.
    let mut p = Pair::new(probing, Config::default(), Path::default(), 1).connected();
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.a.mtu(), 1200);
    assert!(p.a.probe.is_none());
    let probes = p.sent.iter().filter(|(_, l)| *l == 4000).count();
    assert_eq!(probes, 3);
    p.a.send(1, PPID_BINARY, message(1, 16 * 1024), false)
        .unwrap();
    assert!(p.run_until(Duration::from_secs(1), |p| p.messages(1).len() == 1));
}

#[test]
fn too_many_retransmission_timeouts_close_the_association() {
    let mut p = Pair::clean().connected();
    p.paths[0].loss = 1.0;
    p.a.send(0, PPID_STRING, message(1, 10), false).unwrap();
    assert!(p.run_until(Duration::from_secs(120), |p| p.closed(0).is_some()));
    assert_eq!(p.closed(0).as_deref(), Some("too many retransmissions"));
}

#[test]
fn an_idle_association_sets_no_timer_and_sends_nothing() {
    let mut p = Pair::clean().connected();
    p.a.send(0, PPID_STRING, message(1, 10), false).unwrap();
    p.b.send(0, PPID_STRING, message(2, 10), false).unwrap();
    assert!(p.run_until(Duration::from_secs(1), |p| p.a.buffered(0) == 0
        && p.b.buffered(0) == 0));
    p.run_for(Duration::from_millis(100));
    p.sent.clear();
    p.run_for(Duration::from_secs(10));
    assert!(p.sent.is_empty(), "{} packets while idle", p.sent.len());
    assert_eq!((p.a.poll_timeout(), p.b.poll_timeout()), (None, None));
}

#[test]
fn an_oversized_cookie_is_not_echoed() {
    let mut p = Pair::clean();
    let now = p.now;
    p.a.connect(now);
    let _init = p.a.poll_transmit(now).unwrap();
    let mut ack = p.b.our_init(Some(Bytes::from(vec![1u8; 5000])));
    ack.initiate_tag = p.b.local_tag;
    let bytes = tagged(p.a.local_tag, vec![Chunk::InitAck(ack)]);
    p.a.handle_packet(now, &bytes);
    assert!(p.a.poll_transmit(now).is_none());
    assert!(!p.a.is_established());
}

#[test]
fn crossing_handshakes_complete_under_heavy_loss() {
    for seed in 0..30 {
        let path = Path {
            loss: 0.3,
            duplicate: 0.1,
            reorder: 0.2,
            ..Path::default()
        };
        let mut p = Pair::new(Config::default(), Config::default(), path, seed);
        p.a.connect(p.now);
        if seed % 2 == 0 {
            p.b.connect(p.now);
        }
        assert!(
            p.run_until(Duration::from_secs(30), |p| p.a.is_established()
                && p.b.is_established()),
            "seed {seed}: a {:?} b {:?}",
            p.a.state,
            p.b.state
        );
        p.a.send(0, PPID_STRING, message(1, 10), false).unwrap();
        p.b.send(0, PPID_STRING, message(2, 10), false).unwrap();
        assert!(
            p.run_until(Duration::from_secs(30), |p| p.messages(0).len() == 1
                && p.messages(1).len() == 1),
            "seed {seed}"
        );
        assert_eq!(connected_events(&p, 0), 1);
        assert_eq!(connected_events(&p, 1), 1);
    }
}
