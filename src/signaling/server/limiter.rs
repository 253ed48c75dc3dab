//! The join endpoint's rate limits (PROTOCOL.md §9.3, check 1): a token bucket per source
//! address, one for the join requests and one for the follower page's GETs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use super::checks::Refusal;

/// Requests per second each source address may make, sustained (default of [`RateLimit`]).
pub const RATE_PER_SEC: f64 = 5.0;
/// Requests each source address may make in a burst (default of [`RateLimit`]).
pub const RATE_BURST: f64 = 10.0;

/// The per-source-address token bucket of the join endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (sustained requests per second).
    pub per_sec: f64,
    /// Bucket size (requests in a burst).
    pub burst: f64,
}

impl Default for RateLimit {
    /// 5 requests per second, bursts of 10: plenty for a person's device, which joins once
    /// (two requests).
    fn default() -> Self {
        RateLimit {
            per_sec: RATE_PER_SEC,
            burst: RATE_BURST,
        }
    }
}

/// Distinct source addresses tracked by the rate limiter; beyond this, idle ones are forgotten.
const MAX_TRACKED_SOURCES: usize = 4096;

/// A token bucket per source address.
#[derive(Debug)]
pub(super) struct RateLimiter {
    rate: RateLimit,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub(super) fn new(rate: RateLimit) -> Self {
        RateLimiter {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `ip` if it has one.
    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.rate;
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_TRACKED_SOURCES {
            // Forget sources whose bucket has refilled: they are idle.
            self.buckets
                .retain(|_, b| refill(*b, now, rate).tokens < rate.burst);
            if self.buckets.len() >= MAX_TRACKED_SOURCES {
                return false;
            }
        }
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        *bucket = refill(*bucket, now, rate);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refill(b: Bucket, now: Instant, rate: RateLimit) -> Bucket {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    Bucket {
        tokens: (b.tokens + elapsed * rate.per_sec).min(rate.burst),
        at: now,
    }
}

/// Takes a token from `limiter` for the source of `peer`, or refuses `rate_limited`.
pub(super) fn bucket_check(limiter: &Mutex<RateLimiter>, peer: SocketAddr) -> Result<(), Refusal> {
    let allowed = limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(peer.ip(), Instant::now());
    if allowed {
        Ok(())
    } else {
        Err(Refusal::RateLimited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut limiter = RateLimiter::new(RateLimit::default());
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let t0 = Instant::now();
        let allowed = (0..20).filter(|_| limiter.allow(ip, t0)).count();
        assert_eq!(allowed, RATE_BURST as usize);
        assert!(!limiter.allow(ip, t0 + Duration::from_millis(100)));
        assert!(limiter.allow(ip, t0 + Duration::from_millis(250)));
        // Another source is not affected.
        assert!(limiter.allow("10.0.0.10".parse().unwrap(), t0));
    }
}
