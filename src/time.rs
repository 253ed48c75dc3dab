//! The clock every pure module shares: [`Time`], microseconds since the Unix epoch, fed in by
//! the driver (PROTOCOL.md §2: the envelope's `ts` is its milliseconds).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A point on the node's clock: microseconds since the Unix epoch.
///
/// Real drivers read the wall clock once at start and add a monotonic clock to it, so this never
/// goes backwards; tests use a virtual clock.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    /// From milliseconds since the Unix epoch.
    pub fn from_millis(ms: u64) -> Time {
        Time(ms.saturating_mul(1000))
    }
    /// Milliseconds since the Unix epoch (the envelope's `ts`).
    pub fn as_millis(self) -> u64 {
        self.0 / 1000
    }
    /// Microseconds since the Unix epoch.
    pub fn as_micros(self) -> u64 {
        self.0
    }
    /// Time elapsed since `earlier` (zero if `earlier` is later).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(d.as_micros().min(u64::MAX as u128) as u64),
        )
    }
}
