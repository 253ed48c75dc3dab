//! Whole-association tests: two associations on a simulated network with a virtual clock.

mod behaviour;
mod figures;
mod hostile;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Association, Config, Event};
use crate::sctp::packet::Packet;
use crate::session::Rng;

/// One direction of the simulated path.
#[derive(Debug, Clone)]
pub(super) struct Path {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Random loss probability per packet.
    pub loss: f64,
    /// Probability a packet arrives twice.
    pub duplicate: f64,
    /// Probability a packet is held back by `reorder_by` (arrives after later ones).
    pub reorder: f64,
    /// How much a reordered packet is held back.
    pub reorder_by: Duration,
    /// Bottleneck rate, bits per second (`None`: unlimited).
    pub rate: Option<u64>,
    /// Bottleneck queue, bytes (tail drop beyond).
    pub queue: usize,
    /// Packets larger than this are dropped (the path MTU).
    pub max_packet: usize,
}

impl Default for Path {
    fn default() -> Self {
        Self {
            delay: Duration::from_micros(50),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_by: Duration::from_micros(200),
            rate: Some(1_000_000_000),
            queue: 128 * 1024,
            max_packet: 1500,
        }
    }
}

/// Which way a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Dir {
    AtoB,
    BtoA,
}

/// Decides to drop a packet (true) after seeing it decoded; for targeted losses.
pub(super) type Filter = Box<dyn FnMut(Dir, &Packet) -> bool>;

/// A packet on the wire: arrival, a sequence number (FIFO among equal arrivals), direction.
type InFlight = (Instant, u64, Dir, Vec<u8>);

/// A simulated network between two associations, on a virtual clock.
pub(super) struct Pair {
    pub a: Association,
    pub b: Association,
    pub now: Instant,
    pub paths: [Path; 2],
    pub filter: Option<Filter>,
    /// Whether each side's application reads events (a non-reading one lets them pile up).
    pub reading: [bool; 2],
    /// Events each side's application saw, with when.
    pub events: [Vec<(Instant, Event)>; 2],
    /// Every packet put on the wire: (direction, size).
    pub sent: Vec<(Dir, usize)>,
    rng: Rng,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    busy_until: [Instant; 2],
}

pub(super) fn seed(n: u8) -> [u8; 16] {
    [n; 16]
}

impl Pair {
    pub fn new(cfg_a: Config, cfg_b: Config, path: Path, rng_seed: u64) -> Self {
        let now = Instant::now();
        Self {
            a: Association::new(cfg_a, seed(1), now),
            b: Association::new(cfg_b, seed(2), now),
            now,
            paths: [path.clone(), path],
            filter: None,
            reading: [true, true],
            events: [Vec::new(), Vec::new()],
            sent: Vec::new(),
            rng: Rng::new(rng_seed),
            in_flight: BinaryHeap::new(),
            seq: 0,
            busy_until: [now, now],
        }
    }

    /// A pair on a clean default path.
    pub fn clean() -> Self {
        Self::new(Config::default(), Config::default(), Path::default(), 1)
    }

    /// Connected (A connects), events of the handshake cleared.
    pub fn connected(mut self) -> Self {
        self.a.connect(self.now);
        assert!(
            self.run_until(Duration::from_secs(5), |p| p.a.is_established()
                && p.b.is_established()),
            "handshake did not complete"
        );
        self.events = [Vec::new(), Vec::new()];
        self
    }

    fn side(&mut self, dir: Dir) -> &mut Association {
        match dir {
            Dir::AtoB => &mut self.b,
            Dir::BtoA => &mut self.a,
        }
    }

    /// Puts a packet on the wire from the sending side of `dir`.
    pub fn transmit(&mut self, dir: Dir, packet: Vec<u8>) {
        self.sent.push((dir, packet.len()));
        let i = dir as usize;
        let path = self.paths[i].clone();
        if packet.len() > path.max_packet {
            return;
        }
        if let Some(f) = self.filter.as_mut() {
            if let Ok(p) = Packet::decode(&Bytes::copy_from_slice(&packet)) {
                if f(dir, &p) {
                    return;
                }
            }
        }
        if self.rng.next_f64() < path.loss {
            return;
        }
        let mut depart = self.now;
        if let Some(rate) = path.rate {
            let start = self.busy_until[i].max(self.now);
            let queued_bytes = (start - self.now).as_secs_f64() * rate as f64 / 8.0;
            if queued_bytes > path.queue as f64 {
                return;
            }
            let serialise = Duration::from_secs_f64(packet.len() as f64 * 8.0 / rate as f64);
            self.busy_until[i] = start + serialise;
            depart = self.busy_until[i];
        }
        let mut arrive = depart + path.delay;
        if self.rng.next_f64() < path.reorder {
            arrive += path.reorder_by;
        }
        let copies = if self.rng.next_f64() < path.duplicate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            self.seq += 1;
            self.in_flight
                .push(Reverse((arrive, self.seq, dir, packet.clone())));
        }
    }

    /// Sends everything both sides have to send now.
    fn flush(&mut self) {
        loop {
            let mut any = false;
            while let Some(p) = self.a.poll_transmit(self.now) {
                self.transmit(Dir::AtoB, p);
                any = true;
            }
            while let Some(p) = self.b.poll_transmit(self.now) {
                self.transmit(Dir::BtoA, p);
                any = true;
            }
            self.collect();
            if !any {
                break;
            }
        }
    }

    /// The applications take their events.
    pub fn collect(&mut self) {
        let now = self.now;
        if self.reading[0] {
            while let Some(e) = self.a.poll_event() {
                self.events[0].push((now, e));
            }
        }
        if self.reading[1] {
            while let Some(e) = self.b.poll_event() {
                self.events[1].push((now, e));
            }
        }
    }

    /// When something happens next.
    fn next_time(&self) -> Option<Instant> {
        [
            self.a.poll_timeout(),
            self.b.poll_timeout(),
            self.in_flight.peek().map(|Reverse((t, ..))| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// One step of the simulation: send, jump to the next event, deliver or time out.
    /// False when nothing more will ever happen.
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(next) = self.next_time() else {
            return false;
        };
        self.now = self.now.max(next);
        while let Some(Reverse((t, ..))) = self.in_flight.peek() {
            if *t > self.now {
                break;
            }
            let Some(Reverse((_, _, dir, packet))) = self.in_flight.pop() else {
                break;
            };
            let now = self.now;
            self.side(dir).handle_packet(now, &packet);
        }
        let now = self.now;
        if self.a.poll_timeout().is_some_and(|t| t <= now) {
            self.a.handle_timeout(now);
        }
        if self.b.poll_timeout().is_some_and(|t| t <= now) {
            self.b.handle_timeout(now);
        }
        self.collect();
        true
    }

    /// Steps until `done` or `limit` of virtual time passed; whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let end = self.now + limit;
        let mut steps = 0u64;
        while self.now <= end {
            if done(self) {
                return true;
            }
            steps += 1;
            assert!(steps < 50_000_000, "simulation does not advance");
            if !self.step() {
                return done(self);
            }
        }
        done(self)
    }

    /// Runs for `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while self.now < end {
            if !self.step() {
                break;
            }
        }
    }

    /// The messages side `i` received: (stream, payload).
    pub fn messages(&self, i: usize) -> Vec<(u16, Bytes)> {
        self.events[i]
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Message {
                    stream, payload, ..
                } => Some((*stream, payload.clone())),
                _ => None,
            })
            .collect()
    }

    /// The reason side `i` closed, if it did.
    pub fn closed(&self, i: usize) -> Option<String> {
        self.events[i].iter().find_map(|(_, e)| match e {
            Event::Closed { reason } => Some(reason.clone()),
            _ => None,
        })
    }
}

/// A message whose bytes say which it is.
pub(super) fn message(n: u32, len: usize) -> Bytes {
    let mut v = vec![0u8; len.max(4)];
    v[..4].copy_from_slice(&n.to_be_bytes());
    for (i, b) in v.iter_mut().enumerate().skip(4) {
        *b = (n as usize + i) as u8;
    }
    v.truncate(len);
    Bytes::from(v)
}
