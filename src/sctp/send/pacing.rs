//! Pacing: a token bucket that spreads a window's worth of packets over a round trip, so a
//! burst never overflows an ordinary receiver's socket buffer (Chromium reads from a 128 KiB
//! UDP buffer; bursts are capped at half of it).
//!
//! The bucket refills from the time elapsed at every call, not on timer ticks: a driver's
//! timers fire with ~1 ms granularity while SACKs arrive every few microseconds under load,
//! and each SACK is a chance to send.

use std::time::{Duration, Instant};

/// Largest burst, bytes.
pub(super) const MAX_BURST: f64 = 64.0 * 1024.0;

/// A token bucket in bytes.
#[derive(Debug, Clone)]
pub(super) struct Pacer {
    tokens: f64,
    last: Instant,
    /// Bytes per second; `None` until a round trip is measured (then only the burst cap holds).
    rate: Option<f64>,
}

impl Pacer {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            tokens: MAX_BURST,
            last: now,
            rate: None,
        }
    }

    /// Adds the tokens earned since the last call at the rate in force, then sets the rate for
    /// what follows.
    pub(super) fn refill(&mut self, now: Instant, rate: Option<f64>) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = match self.rate {
            // No round trip yet: one burst per instant (the initial window is far smaller).
            None if elapsed > 0.0 => MAX_BURST,
            None => self.tokens,
            Some(r) => (self.tokens + elapsed * r).min(MAX_BURST),
        };
        self.rate = rate;
    }

    /// True when `size` bytes may go now.
    pub(super) fn ready(&self, size: usize) -> bool {
        self.tokens >= Self::cost(size)
    }

    /// Tokens a chunk needs: its size, but never more than the bucket holds (a probed MTU may
    /// exceed the burst cap).
    fn cost(size: usize) -> f64 {
        (size as f64).min(MAX_BURST)
    }

    /// Takes `size` bytes; a priority chunk may take more than there is (the debt delays bulk
    /// data instead).
    pub(super) fn consume(&mut self, size: usize) {
        self.tokens = (self.tokens - size as f64).max(-MAX_BURST);
    }

    /// How long until `size` bytes may go (None: never at this rate, i.e. no rate).
    pub(super) fn wait(&self, size: usize) -> Option<Duration> {
        let missing = Self::cost(size) - self.tokens;
        if missing <= 0.0 {
            return Some(Duration::ZERO);
        }
        let rate = self.rate?;
        if rate <= 0.0 {
            return None;
        }
        // Round up to a whole microsecond so the wake-up finds the tokens there.
        Some(Duration::from_micros(
            (missing / rate * 1e6).ceil() as u64 + 1,
        ))
    }
}

impl Pacer {
    /// Time of the last refill.
    pub(super) fn last(&self) -> Instant {
        self.last
    }
}
