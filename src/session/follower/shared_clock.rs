//! The master's clock as this follower estimates it (NTP-style, from PING/PONG; PROTOCOL.md
//! §12.1), with a burst of probes right after joining so timed turns and playback are right within
//! a second.

use crate::protocol::Pong;
use crate::session::clock::{shift, ClockFilter};
use crate::session::ClockEstimate;
use crate::time::Time;
use std::time::Duration;

/// The estimate of the master's clock and the probe burst feeding it.
#[derive(Debug)]
pub(super) struct SharedClock {
    filter: ClockFilter,
    burst: u32,
    burst_interval: Duration,
    probes_left: u32,
    probe_at: Option<Time>,
}

impl SharedClock {
    /// No sample yet; `burst` probes `burst_interval` apart after each join.
    pub fn new(burst: u32, burst_interval: Duration) -> SharedClock {
        SharedClock {
            filter: ClockFilter::default(),
            burst,
            burst_interval,
            probes_left: 0,
            probe_at: None,
        }
    }

    /// What is known: offset (master − this device) and round trip.
    pub fn estimate(&self) -> Option<ClockEstimate> {
        self.filter.estimate()
    }

    /// The master's clock minus this one, in µs (0 until a sample).
    pub fn offset_us(&self) -> i64 {
        self.filter.offset_us()
    }

    /// The master's clock at local time `now`.
    pub fn master_time(&self, now: Time) -> Time {
        shift(now, self.filter.offset_us())
    }

    /// Folds in a PONG; `true` if the estimate moved.
    pub fn on_pong(&mut self, now: Time, pong: &Pong) -> bool {
        self.filter.on_pong(now, pong)
    }

    /// Joined: a burst of probes starting now.
    pub fn start_burst(&mut self, now: Time) {
        self.probes_left = self.burst;
        self.probe_at = (self.probes_left > 0).then_some(now);
    }

    /// Whether a probe is due at `now` (then the next one is scheduled).
    pub fn probe_due(&mut self, now: Time) -> bool {
        if self.probe_at.is_none_or(|t| now < t) {
            return false;
        }
        self.probes_left = self.probes_left.saturating_sub(1);
        self.probe_at = (self.probes_left > 0).then(|| now + self.burst_interval);
        true
    }

    /// When the next probe is due.
    pub fn deadline(&self) -> Option<Time> {
        self.probe_at
    }

    /// Out of the session: no probes, no samples.
    pub fn reset(&mut self) {
        self.probe_at = None;
        self.filter.reset();
    }
}
