//! Taking chunks for a packet: the order (retransmissions, priority, the rest), the limits
//! (RFC 9260 §6.1 A/B, the priority allowances, pacing), TSN assignment and the probe timer.

use std::time::Instant;

use super::queue::Message;
use super::{
    chunk_len, tsn_lt, Data, Entry, Sender, State, COMMON_HEADER, DATA_HEADER, PACING_GAIN,
    PACING_GAIN_SLOW_START, PRIORITY_OVERDRAFT_MTUS, PRIORITY_RESERVE_MTUS, PTO_LONE_EXTRA,
    PTO_MIN, SACK_MIN,
};

impl Sender {
    /// Position of `tsn` in `entries`, if it has a TSN and is not cumulatively acked.
    pub(super) fn index(&self, tsn: u32) -> Option<usize> {
        let off = tsn.wrapping_sub(self.cum_ack.wrapping_add(1)) as usize;
        (off < self.entries.len()).then_some(off)
    }

    /// Payload of a full fragment: a packet holds it with a SACK without gap blocks in front,
    /// so a pending SACK rides along instead of taking a packet of its own.
    pub(super) fn max_fragment(&self) -> usize {
        (self
            .mtu
            .saturating_sub(COMMON_HEADER + SACK_MIN + DATA_HEADER)
            & !3)
            .max(4)
    }

    /// The peer's window left (RFC 9260 §6.2.1: a_rwnd less what is in flight).
    pub(super) fn peer_rwnd(&self) -> usize {
        self.peer_a_rwnd.saturating_sub(self.flight)
    }

    /// Nothing to resend, nothing queued: the chunk just taken is the last for now.
    pub(super) fn nothing_pending(&self) -> bool {
        self.lost_count == 0
            && self.unsent_count == 0
            && !self.streams.has_priority()
            && !self.streams.has_bulk()
    }

    /// Something sent may need resending: in flight, declared lost, or gap-acked data the
    /// cumulative ack should have passed (the peer reneged). Gap-acked chunks behind a started
    /// message's unsent fragments need no timer.
    pub(super) fn has_outstanding(&self) -> bool {
        self.flight > 0
            || self.lost_count > 0
            || self
                .entries
                .front()
                .is_some_and(|e| e.state == State::Acked)
    }

    /// Bytes per second the bucket refills at: gain · cwnd / srtt (none before a sample).
    pub(super) fn pacing_rate(&self) -> Option<f64> {
        let srtt = self.rtt.srtt()?.as_secs_f64().max(1e-6);
        let gain = if self.cc.in_slow_start() {
            PACING_GAIN_SLOW_START
        } else {
            PACING_GAIN
        };
        Some(gain * self.cc.cwnd() as f64 / srtt)
    }

    /// Brings the bucket up to `now` (called on every entry point, see `pacing`).
    pub(super) fn refill(&mut self, now: Instant) {
        let rate = self.pacing_rate();
        self.pacer.refill(now, rate);
    }

    /// Whether a chunk of `len` payload bytes may go now (the limits of RFC 9260 §6.1 A/B,
    /// the priority allowances, pacing). Notes why not, for the timers and cwnd growth.
    pub(super) fn may_send(
        &mut self,
        now: Instant,
        priority: bool,
        retransmission: bool,
        len: usize,
    ) -> bool {
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

    /// The oldest chunk declared lost of its class, if it may go now.
    pub(super) fn retransmit(&mut self, now: Instant, room: usize, priority: bool) -> Option<Data> {
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

    /// The next new chunk of its class: a started message's next fragment, else the first
    /// fragment of the next message (which gets all its TSNs now).
    pub(super) fn send_new(&mut self, now: Instant, room: usize, priority: bool) -> Option<Data> {
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
    pub(super) fn assign(&mut self, stream: u16, ssn: u16, msg: Message, priority: bool) -> usize {
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
    pub(super) fn pacer_epoch(&self) -> Instant {
        self.pacer.last()
    }

    /// Marks `entries[idx]` sent at `now` and returns the chunk to put on the wire.
    pub(super) fn transmit(&mut self, idx: usize, now: Instant) -> Data {
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
    pub(super) fn send_probe(&mut self, now: Instant, room: usize) -> Option<Data> {
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
        // The probe's answer gets a full timeout too (RFC 8985 §7.3 re-arms the RTO), or a
        // jittery path would time out while the answer is on its way.
        self.rto_at = Some(now + self.rtt.rto());
        Some(data)
    }

    /// (Re)arms the probe timeout (RFC 8985 §7.2): 2·srtt, more for a lone chunk, never
    /// past the retransmission timer.
    pub(super) fn arm_pto(&mut self, now: Instant) {
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
}
