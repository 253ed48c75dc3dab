//! Playback prediction: where shared media (or a timer) is at any instant, from one anchored
//! state, so no message per frame is needed.
//!
//! The master owns the state on its clock and changes it with [`Playback::apply`]; everyone
//! computes [`Playback::position_at`] for the time they want. A follower moves the master's
//! state onto its own clock with [`Playback::rebased`] (master time = local time + offset).

use super::clock::shift;
use super::Time;
use crate::protocol::{Direction, LoopMode, Playback, PlaybackOp, Rate, MAX_POSITION_US};
use std::time::Duration;

/// Media id a [`PlaybackOp::Timer`] loads.
pub const TIMER_MEDIA_ID: &str = "timer";

impl Playback {
    /// Position (µs of media time) at time `t` of the clock this state is anchored to.
    pub fn position_at(&self, t: Time) -> u64 {
        if !self.running || t.0 <= self.anchor_us {
            return self.position_us;
        }
        // f64 → i128 casts saturate, so absurd spans cannot overflow.
        let elapsed = ((t.0 - self.anchor_us) as f64 * self.rate.get()) as i128;
        let start = i128::from(self.position_us);
        let raw = match self.direction {
            Direction::Forward => start.saturating_add(elapsed),
            Direction::Backward => start.saturating_sub(elapsed),
        };
        self.wrap(raw)
    }

    /// Folds a raw position into the in/out range: around it when looping, else stopped at
    /// the end reached.
    fn wrap(&self, raw: i128) -> u64 {
        let lo = i128::from(self.in_us);
        let hi = i128::from(self.out_us.unwrap_or(MAX_POSITION_US));
        let folded = match (self.loop_mode, self.out_us) {
            (LoopMode::Loop, Some(_)) if hi > lo => lo + (raw - lo).rem_euclid(hi - lo),
            _ => raw.clamp(lo, hi),
        };
        folded.clamp(0, i128::from(MAX_POSITION_US)) as u64
    }

    /// How far apart two positions are in media time: around the loop when looping, so the
    /// two sides of the loop point are close.
    pub fn distance(&self, a: u64, b: u64) -> u64 {
        let d = a.abs_diff(b);
        match (self.loop_mode, self.out_us) {
            (LoopMode::Loop, Some(out)) if out > self.in_us => {
                d.min((out - self.in_us).saturating_sub(d))
            }
            _ => d,
        }
    }

    /// Whether playback has stopped at an end by `t` (never while looping).
    pub fn ended_at(&self, t: Time) -> bool {
        let p = self.position_at(t);
        self.loop_mode == LoopMode::Off
            && match self.direction {
                Direction::Forward => self.out_us == Some(p),
                Direction::Backward => p == self.in_us,
            }
    }

    /// Real time left until the end in the running direction at this rate (a drawing timer's
    /// countdown); `None` when the out point is unknown.
    pub fn remaining_at(&self, t: Time) -> Option<Duration> {
        let p = self.position_at(t);
        let media = match self.direction {
            Direction::Forward => self.out_us?.saturating_sub(p),
            Direction::Backward => p.saturating_sub(self.in_us),
        };
        Some(Duration::from_micros(
            (media as f64 / self.rate.get()) as u64,
        ))
    }

    /// The same motion on another clock: `offset_us` is this state's clock minus the other, so
    /// the result, anchored at `anchor` on the other clock, predicts the same positions.
    pub fn rebased(&self, anchor: Time, offset_us: i64) -> Playback {
        if shift(anchor, offset_us).0 < self.anchor_us {
            // Not started yet on the other clock (it runs a little behind): keep the anchor,
            // translated, so motion starts at the same instant.
            return Playback {
                anchor_us: shift(Time(self.anchor_us), -offset_us).0,
                ..self.clone()
            };
        }
        Playback {
            position_us: self.position_at(shift(anchor, offset_us)),
            anchor_us: anchor.0,
            ..self.clone()
        }
    }

    /// Applies a change at `now` (this state's clock): the motion so far is kept by moving the
    /// anchor to `now` first. Increments `revision`.
    pub fn apply(&mut self, now: Time, op: &PlaybackOp) {
        self.position_us = self.position_at(now);
        self.anchor_us = now.0;
        match op {
            PlaybackOp::Load { media_id } => {
                *self = Playback {
                    media_id: media_id.clone(),
                    revision: self.revision,
                    anchor_us: now.0,
                    ..Playback::default()
                }
            }
            PlaybackOp::Play => {
                // Play at an end starts again from the other end, as players do.
                if self.ended_at(now) {
                    self.position_us = match self.direction {
                        Direction::Forward => self.in_us,
                        Direction::Backward => self.out_us.unwrap_or(self.position_us),
                    };
                }
                self.running = true;
            }
            PlaybackOp::Pause => self.running = false,
            PlaybackOp::Seek { position_us } => self.position_us = *position_us,
            PlaybackOp::SetRate { rate } => self.rate = *rate,
            PlaybackOp::SetDirection { direction } => self.direction = *direction,
            PlaybackOp::SetLoop { loop_mode } => self.loop_mode = *loop_mode,
            PlaybackOp::SetRange { in_us, out_us } => {
                self.in_us = *in_us;
                self.out_us = *out_us;
            }
            PlaybackOp::SetPhase { phase } => self.phase = phase.clone(),
            PlaybackOp::Timer { duration_us, phase } => {
                *self = Playback {
                    media_id: TIMER_MEDIA_ID.into(),
                    revision: self.revision,
                    running: true,
                    anchor_us: now.0,
                    rate: Rate::NORMAL,
                    out_us: Some(*duration_us),
                    phase: phase.clone(),
                    ..Playback::default()
                }
            }
        }
        self.clamp();
        self.revision += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn playing(position_us: u64) -> Playback {
        Playback {
            media_id: "clip".into(),
            running: true,
            position_us,
            anchor_us: 100 * S,
            ..Playback::default()
        }
    }

    fn at(secs: f64) -> Time {
        Time(100 * S + (secs * S as f64) as u64)
    }

    #[test]
    fn position_moves_with_rate_and_direction_and_stops_when_paused() {
        let mut p = playing(10 * S);
        assert_eq!(p.position_at(at(2.0)), 12 * S);
        assert_eq!(
            p.position_at(at(-1.0)),
            10 * S,
            "before the anchor it holds"
        );
        p.rate = Rate::new(2.0);
        assert_eq!(p.position_at(at(2.0)), 14 * S);
        p.direction = Direction::Backward;
        assert_eq!(p.position_at(at(2.0)), 6 * S);
        assert_eq!(p.position_at(at(60.0)), 0, "stops at the in point");
        p.running = false;
        assert_eq!(p.position_at(at(2.0)), 10 * S);
    }

    #[test]
    fn out_point_stops_or_loops() {
        let mut p = playing(8 * S);
        p.in_us = 5 * S;
        p.out_us = Some(10 * S);
        assert_eq!(p.position_at(at(5.0)), 10 * S);
        assert!(p.ended_at(at(5.0)));
        assert_eq!(p.remaining_at(at(1.0)), Some(Duration::from_secs(1)));
        p.loop_mode = LoopMode::Loop;
        assert_eq!(p.position_at(at(3.0)), 6 * S); // 8 → 10, wraps to 5, +1
        assert!(!p.ended_at(at(3.0)));
        assert_eq!(
            p.distance(5 * S + 1, 10 * S - 1),
            2,
            "close across the loop point"
        );
        p.direction = Direction::Backward;
        assert_eq!(p.position_at(at(4.0)), 9 * S); // 8 → 5, wraps to 10, −1
    }

    #[test]
    fn ops_keep_the_motion_so_far_and_bump_the_revision() {
        let mut p = playing(0);
        p.apply(at(3.0), &PlaybackOp::Pause);
        assert_eq!((p.position_us, p.running, p.revision), (3 * S, false, 1));
        assert_eq!(p.position_at(at(10.0)), 3 * S);
        p.apply(at(10.0), &PlaybackOp::Play);
        p.apply(
            at(11.0),
            &PlaybackOp::SetRate {
                rate: Rate::new(0.5),
            },
        );
        assert_eq!(p.position_at(at(13.0)), 5 * S); // 3 + 1 at 1×, then 2 s at 0.5×
        p.apply(at(13.0), &PlaybackOp::Seek { position_us: S });
        assert_eq!(p.position_at(at(13.0)), S);
        assert_eq!(p.revision, 4);
    }

    #[test]
    fn play_at_the_end_starts_again_and_seek_is_clamped_to_the_range() {
        let mut p = playing(0);
        p.apply(
            at(0.0),
            &PlaybackOp::SetRange {
                in_us: S,
                out_us: Some(2 * S),
            },
        );
        assert_eq!(p.position_us, S, "position moved into the range");
        p.apply(
            at(0.0),
            &PlaybackOp::Seek {
                position_us: 99 * S,
            },
        );
        assert_eq!(p.position_us, 2 * S);
        p.apply(at(1.0), &PlaybackOp::Play);
        assert_eq!(p.position_at(at(1.5)), 1_500_000);
    }

    #[test]
    fn a_timer_counts_down_its_duration() {
        let mut p = Playback::default();
        p.apply(
            at(0.0),
            &PlaybackOp::Timer {
                duration_us: 60 * S,
                phase: "pose 1".into(),
            },
        );
        assert_eq!(p.media_id, TIMER_MEDIA_ID);
        assert_eq!(p.remaining_at(at(45.0)), Some(Duration::from_secs(15)));
        assert!(p.ended_at(at(61.0)));
        assert_eq!(p.phase, "pose 1");
    }

    #[test]
    fn rebased_state_predicts_the_same_positions_on_the_other_clock() {
        let master = playing(0);
        // The local clock is 50 ms behind the master's: local + 50 ms = master.
        let offset = 50_000;
        let local = master.rebased(Time(120 * S), offset);
        // Also when the local clock is ahead and the state is not yet under way there.
        let early = master.rebased(Time(100 * S), -20_000);
        assert_eq!(early.position_at(Time(100 * S)), 0);
        assert_eq!(
            early.position_at(Time(101 * S)),
            master.position_at(Time(101 * S - 20_000))
        );
        for t in [120 * S, 121 * S, 130 * S] {
            assert_eq!(
                local.position_at(Time(t)),
                master.position_at(shift(Time(t), offset))
            );
        }
    }

    #[test]
    fn absurd_values_never_panic() {
        let mut p = playing(u64::MAX);
        p.anchor_us = 0;
        p.rate = Rate::new(f64::INFINITY);
        p.out_us = Some(3);
        p.in_us = 3;
        p.loop_mode = LoopMode::Loop;
        let _ = p.position_at(Time(u64::MAX));
        let _ = p.remaining_at(Time(u64::MAX));
        p.clamp();
        assert_eq!(p.rate.get(), crate::protocol::MAX_RATE);
        assert_eq!(p.position_us, 3);
    }
}
