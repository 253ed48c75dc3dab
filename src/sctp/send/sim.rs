//! A small simulation: the sender against a model receiver over a virtual link, to measure
//! goodput and the latency of lone priority messages under random loss, and to tune.
//!
//! The link: random loss on the way (both directions), one-way delay, then the receiver's
//! socket buffer (drop-tail) drained at the link's bandwidth. The receiver SACKs at once on
//! a gap, a duplicate or the I bit, else every second packet, else after 200 ms (Chromium's
//! delayed SACK). Run with
//! `cargo test --release --lib --no-default-features sctp::send::sim -- --nocapture`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::sctp::chunk::GapBlock;

const MTU: usize = 1200;
/// DTLS record, UDP and IPv4 headers around each SCTP packet.
const WIRE_OVERHEAD: usize = 13 + 16 + 8 + 20;
const RECEIVE_WINDOW: usize = 1 << 20;
const DELAYED_SACK: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug)]
pub(super) struct Link {
    /// Bytes per second the receiver drains its socket at.
    bandwidth: f64,
    delay: Duration,
    /// Extra one-way delay, uniform in [0, jitter), in order (Wi-Fi airtime, retries).
    jitter: Duration,
    socket_buffer: usize,
    loss: f64,
    /// The driver's timers fire on this grid (a real one: ~1 ms); zero for exact timers.
    timer_tick: Duration,
}

/// xorshift64*: deterministic loss.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// When something sent at `t` arrives, never before what was sent earlier (`last`).
    fn arrival(&mut self, link: &Link, t: Instant, last: &mut Instant) -> Instant {
        let at = t + link.delay + link.jitter.mul_f64(self.uniform());
        *last = (*last).max(at);
        *last
    }
}

/// Receiver model: TSN tracking and SACKs only (RFC 9260 §6.2), plus delivery times of the
/// priority messages.
struct Receiver {
    cum: u32,
    /// Received above `cum`: TSN → payload length.
    above: BTreeMap<u32, usize>,
    unacked_packets: u32,
    sack_at: Option<Instant>,
    delivered: u64,
    /// Arrival time of each priority message by id.
    arrivals: BTreeMap<u64, Instant>,
}

impl Receiver {
    fn new(initial_tsn: u32) -> Self {
        Self {
            cum: initial_tsn.wrapping_sub(1),
            above: BTreeMap::new(),
            unacked_packets: 0,
            sack_at: None,
            delivered: 0,
            arrivals: BTreeMap::new(),
        }
    }

    /// One packet; returns a SACK if one goes now.
    fn packet(&mut self, now: Instant, chunks: &[Data]) -> Option<Sack> {
        let mut at_once = false;
        for d in chunks {
            at_once |= d.immediate;
            if !tsn_lt(self.cum, d.tsn) || self.above.contains_key(&d.tsn) {
                at_once = true; // duplicate
                continue;
            }
            if d.tsn != self.cum.wrapping_add(1) {
                at_once = true; // out of order
            }
            self.above.insert(d.tsn, d.payload.len());
            if d.stream == 0 && d.begin && d.end {
                let id = u64::from_be_bytes(d.payload[..8].try_into().unwrap());
                self.arrivals.entry(id).or_insert(now);
            }
            while let Some(len) = self.above.remove(&self.cum.wrapping_add(1)) {
                self.cum = self.cum.wrapping_add(1);
                self.delivered += len as u64;
            }
        }
        at_once |= !self.above.is_empty();
        self.unacked_packets += 1;
        if at_once || self.unacked_packets >= 2 {
            return Some(self.sack());
        }
        self.sack_at.get_or_insert(now + DELAYED_SACK);
        None
    }

    fn sack(&mut self) -> Sack {
        self.unacked_packets = 0;
        self.sack_at = None;
        let mut gaps: Vec<GapBlock> = Vec::new();
        for &tsn in self.above.keys() {
            let off = tsn.wrapping_sub(self.cum) as u16;
            match gaps.last_mut() {
                Some(g) if g.end + 1 == off => g.end = off,
                _ => gaps.push(GapBlock {
                    start: off,
                    end: off,
                }),
            }
        }
        let held: usize = self.above.values().sum();
        Sack {
            cum_tsn_ack: self.cum,
            a_rwnd: RECEIVE_WINDOW.saturating_sub(held) as u32,
            gaps,
            duplicates: vec![],
        }
    }
}

#[derive(Debug)]
pub(super) struct Outcome {
    /// Delivered in order, bytes per second.
    pub(super) goodput: f64,
    /// Priority message latency, queue to in-order delivery: p50, p99, max.
    pub(super) latency: (Duration, Duration, Duration),
    pub(super) timeouts: u32,
    /// Packets dropped by the full socket buffer, and packets sent.
    pub(super) overflow: u64,
    pub(super) packets: u64,
}

/// Runs `duration` of virtual time: a bulk stream kept 1 MiB deep when `bulk`, and a
/// 200-byte priority message every `turn_every`.
pub(super) fn run(
    link: Link,
    bulk: bool,
    turn_every: Duration,
    duration: Duration,
    seed: u64,
) -> Outcome {
    let t0 = Instant::now();
    let end = t0 + duration;
    let cfg = SendConfig {
        mtu: MTU,
        rto_min: Duration::from_millis(10),
        rto_max: Duration::from_secs(1),
        rto_initial: Duration::from_millis(200),
        priority_streams: vec![0],
    };
    let initial_tsn = 0xffff_ff00; // wraps during the run
    let mut s = Sender::new(cfg, initial_tsn, RECEIVE_WINDOW as u32, t0);
    let mut r = Receiver::new(initial_tsn);
    let mut rng = Rng(seed.max(1));
    // Packets on their way to the receiver's socket / SACKs on their way back.
    let mut to_rx: VecDeque<(Instant, Vec<Data>, usize)> = VecDeque::new();
    let mut to_tx: VecDeque<(Instant, Sack)> = VecDeque::new();
    // The receiver's socket: (time read, chunks, bytes).
    let mut socket: VecDeque<(Instant, Vec<Data>, usize)> = VecDeque::new();
    let mut socket_bytes = 0usize;
    let mut socket_free_at = t0;
    let mut sent_turns: Vec<Instant> = Vec::new();
    let mut next_turn = t0 + turn_every;
    let mut timeouts = 0;
    let (mut last_rx, mut last_tx) = (t0, t0);
    let (mut overflow, mut packets) = (0, 0);
    // When the driver's timer wakes the sender: the sender's deadline rounded up to the grid.
    let wake = |t: Instant| {
        if link.timer_tick.is_zero() {
            return t;
        }
        let tick = link.timer_tick.as_nanos();
        let since = (t - t0).as_nanos().div_ceil(tick) * tick;
        t0 + Duration::from_nanos(since as u64)
    };
    let bulk_msg = Bytes::from(vec![0u8; 16 * 1024]);

    let mut now = t0;
    while now < end {
        // Sender side: SACKs in, timers, the application, packets out.
        while to_tx.front().is_some_and(|(t, _)| *t <= now) {
            let (_, sack) = to_tx.pop_front().unwrap();
            s.on_sack(&sack, now);
        }
        if s.poll_timeout().is_some_and(|t| wake(t) <= now) {
            let before = s.consecutive_timeouts();
            s.handle_timeout(now);
            if s.consecutive_timeouts() > before {
                timeouts += 1;
            }
        }
        if bulk {
            while s.buffered(1) < 1 << 20 {
                s.queue(1, 53, bulk_msg.clone(), false).unwrap();
            }
        }
        if now >= next_turn {
            let mut msg = vec![0u8; 200];
            msg[..8].copy_from_slice(&(sent_turns.len() as u64).to_be_bytes());
            sent_turns.push(now);
            s.queue(0, 51, Bytes::from(msg), false).unwrap();
            next_turn += turn_every;
        }
        loop {
            let mut room = MTU - COMMON_HEADER;
            let mut chunks = Vec::new();
            while let Some(d) = s.poll_data(now, room) {
                room -= chunk_len(d.payload.len());
                chunks.push(d);
            }
            if chunks.is_empty() {
                break;
            }
            let size = MTU - room + WIRE_OVERHEAD;
            packets += 1;
            if !rng.chance(link.loss) {
                let at = rng.arrival(&link, now, &mut last_rx);
                to_rx.push_back((at, chunks, size));
            }
        }
        // Receiver side: arrivals into the socket (drop-tail), reads, delayed SACKs.
        while to_rx.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, chunks, size) = to_rx.pop_front().unwrap();
            while socket.front().is_some_and(|(t, _, _)| *t <= now) {
                let (t, chunks, size) = socket.pop_front().unwrap();
                socket_bytes -= size;
                receive(
                    &mut r,
                    t,
                    &chunks,
                    (&mut to_tx, &mut last_tx),
                    &link,
                    &mut rng,
                );
            }
            if socket_bytes + size > link.socket_buffer {
                overflow += 1;
                continue;
            }
            socket_free_at =
                socket_free_at.max(now) + Duration::from_secs_f64(size as f64 / link.bandwidth);
            socket_bytes += size;
            socket.push_back((socket_free_at, chunks, size));
        }
        while socket.front().is_some_and(|(t, _, _)| *t <= now) {
            let (t, chunks, size) = socket.pop_front().unwrap();
            socket_bytes -= size;
            receive(
                &mut r,
                t,
                &chunks,
                (&mut to_tx, &mut last_tx),
                &link,
                &mut rng,
            );
        }
        if r.sack_at.is_some_and(|t| t <= now) {
            let sack = r.sack();
            if !rng.chance(link.loss) {
                let at = rng.arrival(&link, now, &mut last_tx);
                to_tx.push_back((at, sack));
            }
        }
        // The next event.
        let next = [
            to_tx.front().map(|x| x.0),
            to_rx.front().map(|x| x.0),
            socket.front().map(|x| x.0),
            r.sack_at,
            s.poll_timeout().map(wake),
            Some(next_turn),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap();
        now = next.max(now);
    }

    // In-order delivery on the priority stream: a message waits for the ones before it.
    let mut latencies = Vec::new();
    let mut delivered_at = t0;
    for (id, sent) in sent_turns.iter().enumerate() {
        let Some(&arrived) = r.arrivals.get(&(id as u64)) else {
            break;
        };
        delivered_at = delivered_at.max(arrived);
        latencies.push(delivered_at - *sent);
    }
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(Duration::MAX)
    };
    Outcome {
        goodput: r.delivered as f64 / duration.as_secs_f64(),
        latency: (
            pick(0.5),
            pick(0.99),
            latencies.last().copied().unwrap_or(Duration::MAX),
        ),
        timeouts,
        overflow,
        packets,
    }
}

fn receive(
    r: &mut Receiver,
    t: Instant,
    chunks: &[Data],
    (to_tx, last_tx): (&mut VecDeque<(Instant, Sack)>, &mut Instant),
    link: &Link,
    rng: &mut Rng,
) {
    if let Some(sack) = r.packet(t, chunks) {
        if !rng.chance(link.loss) {
            let at = rng.arrival(link, t, last_tx);
            to_tx.push_back((at, sack));
        }
    }
}

fn link(gbit: f64, loss: f64) -> Link {
    Link {
        bandwidth: gbit * 1e9 / 8.0,
        delay: Duration::from_micros(50),
        socket_buffer: 128 * 1024,
        loss,
        timer_tick: Duration::from_millis(1),
        jitter: Duration::ZERO,
    }
}

fn mb(x: f64) -> f64 {
    x / 1e6
}

/// One row of the table: the bulk run and the idle run on `l`.
fn row(name: &str, l: Link) -> (Outcome, Outcome) {
    let duration = Duration::from_secs(2);
    let turns = Duration::from_millis(2);
    let wall = Instant::now();
    let busy = run(l, true, turns, duration, 7);
    let wall = wall.elapsed();
    // Lone messages: far enough apart that a later one never reveals an earlier loss.
    let idle = run(
        l,
        false,
        Duration::from_millis(20),
        Duration::from_secs(20),
        11,
    );
    println!(
        "{name:<22} {:>4.0}% {:>8.1}   {:>8.2?} {:>8.2?} {:>8.2?}  {:>8.2?} {:>8.2?} {:>8.2?}  {:>2}/{:<2} {:>5.2}%  {:>5.0} kpkt/s",
        l.loss * 100.0,
        mb(busy.goodput),
        busy.latency.0,
        busy.latency.1,
        busy.latency.2,
        idle.latency.0,
        idle.latency.1,
        idle.latency.2,
        busy.timeouts,
        idle.timeouts,
        busy.overflow as f64 * 100.0 / busy.packets.max(1) as f64,
        busy.packets as f64 / wall.as_secs_f64() / 1e3,
    );
    (busy, idle)
}

fn header() {
    println!(
        "link                    loss     MB/s      turn p50/p99/max (bulk)     \
         turn p50/p99/max (idle)   RTOs   ovfl  simulated (sender + model)"
    );
}

#[test]
fn goodput_and_page_turn_latency_under_random_loss() {
    header();
    let mut rows = Vec::new();
    for (name, gbit, delay_us) in [
        ("1 Gbit/s 50 us", 1.0, 50),
        ("4 Gbit/s 50 us", 4.0, 50),
        ("4 Gbit/s 250 us", 4.0, 250),
    ] {
        for loss in [0.0, 0.01, 0.02, 0.05, 0.10] {
            let mut l = link(gbit, loss);
            l.delay = Duration::from_micros(delay_us);
            let (busy, idle) = row(name, l);
            rows.push((name, loss, busy, idle));
        }
    }
    for (name, loss, busy, idle) in &rows {
        let p99_cap = Duration::from_millis(if *loss > 0.05 { 60 } else { 30 });
        assert!(
            busy.latency.1 <= p99_cap,
            "{name} {loss}: busy p99 {:?}",
            busy.latency.1
        );
        assert!(
            idle.latency.1 <= p99_cap,
            "{name} {loss}: idle p99 {:?}",
            idle.latency.1
        );
        // The throughput floors, on the links faster than them.
        let floor = match *loss {
            0.0 => 250e6,
            l if l <= 0.01 => 100e6,
            l if l <= 0.05 => 50e6,
            _ => 0.0,
        };
        if name.starts_with("4 Gbit/s") {
            assert!(
                busy.goodput >= floor,
                "{name} {loss}: {:.1} MB/s",
                mb(busy.goodput)
            );
        }
    }
}

#[test]
fn wifi_like_jitter_does_not_pass_for_congestion() {
    // 60 MB/s, 1 ms each way plus up to 2 ms of in-order jitter: the round trip varies by
    // more than the queue-building sign, and random loss must still not collapse the window.
    header();
    for loss in [0.0, 0.01, 0.05, 0.10] {
        let l = Link {
            bandwidth: 60e6,
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(2),
            ..link(1.0, loss)
        };
        let (busy, idle) = row("Wi-Fi-like 60 MB/s", l);
        let p99_cap = Duration::from_millis(if loss > 0.05 { 60 } else { 30 });
        assert!(
            busy.latency.1 <= p99_cap,
            "{loss}: busy p99 {:?}",
            busy.latency.1
        );
        assert!(
            idle.latency.1 <= p99_cap,
            "{loss}: idle p99 {:?}",
            idle.latency.1
        );
    }
}

#[test]
fn a_slow_receiver_is_not_flooded() {
    // The receiver reads 25 MB/s; what the socket buffer drops is congestion, not noise.
    header();
    for loss in [0.0, 0.02] {
        let l = Link {
            bandwidth: 25e6,
            ..link(1.0, loss)
        };
        let (busy, _) = row("slow reader 25 MB/s", l);
        assert!(
            busy.goodput >= 0.9 * 25e6 * (1.0 - loss),
            "{:.1} MB/s",
            mb(busy.goodput)
        );
        let overflow = busy.overflow as f64 / busy.packets as f64;
        assert!(
            overflow < 0.01,
            "{:.2}% dropped by the full socket buffer",
            overflow * 100.0
        );
    }
}
