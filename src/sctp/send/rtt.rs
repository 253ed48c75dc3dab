//! Round-trip estimation and the retransmission timeout (RFC 6298 as used by RFC 9260 §6.3.1).

use std::time::Duration;

/// Smoothed round trip, its variation and the current (backed-off) retransmission timeout.
#[derive(Debug, Clone)]
pub(super) struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    /// The timeout derived from the estimate, before backoff.
    base: Duration,
    /// The timeout in force: `base` doubled once per expiry since the last new acknowledgement.
    current: Duration,
    rto_min: Duration,
    rto_max: Duration,
}

impl Rtt {
    pub(super) fn new(rto_initial: Duration, rto_min: Duration, rto_max: Duration) -> Self {
        let rto_max = rto_max.max(rto_min);
        let base = rto_initial.clamp(rto_min, rto_max);
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            base,
            current: base,
            rto_min,
            rto_max,
        }
    }

    /// One measurement from a chunk sent exactly once (Karn's rule is the caller's).
    pub(super) fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                // RFC 6298 §2.2.
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                // RFC 6298 §2.3: beta = 1/4, alpha = 1/8.
                let delta = srtt.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + delta / 4;
                self.srtt = Some(srtt * 7 / 8 + r / 8);
            }
        }
        self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        let srtt = self.srtt.unwrap_or(r);
        self.base = (srtt + self.rttvar * 4).clamp(self.rto_min, self.rto_max);
        self.current = self.base;
    }

    /// The retransmission timeout in force.
    pub(super) fn rto(&self) -> Duration {
        self.current
    }

    /// RFC 9260 §6.3.3 E2: the timer expired, double the timeout (up to the ceiling).
    pub(super) fn back_off(&mut self) {
        self.current = (self.current * 2).min(self.rto_max);
    }

    /// New data was acknowledged: the peer is alive, drop the backoff (RFC 6298 §5.7 allows
    /// keeping it until the next sample; a LAN recovers faster without it).
    pub(super) fn reset_backoff(&mut self) {
        self.current = self.base;
    }

    pub(super) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub(super) fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// How much longer the round trip is than the shortest seen: time spent in queues. The
    /// smoothed round trip, not the latest sample: one late SACK (a busy receiver, Wi-Fi
    /// airtime) is no queue, a queue that stands for round trips is.
    pub(super) fn queue_delay(&self) -> Duration {
        match (self.srtt, self.min_rtt) {
            (Some(s), Some(m)) => s.saturating_sub(m),
            _ => Duration::ZERO,
        }
    }
}
