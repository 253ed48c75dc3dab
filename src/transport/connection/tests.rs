//! Two connections wired back to back in memory: setup, messages both ways, close and loss.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::transport::ice_dtls::testing::config;
use crate::transport::Identity;

/// Two connections wired back to back in memory, on a virtual clock.
struct Net {
    a: Connection,
    b: Connection,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    now: Instant,
    /// Events seen by the offerer (`a`) and the answerer (`b`).
    ev_a: Vec<LinkEvent>,
    ev_b: Vec<LinkEvent>,
}

fn sctp() -> SctpConfig {
    SctpConfig {
        max_message_size: MAX_CONTROL_MESSAGE,
        priority_streams: vec![CONTROL_STREAM_ID],
        ..Default::default()
    }
}

impl Net {
    /// `offerer_dtls_client`: the answer said `a=setup:passive`.
    fn new(offerer_dtls_client: bool) -> Self {
        let (ia, ib) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let a_addr: SocketAddr = "10.0.0.1:1000".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:2000".parse().unwrap();
        let now = Instant::now();
        let mut ice_a = config(&ia, &ib, a_addr, b_addr, true);
        let mut ice_b = config(&ib, &ia, b_addr, a_addr, false);
        ice_a.dtls_client = offerer_dtls_client;
        ice_b.dtls_client = !offerer_dtls_client;
        let conn = |ice, side, seed| ConnectionConfig {
            ice,
            side,
            sctp: sctp(),
            seed: [seed; 16],
            remote_max_message_size: 65536,
        };
        let a = Connection::new(conn(ice_a, Side::Offerer, 1), now).unwrap();
        let b = Connection::new(conn(ice_b, Side::Answerer, 2), now).unwrap();
        Net {
            a,
            b,
            a_addr,
            b_addr,
            now,
            ev_a: Vec::new(),
            ev_b: Vec::new(),
        }
    }

    /// Delivers datagrams until both sides are quiet, taking their events.
    fn settle(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit(self.now) {
                self.b
                    .handle_datagram(self.now, self.b_addr, self.a_addr, &t.data);
                moved = true;
            }
            while let Some(t) = self.b.poll_transmit(self.now) {
                self.a
                    .handle_datagram(self.now, self.a_addr, self.b_addr, &t.data);
                moved = true;
            }
            while let Some(e) = self.a.poll_event(self.now) {
                self.ev_a.push(e);
                moved = true;
            }
            while let Some(e) = self.b.poll_event(self.now) {
                self.ev_b.push(e);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    /// Settles, then runs timers, until `done` holds (at most `limit` of virtual time).
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.settle();
            if done(self) {
                return true;
            }
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => return false,
            }
        }
    }

    fn open(&mut self) {
        let opened = self.run_until(Duration::from_secs(10), |n| {
            n.ev_a.contains(&LinkEvent::Open) && n.ev_b.contains(&LinkEvent::Open)
        });
        assert!(opened, "a: {:?} b: {:?}", self.ev_a, self.ev_b);
    }
}

fn control(s: &str) -> LinkEvent {
    LinkEvent::Control(s.into())
}

#[test]
fn channels_open_and_carry_messages_both_ways() {
    let mut n = Net::new(false);
    n.open();
    // The ready marker opened the offerer and is never shown.
    assert_eq!(n.ev_a, vec![LinkEvent::Open]);
    assert_eq!(n.ev_b, vec![LinkEvent::Open]);
    let now = n.now;
    n.a.send_control(now, "one").unwrap();
    n.a.send_control(now, "").unwrap();
    n.a.send_binary(now, &[5u8; MAX_BINARY_MESSAGE]).unwrap();
    n.b.send_control(now, "back").unwrap();
    n.b.send_binary(now, &[]).unwrap();
    n.run_until(Duration::from_secs(5), |n| {
        n.ev_a.len() == 3 && n.ev_b.len() == 4
    });
    assert_eq!(
        n.ev_b[1..],
        [
            control("one"),
            control(""),
            LinkEvent::Binary(Bytes::from(vec![5u8; MAX_BINARY_MESSAGE]))
        ]
    );
    assert_eq!(
        n.ev_a[1..],
        [control("back"), LinkEvent::Binary(Bytes::new())]
    );
    assert_eq!(n.a.buffered_binary() + n.b.outstanding(), 0);
}

/// The answer said `a=setup:passive`: the offerer is the DTLS client. The answerer speaks
/// as soon as it is open; nothing it says is lost.
#[test]
fn when_the_offerer_is_the_dtls_client_the_answerers_first_messages_arrive() {
    let mut n = Net::new(true);
    n.run_until(Duration::from_secs(10), |n| {
        n.ev_b.contains(&LinkEvent::Open)
    });
    let now = n.now;
    for i in 0..5 {
        n.b.send_control(now, &format!("early {i}")).unwrap();
    }
    n.b.send_binary(now, b"early bytes").unwrap();
    n.run_until(Duration::from_secs(5), |n| n.ev_a.len() == 7);
    assert_eq!(n.ev_a[0], LinkEvent::Open, "{:?}", n.ev_a);
    let texts: Vec<_> = n.ev_a[1..]
        .iter()
        .filter(|e| matches!(e, LinkEvent::Control(_)))
        .cloned()
        .collect();
    let want: Vec<_> = (0..5).map(|i| control(&format!("early {i}"))).collect();
    assert_eq!(texts, want);
    assert!(n
        .ev_a
        .contains(&LinkEvent::Binary(Bytes::from_static(b"early bytes"))));
}

#[test]
fn sending_before_open_is_refused_and_oversized_sends_too() {
    let mut n = Net::new(false);
    let now = n.now;
    assert!(matches!(
        n.a.send_control(now, "too soon"),
        Err(TransportError::NotOpen)
    ));
    n.open();
    let now = n.now;
    assert!(matches!(
        n.a.send_binary(now, &[0; MAX_BINARY_MESSAGE + 1]),
        Err(TransportError::TooLarge { .. })
    ));
    let big = "x".repeat(MAX_CONTROL_MESSAGE + 1);
    assert!(matches!(
        n.a.send_control(now, &big),
        Err(TransportError::TooLarge { .. })
    ));
}

/// A peer that ignores the 16 KiB limit of `binary` (PROTOCOL.md §1): the message is never
/// delivered and the link closes.
#[test]
fn a_binary_message_over_its_limit_closes_the_link() {
    let mut n = Net::new(false);
    n.open();
    let big = Bytes::from(vec![1u8; MAX_BINARY_MESSAGE + 1]);
    n.b.assoc
        .send(BINARY_STREAM_ID, ppid::BINARY, big, false)
        .unwrap();
    let closed = n.run_until(Duration::from_secs(5), |n| {
        n.ev_a.contains(&LinkEvent::Closed)
    });
    assert!(closed, "{:?}", n.ev_a);
    assert!(!n.ev_a.iter().any(|e| matches!(e, LinkEvent::Binary(_))));
    assert!(n.a.is_closed());
    let now = n.now;
    assert!(matches!(
        n.a.send_control(now, "x"),
        Err(TransportError::Closed)
    ));
}

/// DCEP (an in-band open) on a negotiated channel is ignored; the channel keeps working.
#[test]
fn dcep_messages_are_ignored() {
    let mut n = Net::new(false);
    n.open();
    let open_msg = Bytes::from_static(&[3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    n.b.assoc
        .send(CONTROL_STREAM_ID, ppid::DCEP, open_msg, false)
        .unwrap();
    let now = n.now;
    n.b.send_control(now, "after").unwrap();
    n.run_until(Duration::from_secs(5), |n| n.ev_a.len() == 2);
    assert_eq!(n.ev_a, vec![LinkEvent::Open, control("after")]);
}

#[test]
fn close_is_seen_by_the_peer_at_once() {
    let mut n = Net::new(false);
    n.open();
    let now = n.now;
    n.a.close(now);
    n.settle();
    assert_eq!(n.ev_b.last(), Some(&LinkEvent::Closed));
    assert!(n.ev_a.iter().all(|e| *e != LinkEvent::Closed));
}
