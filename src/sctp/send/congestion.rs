//! Congestion control for a LAN (RFC 9260 §7.2 with gentler constants).
//!
//! Random loss on Wi-Fi says nothing about congestion, while a receiver socket buffer that
//! overflows first fills up (the round trip grows) and then drops a burst. So a recovery
//! episode cuts the window gently ([`BETA_RANDOM`]) unless the round trip shows a queue
//! ([`QUEUE_SIGN`]: then [`BETA_CONGESTION`], as Reno), and an episode that lost a large share
//! of what was in flight ([`BURST_LOSS`]) halves it at its end. The window keeps growing
//! during recovery (RFC 9260 §7.2.4 freezes it; with random loss a sender is in recovery most
//! of the time), by [`CA_GROWTH`] MTUs per window acknowledged instead of one, so it comes
//! back within a few round trips (a LAN round trip is well under a millisecond).

use std::time::Duration;

use super::tsn_lt;

/// Multiplicative decrease at the start of a recovery episode without a queue.
const BETA_RANDOM: f64 = 0.95;
/// Multiplicative decrease when the round trip shows a queue building.
const BETA_CONGESTION: f64 = 0.5;
/// Queueing delay (latest round trip less the shortest) taken as a building queue; it must
/// also exceed the shortest round trip itself.
const QUEUE_SIGN: Duration = Duration::from_micros(200);
/// Share of the bytes in flight lost in one episode above which the loss was congestion.
const BURST_LOSS: f64 = 0.25;
/// MTUs added per window acknowledged in congestion avoidance (RFC 9260 §7.2.2 adds one).
const CA_GROWTH: usize = 4;
/// Initial window in MTUs: RFC 6928's ten segments; paced, it cannot overflow a receiver.
const INITIAL_MTUS: usize = 10;
/// Floor of ssthresh in MTUs (RFC 9260 §7.2.3: 4·MTU).
const MIN_SSTHRESH_MTUS: usize = 4;
/// Ceiling of the window, bytes: far above any LAN's bandwidth-delay product.
const MAX_CWND: usize = 16 << 20;

#[derive(Debug, Clone)]
struct Episode {
    /// Highest TSN sent when the episode began: it ends once that is cumulatively acked.
    until: u32,
    /// Bytes in flight when it began.
    flight: usize,
    /// Bytes declared lost during it, of chunks sent before it began (later ones would count
    /// a second round trip's random loss against the first's flight).
    lost: usize,
    /// The window was already halved when it began.
    halved: bool,
}

/// Window state.
#[derive(Debug, Clone)]
pub(super) struct Congestion {
    mtu: usize,
    cwnd: usize,
    ssthresh: usize,
    partial_acked: usize,
    recovery: Option<Episode>,
}

impl Congestion {
    pub(super) fn new(mtu: usize, peer_rwnd: usize) -> Self {
        Self {
            mtu,
            cwnd: INITIAL_MTUS * mtu,
            // RFC 9260 §7.2.1: may be arbitrarily high, e.g. the peer's window.
            ssthresh: peer_rwnd.max(MIN_SSTHRESH_MTUS * mtu),
            partial_acked: 0,
            recovery: None,
        }
    }

    pub(super) fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
    }

    pub(super) fn cwnd(&self) -> usize {
        self.cwnd
    }

    pub(super) fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    #[cfg(test)]
    pub(super) fn in_recovery(&self) -> bool {
        self.recovery.is_some()
    }

    /// A chunk (`tsn`, `len` bytes) was declared lost by fast retransmit or loss detection:
    /// one reduction per episode (RFC 9260 §7.2.4 point 2). `queue_delay`, `min_rtt`: the
    /// round trip's excess over its minimum, and that minimum.
    pub(super) fn on_loss(
        &mut self,
        tsn: u32,
        len: usize,
        flight_before: usize,
        highest_sent: u32,
        queue_delay: Duration,
        min_rtt: Duration,
    ) {
        match &mut self.recovery {
            Some(ep) => {
                if !tsn_lt(ep.until, tsn) {
                    ep.lost += len;
                }
            }
            None => {
                let queue = queue_delay >= QUEUE_SIGN && queue_delay >= min_rtt;
                let beta = if queue { BETA_CONGESTION } else { BETA_RANDOM };
                self.ssthresh = ((self.cwnd as f64 * beta) as usize).max(self.min_ssthresh());
                self.cwnd = self.ssthresh;
                // Keep the progress towards the next step (RFC 9260 §7.2.2 resets it): with
                // random loss an episode begins about every round trip, and a reset each time
                // would stop growth altogether.
                self.partial_acked = self.partial_acked.min(self.cwnd);
                self.recovery = Some(Episode {
                    until: highest_sent,
                    flight: flight_before.max(self.mtu),
                    lost: len,
                    halved: queue,
                });
            }
        }
    }

    /// The cumulative ack moved to `cum_ack`, acknowledging `acked` new bytes; `cwnd_limited`
    /// says whether the window was the limit (RFC 9260 §7.2.1/§7.2.2: only then it grows).
    pub(super) fn on_ack(&mut self, cum_ack: u32, acked: usize, cwnd_limited: bool) {
        if let Some(ep) = &self.recovery {
            if !tsn_lt(cum_ack, ep.until) {
                if !ep.halved && ep.lost as f64 > ep.flight as f64 * BURST_LOSS {
                    // A burst was dropped: a buffer overflowed, back off like Reno overall.
                    self.ssthresh = (self.cwnd / 2).max(self.min_ssthresh());
                    self.cwnd = self.ssthresh;
                }
                self.recovery = None;
            }
        }
        if !cwnd_limited || acked == 0 {
            return;
        }
        if self.cwnd < self.ssthresh {
            // Slow start, counting bytes (RFC 3465 without the per-ack limit: paced, and a LAN
            // peer delays SACKs for at most two packets).
            self.cwnd = (self.cwnd + acked).min(MAX_CWND);
        } else {
            self.partial_acked += acked;
            if self.partial_acked >= self.cwnd {
                self.partial_acked -= self.cwnd;
                self.cwnd = (self.cwnd + CA_GROWTH * self.mtu).min(MAX_CWND);
            }
        }
    }

    /// The retransmission timer expired (RFC 9260 §7.2.3).
    pub(super) fn on_timeout(&mut self) {
        self.ssthresh = (self.cwnd / 2).max(self.min_ssthresh());
        self.cwnd = self.mtu;
        self.partial_acked = 0;
        self.recovery = None;
    }

    fn min_ssthresh(&self) -> usize {
        MIN_SSTHRESH_MTUS * self.mtu
    }
}
