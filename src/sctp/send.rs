//! The outbound half of an association: what the application queued, what is in flight, and
//! when it may go out.
//!
//! - Messages wait per stream ([`queue`]); a message gets consecutive TSNs for all its
//!   fragments when its first fragment is taken (RFC 9260 §6.9), so a priority message can still
//!   be sent between two fragments of a large one: its TSN is higher, but nothing waits for it.
//! - What has a TSN and is not cumulatively acknowledged sits in one `VecDeque` indexed by
//!   TSN offset.
//! - Loss is found three ways: RFC 9260 §7.2.4 miss indications, a RACK-like rule on the order
//!   of transmissions (RFC 8985: a chunk, first sent or resent, is lost once enough data sent
//!   after it is acknowledged — this finds a lost retransmission without the timer), and a tail
//!   loss probe (RFC 8985 §7) for the last packet of a burst or a lone message.
//! - [`congestion`] sizes the window, [`pacing`] spreads it over the round trip, [`rtt`] times
//!   retransmissions.

mod congestion;
mod pacing;
mod queue;
mod rtt;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::chunk::{Data, Sack};
use congestion::Congestion;
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
/// Pacing gain: how much faster than cwnd/srtt the bucket refills (slow start, then after).
const PACING_GAIN_SLOW_START: f64 = 2.0;
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
        let mtu = cfg.mtu.max(COMMON_HEADER + DATA_HEADER + 4);
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
        self.mtu = mtu.max(COMMON_HEADER + DATA_HEADER + 4);
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

    // ---- sending ----

    fn index(&self, tsn: u32) -> Option<usize> {
        let off = tsn.wrapping_sub(self.cum_ack.wrapping_add(1)) as usize;
        (off < self.entries.len()).then_some(off)
    }

    fn max_fragment(&self) -> usize {
        ((self.mtu - COMMON_HEADER - DATA_HEADER) & !3).max(4)
    }

    /// The peer's window left (RFC 9260 §6.2.1: a_rwnd less what is in flight).
    fn peer_rwnd(&self) -> usize {
        self.peer_a_rwnd.saturating_sub(self.flight)
    }

    fn nothing_pending(&self) -> bool {
        self.lost_count == 0
            && self.unsent_count == 0
            && !self.streams.has_priority()
            && !self.streams.has_bulk()
    }

    fn has_outstanding(&self) -> bool {
        self.entries.len() > self.unsent_count
    }

    fn pacing_rate(&self) -> Option<f64> {
        let srtt = self.rtt.srtt()?.as_secs_f64().max(1e-6);
        let gain = if self.cc.in_slow_start() {
            PACING_GAIN_SLOW_START
        } else {
            PACING_GAIN
        };
        Some(gain * self.cc.cwnd() as f64 / srtt)
    }

    fn refill(&mut self, now: Instant) {
        let rate = self.pacing_rate();
        self.pacer.refill(now, rate);
    }

    /// Whether a chunk of `len` payload bytes may go now (the limits of RFC 9260 §6.1 A/B,
    /// the priority allowances, pacing). Notes why not, for the timers and cwnd growth.
    fn may_send(&mut self, now: Instant, priority: bool, retransmission: bool, len: usize) -> bool {
        let cwnd = self.cc.cwnd();
        let limit = if priority {
            cwnd + PRIORITY_OVERDRAFT_MTUS * self.mtu
        } else if retransmission {
            cwnd + self.rtx_budget
        } else {
            cwnd
        };
        if self.flight >= limit {
            if !priority {
                self.cwnd_blocked = true;
            }
            return false;
        }
        let reserve = if priority || retransmission {
            0
        } else {
            PRIORITY_RESERVE_MTUS * self.mtu
        };
        // Rule A: one chunk may always be in flight (the zero window probe).
        if self.flight > 0 && len + reserve > self.peer_rwnd() {
            return false;
        }
        if !priority {
            let size = chunk_len(len);
            if !self.pacer.ready(size) {
                self.pacing_wake = self.pacer.wait(size).map(|d| now + d);
                return false;
            }
        }
        true
    }

    fn retransmit(&mut self, now: Instant, room: usize, priority: bool) -> Option<Data> {
        loop {
            let front = if priority {
                self.lost_priority.front()
            } else {
                self.lost_bulk.front()
            };
            let tsn = *front?;
            let idx = match self.index(tsn) {
                Some(i) if self.entries[i].state == State::Lost => i,
                _ => {
                    if priority {
                        self.lost_priority.pop_front();
                    } else {
                        self.lost_bulk.pop_front();
                    }
                    continue;
                }
            };
            let len = self.entries[idx].data.payload.len();
            if chunk_len(len) > room || !self.may_send(now, priority, true, len) {
                return None;
            }
            if priority {
                self.lost_priority.pop_front();
            } else {
                self.lost_bulk.pop_front();
            }
            self.lost_count -= 1;
            self.rtx_budget = self.rtx_budget.saturating_sub(len);
            if idx == 0 {
                // RFC 9260 §7.2.4 point 4: the earliest outstanding TSN goes again, so the
                // timer restarts.
                self.rto_at = Some(now + self.rtt.rto());
            }
            return Some(self.transmit(idx, now));
        }
    }

    fn send_new(&mut self, now: Instant, room: usize, priority: bool) -> Option<Data> {
        let started = if priority {
            self.unsent_priority.front()
        } else {
            self.unsent_bulk.front()
        };
        let idx = match started.copied() {
            Some(tsn) => {
                let idx = self.index(tsn)?;
                let len = self.entries[idx].data.payload.len();
                if chunk_len(len) > room || !self.may_send(now, priority, false, len) {
                    return None;
                }
                idx
            }
            None => {
                let size = if priority {
                    self.streams.peek_priority()
                } else {
                    self.streams.peek_bulk()
                }?;
                let len = size.min(self.max_fragment());
                if chunk_len(len) > room || !self.may_send(now, priority, false, len) {
                    return None;
                }
                let (stream, ssn, msg) = if priority {
                    self.streams.pop_priority()
                } else {
                    self.streams.pop_bulk()
                }?;
                self.assign(stream, ssn, msg, priority)
            }
        };
        if priority {
            self.unsent_priority.pop_front();
        } else {
            self.unsent_bulk.pop_front();
        }
        self.unsent_count -= 1;
        Some(self.transmit(idx, now))
    }

    /// Gives every fragment of `msg` its TSN (RFC 9260 §6.9: consecutive) and returns the
    /// index of the first.
    fn assign(&mut self, stream: u16, ssn: u16, msg: Message, priority: bool) -> usize {
        let first = self.entries.len();
        let frag = self.max_fragment();
        let total = msg.payload.len();
        let mut at = 0;
        while at < total {
            let end = (at + frag).min(total);
            let tsn = self.next_tsn;
            self.next_tsn = self.next_tsn.wrapping_add(1);
            self.entries.push_back(Entry {
                data: Data {
                    tsn,
                    stream,
                    ssn,
                    ppid: msg.ppid,
                    unordered: msg.unordered,
                    begin: at == 0,
                    end: end == total,
                    immediate: false,
                    payload: msg.payload.slice(at..end),
                },
                state: State::Unsent,
                priority,
                sends: 0,
                sent_at: self.pacer_epoch(),
                seq: 0,
                misses: 0,
            });
            if priority {
                self.unsent_priority.push_back(tsn);
            } else {
                self.unsent_bulk.push_back(tsn);
            }
            self.unsent_count += 1;
            at = end;
        }
        first
    }

    /// A placeholder time for chunks never sent (never read: `sends == 0`).
    fn pacer_epoch(&self) -> Instant {
        self.pacer.last()
    }

    /// Marks `entries[idx]` sent at `now` and returns the chunk to put on the wire.
    fn transmit(&mut self, idx: usize, now: Instant) -> Data {
        let seq = self.next_seq;
        self.next_seq += 1;
        let e = &mut self.entries[idx];
        let len = e.data.payload.len();
        if e.state != State::InFlight {
            self.flight += len;
        }
        e.state = State::InFlight;
        e.sends += 1;
        e.sent_at = now;
        e.seq = seq;
        e.misses = 0;
        let tsn = e.data.tsn;
        let mut data = e.data.clone();
        self.log.push_back((seq, tsn));
        if tsn_lt(self.highest_sent, tsn) {
            self.highest_sent = tsn;
        }
        self.pacer.consume(chunk_len(len));
        // RFC 7053: nothing follows, so ask for the SACK now rather than after a delay.
        data.immediate = self.nothing_pending();
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rtt.rto());
        }
        self.arm_pto(now);
        data
    }

    /// A tail loss probe: the highest chunk in flight again, regardless of cwnd (RFC 8985 §7.3).
    fn send_probe(&mut self, now: Instant, room: usize) -> Option<Data> {
        let Some(idx) = self
            .entries
            .iter()
            .rposition(|e| e.state == State::InFlight)
        else {
            self.probe_pending = false;
            return None;
        };
        if chunk_len(self.entries[idx].data.payload.len()) > room {
            return None;
        }
        self.probe_pending = false;
        let mut data = self.transmit(idx, now);
        data.immediate = true;
        Some(data)
    }

    /// (Re)arms the probe timeout (RFC 8985 §7.2): 2·srtt, more for a lone chunk, never
    /// past the retransmission timer.
    fn arm_pto(&mut self, now: Instant) {
        self.pto_at = None;
        if self.probe_outstanding || self.flight == 0 {
            return;
        }
        let Some(srtt) = self.rtt.srtt() else {
            return;
        };
        let mut pto = (srtt * 2).max(PTO_MIN);
        if self.flight <= self.max_fragment() {
            pto += PTO_LONE_EXTRA;
        }
        let at = now + pto;
        if self.rto_at.is_none_or(|rto| at < rto) {
            self.pto_at = Some(at);
        }
    }

    // ---- loss ----

    /// Declares lost what the acknowledgements show missing; true if anything was.
    /// `highest_newly_acked`: (TSN, transmission sequence) of the highest TSN newly acked;
    /// `flight_before`: bytes in flight before this SACK.
    fn detect_losses(
        &mut self,
        highest_newly_acked: Option<(u32, u64)>,
        flight_before: usize,
    ) -> bool {
        let mut lost = false;
        // Miss indications below the highest newly acknowledged TSN (RFC 9260 §7.2.4 1),
        // for chunks sent once and before it (a priority chunk may overtake the rest of a
        // started message); a resent chunk is judged by the order rule below.
        if let Some((htna, htna_seq)) =
            highest_newly_acked.and_then(|(t, q)| Some((self.index(t)?, q)))
        {
            for idx in 0..htna {
                let e = &mut self.entries[idx];
                if e.state == State::InFlight && e.sends == 1 && e.seq < htna_seq {
                    e.misses = e.misses.saturating_add(1);
                    if e.misses >= MISS_THRESHOLD {
                        self.declare_lost(idx, flight_before);
                        lost = true;
                    }
                }
            }
        }
        // Order rule (RFC 8985 §6.2 by transmission sequence): sent before something
        // acknowledged, with REORDER_CHUNKS sent in between, and still unacknowledged.
        let Some(delivered) = self.delivered_seq else {
            return lost;
        };
        while let Some(&(seq, tsn)) = self.log.front() {
            let idx = self.index(tsn);
            if idx.is_some() && seq + REORDER_CHUNKS > delivered {
                break;
            }
            self.log.pop_front();
            if let Some(idx) = idx {
                let e = &self.entries[idx];
                if e.state == State::InFlight && e.seq == seq {
                    self.declare_lost(idx, flight_before);
                    lost = true;
                }
            }
        }
        lost
    }

    /// A loss found from acknowledgements: resend it, and tell the window.
    fn declare_lost(&mut self, idx: usize, flight_before: usize) {
        let tsn = self.entries[idx].data.tsn;
        let len = self.mark_lost(idx);
        let min_rtt = self.rtt.min_rtt().unwrap_or(Duration::ZERO);
        let queue_delay = self.rtt.queue_delay();
        let highest_sent = self.highest_sent;
        self.cc
            .on_loss(tsn, len, flight_before, highest_sent, queue_delay, min_rtt);
    }

    fn mark_lost(&mut self, idx: usize) -> usize {
        let e = &mut self.entries[idx];
        let len = e.data.payload.len();
        if e.state == State::InFlight {
            self.flight -= len;
        }
        e.state = State::Lost;
        self.lost_count += 1;
        if e.priority {
            self.lost_priority.push_back(e.data.tsn);
        } else {
            self.lost_bulk.push_back(e.data.tsn);
        }
        len
    }

    /// The retransmission timer expired (RFC 9260 §6.3.3).
    fn on_rto(&mut self, now: Instant) {
        self.timeouts += 1;
        self.rtt.back_off();
        self.cc.on_timeout();
        // Gap-acked data with nothing below it left to resend: the peer dropped it (reneged).
        let reneged = self
            .entries
            .front()
            .is_some_and(|e| e.state == State::Acked);
        for idx in 0..self.entries.len() {
            let state = self.entries[idx].state;
            if state == State::InFlight || (reneged && state == State::Acked) {
                self.mark_lost(idx);
            }
        }
        self.rtx_budget = 0;
        self.probe_pending = false;
        self.probe_outstanding = false;
        self.pto_at = None;
        self.rto_at = self.has_outstanding().then(|| now + self.rtt.rto());
    }
}

/// What one SACK newly acknowledged.
#[derive(Default)]
struct Acks {
    any: bool,
    /// (TSN, transmission sequence) of the highest TSN acknowledged.
    highest: Option<(u32, u64)>,
    delivered_seq: Option<u64>,
    /// (sent at, seq) of the latest-sent chunk acknowledged that was sent once.
    sample: Option<(Instant, u64)>,
}

impl Acks {
    fn note(&mut self, e: &Entry, now: Instant, min_rtt: Option<Duration>) {
        self.any = true;
        let tsn = e.data.tsn;
        if self.highest.is_none_or(|(h, _)| tsn_lt(h, tsn)) {
            self.highest = Some((tsn, e.seq));
        }
        if e.sends == 1 {
            if self.sample.is_none_or(|(_, s)| s < e.seq) {
                self.sample = Some((e.sent_at, e.seq));
            }
        } else {
            // A resent chunk: the ack may be for an earlier sending. Believe it was the last
            // one only if at least a minimum round trip has passed since (RFC 8985 §6.2 step 2).
            let plausible = min_rtt.is_some_and(|m| now.saturating_duration_since(e.sent_at) >= m);
            if !plausible {
                return;
            }
        }
        if self.delivered_seq.is_none_or(|d| d < e.seq) {
            self.delivered_seq = Some(e.seq);
        }
    }
}
