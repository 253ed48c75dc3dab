//! Finding losses: RFC 9260 §7.2.4 miss indications, the order of transmissions (RFC 8985
//! §6.2), and the retransmission timer (RFC 9260 §6.3.3).

use std::time::{Duration, Instant};

use super::{tsn_lt, Entry, Sender, State, MISS_THRESHOLD, REORDER_CHUNKS};

impl Sender {
    /// Declares lost what the acknowledgements show missing; true if anything was.
    /// `highest_newly_acked`: (TSN, transmission sequence) of the highest TSN newly acked;
    /// `flight_before`: bytes in flight before this SACK.
    pub(super) fn detect_losses(
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
    pub(super) fn declare_lost(&mut self, idx: usize, flight_before: usize) {
        let tsn = self.entries[idx].data.tsn;
        let len = self.mark_lost(idx);
        let min_rtt = self.rtt.min_rtt().unwrap_or(Duration::ZERO);
        let queue_delay = self.rtt.queue_delay();
        let highest_sent = self.highest_sent;
        self.cc
            .on_loss(tsn, len, flight_before, highest_sent, queue_delay, min_rtt);
    }

    pub(super) fn mark_lost(&mut self, idx: usize) -> usize {
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
    pub(super) fn on_rto(&mut self, now: Instant) {
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
pub(super) struct Acks {
    pub(super) any: bool,
    /// (TSN, transmission sequence) of the highest TSN acknowledged.
    pub(super) highest: Option<(u32, u64)>,
    pub(super) delivered_seq: Option<u64>,
    /// (sent at, seq) of the latest-sent chunk acknowledged that was sent once.
    pub(super) sample: Option<(Instant, u64)>,
}

impl Acks {
    pub(super) fn note(&mut self, e: &Entry, now: Instant, min_rtt: Option<Duration>) {
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
