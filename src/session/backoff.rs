//! Reconnection backoff: exponential, capped, jittered, with an attempt limit.
//!
//! Jitter keeps thirty followers that lost the master at the same instant from redialling it in
//! lockstep. Randomness is an input: the machine owns a seeded [`Rng`].

use std::time::Duration;

/// Backoff settings (defaults: 1 s doubling to 30 s, ±20 % jitter, give up after 10 attempts).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Longest delay.
    pub max: Duration,
    /// Growth per attempt.
    pub factor: u32,
    /// Relative jitter, 0.0 to 1.0: each delay is scaled by a random factor in `1 ± jitter`.
    pub jitter: f64,
    /// Attempts before giving up; `None` retries forever.
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            factor: 2,
            jitter: 0.2,
            max_attempts: Some(10),
        }
    }
}

/// A small deterministic generator (SplitMix64). Not for secrets: only jitter and ids in tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Attempt counter and delay schedule.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: BackoffConfig,
    attempts: u32,
}

impl Backoff {
    /// A fresh schedule.
    pub fn new(cfg: BackoffConfig) -> Backoff {
        Backoff { cfg, attempts: 0 }
    }

    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Forgets past attempts (after a success, or a manual retry).
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// Delay before the next attempt, counting it; `None` once the limit is reached.
    pub fn next_delay(&mut self, rng: &mut Rng) -> Option<Duration> {
        if self
            .cfg
            .max_attempts
            .is_some_and(|max| self.attempts >= max)
        {
            return None;
        }
        let growth = u64::from(self.cfg.factor.max(1)).saturating_pow(self.attempts.min(32));
        let base = self
            .cfg
            .initial
            .as_micros()
            .saturating_mul(u128::from(growth))
            .min(self.cfg.max.as_micros()) as f64;
        let jitter = self.cfg.jitter.clamp(0.0, 1.0);
        let scale = 1.0 - jitter + 2.0 * jitter * rng.next_f64();
        self.attempts += 1;
        let micros = (base * scale).min(self.cfg.max.as_micros() as f64);
        Some(Duration::from_micros(micros as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap_then_gives_up() {
        let mut rng = Rng::new(7);
        let mut b = Backoff::new(BackoffConfig::default());
        let delays: Vec<Duration> = std::iter::from_fn(|| b.next_delay(&mut rng)).collect();
        assert_eq!(delays.len(), 10);
        for (i, d) in delays.iter().enumerate() {
            let nominal = (1u64 << i).min(30) as f64;
            let s = d.as_secs_f64();
            assert!(
                s >= nominal * 0.8 - 1e-9 && s <= (nominal * 1.2).min(30.0) + 1e-9,
                "{i}: {s}"
            );
        }
        assert!(delays[9] <= Duration::from_secs(30));
        b.reset();
        assert!(b.next_delay(&mut rng).unwrap() <= Duration::from_millis(1200));
    }

    #[test]
    fn jitter_spreads_simultaneous_followers() {
        let firsts: std::collections::BTreeSet<u128> = (0..30)
            .map(|seed| {
                let mut b = Backoff::new(BackoffConfig::default());
                b.next_delay(&mut Rng::new(seed)).unwrap().as_millis()
            })
            .collect();
        assert!(firsts.len() > 20, "followers retry in lockstep: {firsts:?}");
    }

    #[test]
    fn unlimited_attempts_never_give_up() {
        let cfg = BackoffConfig {
            max_attempts: None,
            ..Default::default()
        };
        let mut b = Backoff::new(cfg);
        let mut rng = Rng::new(1);
        assert!((0..1000).all(|_| b.next_delay(&mut rng).is_some()));
    }
}
