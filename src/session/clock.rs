//! Clock offset and round-trip time from PING/PONG timestamps, NTP style.
//!
//! Each PONG gives one sample: with `t0` (our clock, PING sent), `t1`/`t2` (peer clock, PING
//! received / PONG sent) and `t3` (our clock, PONG received),
//!
//! ```text
//! rtt    = (t3 − t0) − (t2 − t1)
//! offset = ((t1 − t0) + (t2 − t3)) / 2        peer clock − our clock
//! ```
//!
//! Since no message travels in negative time, each sample *bounds* the offset: it lies in
//! `[t2 − t3, t1 − t0]`, which is `offset ± rtt/2`. The estimate is the middle of the
//! intersection of those intervals over the last [`WINDOW`] samples: the lower end comes from the
//! fastest way back, the upper from the fastest way out, even when they were different samples,
//! so it beats picking the single minimum-RTT sample (NTP's clock filter). A delay spike only
//! widens its own interval and never moves the estimate. If the intervals do not intersect (a
//! clock that stepped or drifted within the window), the minimum-RTT sample is used instead.
//! Samples with inconsistent times or an absurd round trip are rejected outright.

use super::Time;
use crate::protocol::Pong;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Samples kept: enough for a join burst plus a few heartbeats, few enough to follow drift.
pub const WINDOW: usize = 24;
/// A round trip longer than this is not a clock sample (a stalled peer, a replayed PONG).
const MAX_RTT_US: u64 = 5_000_000;

/// What is known about a peer's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockEstimate {
    /// Peer clock minus this device's clock, µs (add it to a local time to get the peer's).
    pub offset_us: i64,
    /// Smallest round trip in the window, µs.
    pub rtt_us: u64,
    /// Bound on the offset's error, µs: half the width of the intersection (or half the
    /// minimum round trip when the samples disagree).
    pub error_us: u64,
    /// Samples currently in the filter.
    pub samples: u32,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Twice the offset, µs: `(t1 − t0) + (t2 − t3)` exactly, so no rounding hides in a bound.
    offset2: i128,
    rtt_us: u64,
}

/// The clock filter for one peer.
#[derive(Debug, Clone, Default)]
pub struct ClockFilter {
    samples: VecDeque<Sample>,
    rejected: u64,
}

impl ClockFilter {
    /// Folds in the PONG answering one of our PINGs, received at `now`. Returns whether the
    /// sample was kept.
    pub fn on_pong(&mut self, now: Time, pong: &Pong) -> bool {
        let t3 = now.as_micros();
        let (t0, t1, t2) = (pong.t0, pong.t1, pong.t2);
        if t3 < t0 || t2 < t1 {
            self.rejected += 1;
            return false; // not one of ours, or a clock that went backwards
        }
        let rtt = (t3 - t0).saturating_sub(t2 - t1);
        if rtt > MAX_RTT_US {
            self.rejected += 1;
            return false;
        }
        // i128: four u64 microsecond stamps cannot overflow it.
        let offset2 = (i128::from(t1) - i128::from(t0)) + (i128::from(t2) - i128::from(t3));
        if i64::try_from(offset2 / 2).is_err() {
            self.rejected += 1;
            return false;
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            offset2,
            rtt_us: rtt,
        });
        true
    }

    /// The current estimate, once there is a sample.
    pub fn estimate(&self) -> Option<ClockEstimate> {
        let best = self.samples.iter().min_by_key(|s| s.rtt_us)?;
        // Bounds on twice the offset, exact: offset·2 ± rtt.
        let bounds = |s: &Sample| {
            let rtt = i128::from(s.rtt_us);
            (s.offset2 - rtt, s.offset2 + rtt)
        };
        let lower = self.samples.iter().map(|s| bounds(s).0).max()?;
        let upper = self.samples.iter().map(|s| bounds(s).1).min()?;
        let (lower, upper) = if lower <= upper {
            (lower, upper)
        } else {
            bounds(best)
        };
        // In quarter µs: the centre is lower + upper, the radius upper − lower. Rounding the
        // centre to whole µs widens the error by what the rounding moved it, so the truth always
        // stays within `error_us` of `offset_us`.
        let centre4 = lower + upper;
        let offset = centre4.div_euclid(4) + i128::from(centre4.rem_euclid(4) >= 2);
        let spread4 = (upper - lower) + (centre4 - 4 * offset).abs();
        let offset_us = offset as i64;
        let error_us = ((spread4 + 3) / 4) as u64;
        Some(ClockEstimate {
            offset_us,
            rtt_us: best.rtt_us,
            error_us,
            samples: self.samples.len() as u32,
        })
    }

    /// The offset to apply, zero while nothing is known (clocks on one LAN are usually close).
    pub fn offset_us(&self) -> i64 {
        self.estimate().map_or(0, |e| e.offset_us)
    }

    /// Samples rejected as inconsistent.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Forgets everything (a new link may be a different path, or a restarted peer).
    pub fn reset(&mut self) {
        self.samples.clear();
    }
}

/// `t` shifted by a signed number of microseconds, saturating at the ends of the clock.
pub fn shift(t: Time, by_us: i64) -> Time {
    Time(t.0.saturating_add_signed(by_us))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PONG for a PING sent at local `t0`, with one-way delays `up`/`down` and a peer clock
    /// `offset` ahead of ours; returns it with its local arrival time.
    fn exchange(t0: u64, up: u64, down: u64, offset: i64, hold: u64) -> (Time, Pong) {
        let t1 = (t0 + up).saturating_add_signed(offset);
        let t2 = t1 + hold;
        let t3 = t0 + up + hold + down;
        (Time(t3), Pong { id: 1, t0, t1, t2 })
    }

    #[test]
    fn an_odd_round_trip_all_on_one_leg_stays_within_the_bound() {
        // Found by the property test: with whole-µs halving the truth sat 1 µs outside.
        let mut f = ClockFilter::default();
        let (now, pong) = exchange(1_000_000, 0, 43_697, 226_584, 0);
        assert!(f.on_pong(now, &pong));
        let e = f.estimate().unwrap();
        assert!(e.offset_us.abs_diff(226_584) <= e.error_us, "{e:?}");
    }

    #[test]
    fn symmetric_paths_give_the_exact_offset() {
        let mut f = ClockFilter::default();
        let (now, pong) = exchange(1_000_000, 10_000, 10_000, -50_000, 300);
        assert!(f.on_pong(now, &pong));
        let e = f.estimate().unwrap();
        assert_eq!(e.offset_us, -50_000);
        assert_eq!(e.rtt_us, 20_000);
        assert_eq!(e.error_us, 10_000);
    }

    #[test]
    fn delay_spikes_do_not_move_the_estimate() {
        let mut f = ClockFilter::default();
        let (now, pong) = exchange(1_000_000, 11_000, 10_000, 50_000, 0);
        f.on_pong(now, &pong);
        // A spike: 300 ms up, 10 ms down, would put the offset off by 145 ms on its own.
        let (now, pong) = exchange(2_000_000, 300_000, 10_000, 50_000, 0);
        f.on_pong(now, &pong);
        let e = f.estimate().unwrap();
        assert_eq!(e.offset_us, 50_500);
        assert_eq!(e.samples, 2);
    }

    #[test]
    fn fast_ways_out_and_back_from_different_samples_combine() {
        let mut f = ClockFilter::default();
        // Quick out, slow back; then slow out, quick back. Each alone is off by 9.5 ms.
        let (now, pong) = exchange(1_000_000, 1_000, 20_000, -50_000, 0);
        f.on_pong(now, &pong);
        let (now, pong) = exchange(2_000_000, 20_000, 1_000, -50_000, 0);
        f.on_pong(now, &pong);
        let e = f.estimate().unwrap();
        assert_eq!(e.offset_us, -50_000);
        assert_eq!(e.error_us, 1_000);
        assert_eq!(e.rtt_us, 21_000);
    }

    #[test]
    fn a_clock_step_falls_back_to_the_fastest_sample() {
        let mut f = ClockFilter::default();
        let (now, pong) = exchange(1_000_000, 5_000, 5_000, 0, 0);
        f.on_pong(now, &pong);
        let (now, pong) = exchange(2_000_000, 4_000, 4_000, 80_000, 0);
        f.on_pong(now, &pong);
        let e = f.estimate().unwrap();
        assert_eq!((e.offset_us, e.error_us), (80_000, 4_000));
    }

    #[test]
    fn inconsistent_or_absurd_samples_are_rejected() {
        let mut f = ClockFilter::default();
        // PONG "from the future" of our own clock.
        let pong = Pong {
            id: 1,
            t0: 9_000_000,
            t1: 1,
            t2: 2,
        };
        assert!(!f.on_pong(Time(5_000_000), &pong));
        // A round trip of 6 s.
        let (now, pong) = exchange(1_000_000, 3_000_000, 3_000_000, 0, 0);
        assert!(!f.on_pong(now, &pong));
        assert_eq!(f.estimate(), None);
        assert_eq!(f.rejected(), 2);
        assert_eq!(f.offset_us(), 0);
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut f = ClockFilter::default();
        let (now, pong) = exchange(1_000_000, 1_000, 1_000, 7_000, 0);
        f.on_pong(now, &pong);
        for i in 0..WINDOW as u64 {
            let (now, pong) = exchange(2_000_000 + i * 1_000_000, 5_000, 5_000, 9_000, 0);
            f.on_pong(now, &pong);
        }
        // The fast sample has left the window; the clock is now read from the newer ones.
        assert_eq!(f.estimate().unwrap().offset_us, 9_000);
        assert_eq!(f.estimate().unwrap().samples, WINDOW as u32);
    }

    #[test]
    fn extreme_stamps_do_not_panic() {
        let mut f = ClockFilter::default();
        let pong = Pong {
            id: 1,
            t0: 0,
            t1: u64::MAX,
            t2: u64::MAX,
        };
        assert!(!f.on_pong(Time(0), &pong));
        assert_eq!(shift(Time(5), -10), Time(0));
        assert_eq!(shift(Time(u64::MAX - 1), 10), Time(u64::MAX));
    }
}
