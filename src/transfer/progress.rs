//! Progress of a transfer round: bytes and files, with rate and ETA computed from `Time` inputs.

use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A snapshot of progress; both machines return one from `progress(now)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Payload bytes sent (sender) or written (receiver) in this round.
    pub bytes_done: u64,
    /// Payload bytes this round must move (only the missing ranges).
    pub bytes_total: u64,
    /// Files completed in this round.
    pub files_done: u32,
    /// Files this round moves.
    pub files_total: u32,
    /// Average bytes per second since the round started; `None` before any time has passed.
    pub rate: Option<u64>,
    /// Estimated time left at that rate; `None` when the rate is unknown or zero.
    pub eta: Option<Duration>,
}

/// Counters kept by a machine, turned into [`Progress`] on demand.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Meter {
    pub started: Option<Time>,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub files_done: u32,
    pub files_total: u32,
}

impl Meter {
    pub(crate) fn start(now: Time, bytes_total: u64, files_total: u32) -> Meter {
        Meter {
            started: Some(now),
            bytes_total,
            files_total,
            ..Meter::default()
        }
    }

    pub(crate) fn progress(&self, now: Time) -> Progress {
        let elapsed = self.started.map_or(Duration::ZERO, |s| now.since(s));
        let micros = elapsed.as_micros();
        let rate = (micros > 0).then(|| {
            (u128::from(self.bytes_done) * 1_000_000 / micros).min(u64::MAX as u128) as u64
        });
        let left = self.bytes_total.saturating_sub(self.bytes_done);
        let eta = match rate {
            Some(r) if r > 0 => Some(Duration::from_micros(
                (u128::from(left) * 1_000_000 / u128::from(r)).min(u64::MAX as u128) as u64,
            )),
            _ => None,
        };
        Progress {
            bytes_done: self.bytes_done,
            bytes_total: self.bytes_total,
            files_done: self.files_done,
            files_total: self.files_total,
            rate,
            eta,
        }
    }
}
