//! The join endpoint's pending nonces (PROTOCOL.md §9.1): each start request gets a fresh nonce
//! that one join request may use, within [`NONCE_TTL`]. Bounded, so a flood of start requests
//! costs a fixed amount of memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::auth::{Key, NONCE_LEN};
use crate::session::DoorSecret;
use crate::signaling::wire::JoinAuth;

/// How long a nonce may wait for its join request.
pub const NONCE_TTL: Duration = Duration::from_secs(30);
/// Pending nonces kept at most; beyond this, start requests are answered `busy`.
pub const MAX_PENDING: usize = 1024;
/// Pending nonces one source address may hold, so one device cannot fill the table alone (more
/// when the endpoint's rate limit allows bigger bursts: a demo with many followers on loopback).
pub const MAX_PENDING_PER_SOURCE: usize = 16;

/// A nonce.
pub(super) type Nonce = [u8; NONCE_LEN];

/// What a start request established, kept until its join request (or expiry).
#[derive(Debug, Clone)]
pub(super) struct Pending {
    /// How the request authenticates.
    pub auth: JoinAuth,
    /// The device id the start request named; the join request must name the same.
    pub device_id: String,
    /// The secret the door named at the start (checked again at the join).
    pub secret: Option<DoorSecret>,
    /// The key the join's proof must use; `None` when nothing can be proven.
    pub key: Option<Key>,
    /// Who asked.
    pub source: IpAddr,
    /// When the nonce stops being usable.
    pub expires: Instant,
}

/// The table of pending nonces.
#[derive(Debug)]
pub(super) struct Nonces {
    pending: HashMap<Nonce, Pending>,
    per_source: usize,
}

impl Default for Nonces {
    fn default() -> Self {
        Nonces::new(MAX_PENDING_PER_SOURCE)
    }
}

impl Nonces {
    /// A table letting each source hold `per_source` nonces (at least
    /// [`MAX_PENDING_PER_SOURCE`], at most [`MAX_PENDING`]).
    pub fn new(per_source: usize) -> Nonces {
        Nonces {
            pending: HashMap::new(),
            per_source: per_source.clamp(MAX_PENDING_PER_SOURCE, MAX_PENDING),
        }
    }

    /// Keeps `pending` under `nonce`; `false` (and nothing kept) when the table, or the
    /// source's share of it, is full of nonces still alive at `now`.
    pub fn insert(&mut self, nonce: Nonce, pending: Pending, now: Instant) -> bool {
        let source = pending.source;
        let mut from_source = 0;
        if self.pending.len() >= MAX_PENDING / 2 {
            self.pending.retain(|_, p| p.expires > now);
        }
        for p in self.pending.values() {
            if p.source == source && p.expires > now {
                from_source += 1;
            }
        }
        if self.pending.len() >= MAX_PENDING || from_source >= self.per_source {
            return false;
        }
        self.pending.insert(nonce, pending);
        true
    }

    /// Takes the nonce out: it is used once, whatever the join request's fate. `None` when it
    /// was never issued, already used, or expired.
    pub fn take(&mut self, nonce: &Nonce, now: Instant) -> Option<Pending> {
        self.pending.remove(nonce).filter(|p| p.expires > now)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(source: &str, now: Instant) -> Pending {
        Pending {
            auth: JoinAuth::Token,
            device_id: "d1".into(),
            secret: None,
            key: None,
            source: source.parse().unwrap(),
            expires: now + NONCE_TTL,
        }
    }

    fn nonce(i: usize) -> Nonce {
        let mut n = [0; NONCE_LEN];
        n[..8].copy_from_slice(&(i as u64).to_le_bytes());
        n
    }

    #[test]
    fn a_nonce_is_used_once() {
        let t0 = Instant::now();
        let mut table = Nonces::default();
        assert!(table.insert(nonce(1), pending("10.0.0.1", t0), t0));
        assert!(table.take(&nonce(1), t0).is_some());
        assert!(table.take(&nonce(1), t0).is_none(), "replayed");
        assert!(table.take(&nonce(2), t0).is_none(), "never issued");
    }

    #[test]
    fn a_nonce_expires() {
        let t0 = Instant::now();
        let mut table = Nonces::default();
        assert!(table.insert(nonce(1), pending("10.0.0.1", t0), t0));
        assert!(table.take(&nonce(1), t0 + NONCE_TTL).is_none());
    }

    #[test]
    fn the_table_is_bounded_per_source_and_in_all() {
        let t0 = Instant::now();
        let mut table = Nonces::default();
        for i in 0..MAX_PENDING_PER_SOURCE {
            assert!(table.insert(nonce(i), pending("10.0.0.1", t0), t0));
        }
        assert!(!table.insert(nonce(99_999), pending("10.0.0.1", t0), t0));
        // Other sources fill the rest, then nobody gets more until nonces expire.
        let mut i = MAX_PENDING_PER_SOURCE;
        'fill: for a in 0..=255u8 {
            for _ in 0..MAX_PENDING_PER_SOURCE {
                if table.len() == MAX_PENDING {
                    break 'fill;
                }
                assert!(table.insert(nonce(i), pending(&format!("10.0.1.{a}"), t0), t0));
                i += 1;
            }
        }
        assert_eq!(table.len(), MAX_PENDING);
        assert!(!table.insert(nonce(i), pending("10.0.2.1", t0), t0));
        let later = t0 + NONCE_TTL;
        assert!(table.insert(nonce(i), pending("10.0.2.1", later), later));
        assert_eq!(table.len(), 1, "expired nonces were dropped");
    }

    #[test]
    fn a_wide_rate_limit_widens_the_share_of_a_source() {
        let t0 = Instant::now();
        let mut table = Nonces::new(100);
        for i in 0..100 {
            assert!(table.insert(nonce(i), pending("127.0.0.1", t0), t0));
        }
        assert!(!table.insert(nonce(100), pending("127.0.0.1", t0), t0));
        assert_eq!(Nonces::new(1_000_000).per_source, MAX_PENDING);
    }
}
