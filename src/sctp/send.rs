//! The outbound half of an association: what the application queued, what is in flight, and
//! when it may go out.
//!
//! - Messages wait per stream (`queue`); a message gets consecutive TSNs for all its fragments
//!   when its first fragment is taken (RFC 9260 §6.9), so a priority message can still be sent
//!   between two fragments of a large one: its TSN is higher, but nothing waits for it.
//! - What has a TSN and is not cumulatively acknowledged sits in one `VecDeque` indexed by
//!   TSN offset; `transmit` takes chunks from it and from the queues for each packet.
//! - `loss` finds losses three ways: RFC 9260 §7.2.4 miss indications, a RACK-like rule on the
//!   order of transmissions (RFC 8985 §6.2: a chunk, first sent or resent, is lost once enough
//!   data sent after it is acknowledged — this finds a lost retransmission without the
//!   timer), and a tail loss probe (RFC 8985 §7) for the last packet of a burst or a lone
//!   message; the retransmission timer is the last resort.
//! - `congestion` sizes the window, `pacing` spreads it over the round trip, `rtt` times
//!   retransmissions.

mod congestion;
mod loss;
mod pacing;
mod queue;
mod rtt;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
mod transmit;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::chunk::{Data, Sack};
use congestion::Congestion;
use loss::Acks;
use pacing::Pacer;
use queue::{Message, Streams};
use rtt::Rtt;

/// Settings of the outbound half (filled from [`super::Config`]).
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Largest SCTP packet, bytes (common header and chunks, before DTLS).
    pub mtu: usize,
    /// Floor of the retransmission timeout.
    pub rto_min: Duration,
    /// Ceiling of the retransmission timeout.
    pub rto_max: Duration,
    /// Retransmission timeout before any round trip was measured.
    pub rto_initial: Duration,
    /// Streams whose messages go ahead of every other stream's (the `control` channel).
    pub priority_streams: Vec<u16>,
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Empty messages are sent by the caller with the "empty" PPIDs and one zero byte
    /// (RFC 8831 §6.6); the queue refuses zero-length payloads.
    #[error("empty payload")]
    Empty,
}

/// SCTP common header, bytes (RFC 9260 §3.1).
const COMMON_HEADER: usize = 12;
/// DATA chunk header, bytes (RFC 9260 §3.3.1).
const DATA_HEADER: usize = 16;
/// A SACK chunk without gap blocks or duplicates, bytes (RFC 9260 §3.3.4).
const SACK_MIN: usize = 16;
/// Priority chunks may exceed the congestion window by this many MTUs: a page turn never
/// waits behind file data in flight.
const PRIORITY_OVERDRAFT_MTUS: usize = 4;
/// Share of the peer's window, in MTUs, that new bulk data leaves free for priority data.
const PRIORITY_RESERVE_MTUS: usize = 4;
/// Transmissions sent after a chunk that must be acknowledged before it counts as lost (RFC
/// 8985's reordering allowance, counted in chunks like TCP's duplicate-ack threshold).
const REORDER_CHUNKS: u64 = 3;
/// Miss indications before a fast retransmit (RFC 9260 §7.2.4).
const MISS_THRESHOLD: u8 = 3;
/// Floor of the probe timeout: a driver's timers fire with ~1 ms granularity.
const PTO_MIN: Duration = Duration::from_millis(1);
/// Added to the probe timeout when a single chunk is out, for a peer that delays its SACK
/// despite the I bit (RFC 8985 §7.2 adds a worst-case delayed-ack time).
const PTO_LONE_EXTRA: Duration = Duration::from_micros(500);
/// Pacing gain in slow start: how much faster than cwnd/srtt the bucket refills (the window
/// doubles per round trip, the rate must keep up).
const PACING_GAIN_SLOW_START: f64 = 2.0;
/// Pacing gain afterwards: a little headroom over cwnd/srtt, so the window, not the bucket,
/// is the limit.
const PACING_GAIN: f64 = 1.25;

/// Serial-number "less than" on TSNs (RFC 9260 §1.6, RFC 1982).
fn tsn_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Bytes a DATA chunk takes in a packet.
fn chunk_len(payload: usize) -> usize {
    DATA_HEADER + payload.next_multiple_of(4)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Has a TSN, never sent (a later fragment of a started message).
    Unsent,
    /// Sent and counted in flight.
    InFlight,
    /// Declared lost, waiting to be resent (not counted in flight).
    Lost,
    /// Reported in a gap block (kept until the cumulative ack passes it: RFC 9260 §6.2.1).
    Acked,
}

#[derive(Debug, Clone)]
struct Entry {
    data: Data,
    state: State,
    priority: bool,
    /// Times sent (Karn: only chunks sent once give round-trip samples).
    sends: u32,
    /// When it was last sent.
    sent_at: Instant,
    /// Transmission sequence of its last sending.
    seq: u64,
    /// Miss indications since its last sending (RFC 9260 §7.2.4).
    misses: u8,
}

/// The outbound half.
#[derive(Debug)]
pub struct Sender {
    mtu: usize,
    streams: Streams,
    /// Highest TSN cumulatively acknowledged (initial TSN − 1 at first).
    cum_ack: u32,
    next_tsn: u32,
    /// Chunks from TSN `cum_ack + 1` on.
    entries: VecDeque<Entry>,
    unsent_count: usize,
    /// TSNs of started messages' fragments not yet sent, in order.
    unsent_priority: VecDeque<u32>,
    unsent_bulk: VecDeque<u32>,
    /// TSNs to resend, in the order they were found lost (may hold stale ones).
    lost_priority: VecDeque<u32>,
    lost_bulk: VecDeque<u32>,
    lost_count: usize,
    /// (transmission sequence, TSN) of every sending, oldest first.
    log: VecDeque<(u64, u32)>,
    next_seq: u64,
    /// Highest transmission sequence known delivered.
    delivered_seq: Option<u64>,
    highest_sent: u32,
    /// Payload bytes in state `InFlight`.
    flight: usize,
    /// The peer's last advertised window.
    peer_a_rwnd: usize,
    cc: Congestion,
    /// Bulk data was held back by cwnd since the last SACK.
    cwnd_blocked: bool,
    /// Bytes of retransmission allowed past cwnd (RFC 9260 §7.2.4 point 3: a fast retransmit
    /// goes regardless of cwnd).
    rtx_budget: usize,
    rtt: Rtt,
    last_rtt_sample: Option<Instant>,
    pacer: Pacer,
    pacing_wake: Option<Instant>,
    rto_at: Option<Instant>,
    pto_at: Option<Instant>,
    probe_pending: bool,
    /// A probe went out and nothing new was acknowledged since: no second one.
    probe_outstanding: bool,
    timeouts: u32,
}

impl Sender {
    /// A sender whose first TSN is `initial_tsn`, towards a peer advertising `peer_rwnd`.
    pub fn new(cfg: SendConfig, initial_tsn: u32, peer_rwnd: u32, now: Instant) -> Self {
        let mtu = cfg.mtu.max(COMMON_HEADER + SACK_MIN + DATA_HEADER + 4);
        Self {
            mtu,
            streams: Streams::new(cfg.priority_streams),
            cum_ack: initial_tsn.wrapping_sub(1),
            next_tsn: initial_tsn,
            entries: VecDeque::new(),
            unsent_count: 0,
            unsent_priority: VecDeque::new(),
            unsent_bulk: VecDeque::new(),
            lost_priority: VecDeque::new(),
            lost_bulk: VecDeque::new(),
            lost_count: 0,
            log: VecDeque::new(),
            next_seq: 0,
            delivered_seq: None,
            highest_sent: initial_tsn.wrapping_sub(1),
            flight: 0,
            peer_a_rwnd: peer_rwnd as usize,
            cc: Congestion::new(mtu, peer_rwnd as usize),
            cwnd_blocked: false,
            rtx_budget: 0,
            rtt: Rtt::new(cfg.rto_initial, cfg.rto_min, cfg.rto_max),
            last_rtt_sample: None,
            pacer: Pacer::new(now),
            pacing_wake: None,
            rto_at: None,
            pto_at: None,
            probe_pending: false,
            probe_outstanding: false,
            timeouts: 0,
        }
    }

    /// Queues one message. Fragmentation to the MTU happens when its first chunk is taken.
    pub fn queue(
        &mut self,
        stream: u16,
        ppid: u32,
        payload: Bytes,
        unordered: bool,
    ) -> Result<(), SendError> {
        if payload.is_empty() {
            return Err(SendError::Empty);
        }
        self.streams.push(
            stream,
            Message {
                ppid,
                payload,
                unordered,
            },
        );
        Ok(())
    }

    /// Bytes of `stream` queued or in flight and not yet acknowledged.
    pub fn buffered(&self, stream: u16) -> usize {
        self.streams.buffered(stream)
    }

    /// Bytes queued or in flight on every stream.
    pub fn buffered_total(&self) -> usize {
        self.streams.total()
    }

    /// Outgoing SSNs of `streams` (all when empty) start again from 0, as after an outgoing
    /// stream reset (RFC 6525 §5.2.2). The caller resets only streams with nothing buffered.
    pub fn reset_ssn(&mut self, streams: &[u16]) {
        self.streams.reset_ssn(streams);
    }

    /// Applies a SACK from the peer. A SACK older than the last one, or acknowledging a TSN
    /// never sent, is ignored.
    pub fn on_sack(&mut self, sack: &Sack, now: Instant) {
        let advance = sack.cum_tsn_ack.wrapping_sub(self.cum_ack) as usize;
        if tsn_lt(sack.cum_tsn_ack, self.cum_ack)
            || advance > self.entries.len()
            || self.entries.iter().take(advance).any(|e| e.sends == 0)
        {
            return;
        }
        self.refill(now);
        let flight_before = self.flight;
        let cwnd_limited = self.cwnd_blocked || flight_before + self.mtu >= self.cc.cwnd();
        self.cwnd_blocked = false;
        let mut acks = Acks::default();

        // The cumulative ack (RFC 9260 §6.2.1 D).
        let mut cum_bytes = 0;
        for _ in 0..advance {
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            let len = e.data.payload.len();
            match e.state {
                State::InFlight => self.flight -= len,
                State::Lost => self.lost_count -= 1,
                State::Unsent | State::Acked => {}
            }
            if e.state != State::Acked {
                acks.note(&e, now, self.rtt.min_rtt());
            }
            cum_bytes += len;
            self.streams.acked(e.data.stream, len);
        }
        self.cum_ack = sack.cum_tsn_ack;
        acks.any |= advance > 0;

        // Gap blocks: increasing, non-overlapping, within what was sent; others are skipped.
        let mut prev_end = 0u16;
        for g in &sack.gaps {
            if g.start == 0 || g.start > g.end || g.start <= prev_end {
                continue;
            }
            prev_end = g.end;
            for off in g.start..=g.end {
                let Some(e) = self.entries.get_mut(off as usize - 1) else {
                    break;
                };
                match e.state {
                    State::InFlight => self.flight -= e.data.payload.len(),
                    State::Lost => self.lost_count -= 1,
                    State::Unsent | State::Acked => continue,
                }
                e.state = State::Acked;
                acks.note(e, now, self.rtt.min_rtt());
            }
        }
        self.peer_a_rwnd = sack.a_rwnd as usize;

        if let Some((sent_at, _)) = acks.sample {
            let due = match (self.last_rtt_sample, self.rtt.srtt()) {
                (Some(last), Some(srtt)) => now.saturating_duration_since(last) >= srtt,
                _ => true,
            };
            if due {
                self.rtt.sample(now.saturating_duration_since(sent_at));
                self.last_rtt_sample = Some(now);
            }
        }
        if let Some(seq) = acks.delivered_seq {
            self.delivered_seq = Some(self.delivered_seq.map_or(seq, |d| d.max(seq)));
        }

        if self.detect_losses(acks.highest, flight_before) {
            self.rtx_budget = self.mtu;
        }
        if advance > 0 {
            self.cc.on_ack(self.cum_ack, cum_bytes, cwnd_limited);
            self.timeouts = 0;
            self.rtt.reset_backoff();
        }

        // Timers: T3 restarts when the cumulative ack moves (RFC 9260 §6.3.2 R3).
        if !self.has_outstanding() {
            self.rto_at = None;
        } else if advance > 0 || self.rto_at.is_none() {
            self.rto_at = Some(now + self.rtt.rto());
        }
        if acks.any {
            self.probe_outstanding = false;
            self.probe_pending = false;
            self.arm_pto(now);
        }
    }

    /// The next DATA chunk to put in the packet being built, if one may go now and fits in
    /// `room` bytes of chunk (header included): retransmissions first, then priority streams,
    /// then the rest — within the congestion window, the peer's window and the pacing budget.
    pub fn poll_data(&mut self, now: Instant, room: usize) -> Option<Data> {
        self.refill(now);
        self.pacing_wake = None;
        if self.probe_pending {
            if let Some(d) = self.send_probe(now, room) {
                return Some(d);
            }
        }
        if let Some(d) = self.retransmit(now, room, true) {
            return Some(d);
        }
        if let Some(d) = self.send_new(now, room, true) {
            return Some(d);
        }
        if let Some(d) = self.retransmit(now, room, false) {
            return Some(d);
        }
        if self.lost_count > 0 {
            // Repairs go before new bulk data.
            return None;
        }
        self.send_new(now, room, false)
    }

    /// Timers: retransmission, loss probe, pacing.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.refill(now);
        if self.rto_at.is_some_and(|t| t <= now) {
            self.on_rto(now);
        } else if self.pto_at.is_some_and(|t| t <= now) {
            self.pto_at = None;
            if self.flight > 0 {
                self.probe_pending = true;
                self.probe_outstanding = true;
            }
        }
        if self.pacing_wake.is_some_and(|t| t <= now) {
            self.pacing_wake = None;
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.rto_at, self.pto_at, self.pacing_wake]
            .into_iter()
            .flatten()
            .min()
    }

    /// The peer's verified path allows packets this large now (path MTU probe succeeded).
    /// Applies to messages not yet started; chunks with a TSN keep their size.
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu.max(COMMON_HEADER + SACK_MIN + DATA_HEADER + 4);
        self.cc.set_mtu(self.mtu);
    }

    /// Smoothed round trip, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }

    /// Consecutive retransmission timeouts with no acknowledgement in between (the association
    /// gives up past a limit).
    pub fn consecutive_timeouts(&self) -> u32 {
        self.timeouts
    }

    /// Every TSN assigned so far up to this one (for SHUTDOWN / RE-CONFIG `last_tsn`).
    pub fn last_assigned_tsn(&self) -> u32 {
        self.next_tsn.wrapping_sub(1)
    }
}
