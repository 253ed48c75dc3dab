//! One link's health: heartbeat, duplicate/stale filtering, rate limiting and round-trip time.
//!
//! Generic link states (PROTOCOL.md §6.4): `IDLE → CONNECTING → CONNECTED → DEGRADED →
//! RECONNECTING → CONNECTED`, and `→ ENDED`. This module owns CONNECTED ⇄ DEGRADED (silence on an
//! open link) and "dead" (silence long enough to give the link up); the roles own the rest,
//! because what happens after a loss (redial, wait, forget) depends on the role.
//!
//! [`LinkHealth`] is one link's health (the master keeps one per member); `link/one.rs` holds
//! [`OneLink`], the one link of a follower or solo device, and [`OneLinkRole`], the machine
//! skeleton both are driven by.

use crate::protocol::{Envelope, Message, Ping, Pong};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::time::Duration;

mod one;

pub(crate) use one::{Beat, OneLink, OneLinkRole};

/// Generic link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// No link.
    Idle,
    /// Signaling or handshake under way.
    Connecting,
    /// Open and healthy.
    Connected,
    /// Open, but the peer has been silent for a while.
    Degraded,
    /// Lost; retrying in the background.
    Reconnecting,
    /// Closed for good (session over, user left).
    Ended,
}

/// Heartbeat timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatConfig {
    /// A PING is sent when nothing was sent for this long.
    pub ping_interval: Duration,
    /// Silence after which an open link is DEGRADED.
    pub degraded_after: Duration,
    /// Silence after which the link is given up (closed and redialled).
    pub dead_after: Duration,
    /// Sustained messages per second accepted from one peer; excess is dropped.
    pub rate_per_sec: u32,
    /// Burst allowance on top of the rate.
    pub burst: u32,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            ping_interval: Duration::from_secs(1),
            degraded_after: Duration::from_millis(3500),
            dead_after: Duration::from_secs(10),
            rate_per_sec: 100,
            burst: 200,
        }
    }
}

/// What a heartbeat tick asks the role to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Nothing due.
    Idle,
    /// Send this PING.
    Ping(Ping),
    /// The link just became DEGRADED.
    Degraded,
    /// The link is dead: close it and treat it as down.
    Dead,
}

/// Whether a received envelope should be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// New: apply it.
    Fresh,
    /// A duplicate or an older message than one already seen on this link: drop it.
    Stale,
    /// Over the rate limit: drop it.
    RateLimited,
}

/// Health of one open link: its heartbeat, the duplicate and rate filter on what it receives,
/// and its round-trip time. (Not the WebRTC link itself: that is `transport::Link`.)
#[derive(Debug, Clone)]
pub(crate) struct LinkHealth {
    pub state: LinkState,
    cfg: HeartbeatConfig,
    last_rx: Time,
    next_ping: Time,
    last_seq: Option<u64>,
    ping_id: u64,
    bucket: Bucket,
    /// Smoothed round-trip time from PING/PONG.
    pub rtt: Option<Duration>,
    /// Messages dropped by the rate limit.
    pub dropped: u64,
}

const MICRO: u64 = 1_000_000;

/// A token bucket: `rate` per second sustained, `burst` at once.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    rate: u64,
    cap: u64,
    /// Level in millionths of a token, so refill is exact integer maths.
    tokens: u64,
    last_refill: Time,
}

impl Bucket {
    /// A full bucket.
    pub fn new(now: Time, rate_per_sec: u32, burst: u32) -> Bucket {
        let cap = u64::from(burst) * MICRO;
        Bucket {
            rate: u64::from(rate_per_sec),
            cap,
            tokens: cap,
            last_refill: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Time) -> bool {
        let elapsed = now.since(self.last_refill).as_micros() as u64;
        self.last_refill = self.last_refill.max(now);
        let add = elapsed.saturating_mul(self.rate);
        self.tokens = self.tokens.saturating_add(add).min(self.cap);
        if self.tokens < MICRO {
            return false;
        }
        self.tokens -= MICRO;
        true
    }
}

impl LinkHealth {
    /// A link that just opened.
    pub fn open(now: Time, cfg: HeartbeatConfig) -> LinkHealth {
        LinkHealth {
            state: LinkState::Connected,
            cfg,
            last_rx: now,
            next_ping: now + cfg.ping_interval,
            last_seq: None,
            ping_id: 0,
            bucket: Bucket::new(now, cfg.rate_per_sec, cfg.burst),
            rtt: None,
            dropped: 0,
        }
    }

    /// Decides whether a received envelope is applied. PING and PONG carry their own ids and
    /// never make a later message stale (a burst of clock probes must not push a state message
    /// that one overtook out of the window); everything else goes by `seq`.
    pub fn admit_envelope(&mut self, now: Time, env: &Envelope) -> (Admit, bool) {
        match env.msg {
            Message::Ping(_) | Message::Pong(_) => self.admit_seq(now, None),
            _ => self.admit_seq(now, Some(env.seq)),
        }
    }

    /// Decides whether an envelope with `seq` is applied; any arrival counts as a sign of life.
    /// Returns whether the link came back from DEGRADED too.
    #[cfg(test)]
    pub fn admit(&mut self, now: Time, seq: u64) -> (Admit, bool) {
        self.admit_seq(now, Some(seq))
    }

    fn admit_seq(&mut self, now: Time, seq: Option<u64>) -> (Admit, bool) {
        if !self.bucket.take(now) {
            self.dropped += 1;
            return (Admit::RateLimited, false);
        }
        self.last_rx = now;
        let recovered = self.state == LinkState::Degraded;
        if recovered {
            self.state = LinkState::Connected;
        }
        let Some(seq) = seq else {
            return (Admit::Fresh, recovered);
        };
        if self.last_seq.is_some_and(|last| seq <= last) {
            return (Admit::Stale, recovered);
        }
        self.last_seq = Some(seq);
        (Admit::Fresh, recovered)
    }

    /// Notes that something was sent, postponing the next PING.
    pub fn sent(&mut self, now: Time) {
        self.next_ping = now + self.cfg.ping_interval;
    }

    /// Runs the heartbeat at `now`.
    pub fn tick(&mut self, now: Time) -> Tick {
        let silent = now.since(self.last_rx);
        if silent >= self.cfg.dead_after {
            return Tick::Dead;
        }
        if silent >= self.cfg.degraded_after && self.state == LinkState::Connected {
            self.state = LinkState::Degraded;
            return Tick::Degraded;
        }
        if now >= self.next_ping {
            self.next_ping = now + self.cfg.ping_interval;
            return Tick::Ping(self.probe(now));
        }
        Tick::Idle
    }

    /// A PING to send now outside the heartbeat (a clock probe).
    pub fn probe(&mut self, now: Time) -> Ping {
        self.ping_id += 1;
        Ping {
            id: self.ping_id,
            t0: now.as_micros(),
        }
    }

    /// When `tick` next has something to do.
    pub fn deadline(&self) -> Time {
        let silence_deadline = if self.state == LinkState::Connected {
            self.last_rx + self.cfg.degraded_after
        } else {
            self.last_rx + self.cfg.dead_after
        };
        self.next_ping.min(silence_deadline)
    }

    /// The answer to a peer's PING.
    pub fn pong(now: Time, ping: &Ping) -> Pong {
        Pong {
            id: ping.id,
            t0: ping.t0,
            t1: now.as_micros(),
            t2: now.as_micros(),
        }
    }

    /// Folds a PONG into the round-trip estimate (RFC 6298 style smoothing, 1/8 gain).
    pub fn on_pong(&mut self, now: Time, pong: &Pong) {
        if pong.t0 > now.as_micros() {
            return; // not one of ours, or a clock that went backwards: ignore
        }
        let total = now.as_micros() - pong.t0;
        let sample = Duration::from_micros(total.saturating_sub(pong.t2 - pong.t1));
        self.rtt = Some(match self.rtt {
            None => sample,
            Some(rtt) => (rtt * 7 + sample) / 8,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time::from_millis(n)
    }

    #[test]
    fn silence_degrades_then_kills_and_traffic_heals() {
        let cfg = HeartbeatConfig::default();
        let mut link = LinkHealth::open(ms(0), cfg);
        assert!(matches!(link.tick(ms(1000)), Tick::Ping(_)));
        assert_eq!(link.tick(ms(3500)), Tick::Degraded);
        assert_eq!(link.state, LinkState::Degraded);
        let (admit, recovered) = link.admit(ms(3600), 1);
        assert_eq!(admit, Admit::Fresh);
        assert!(recovered);
        assert_eq!(link.state, LinkState::Connected);
        assert_eq!(link.tick(ms(13_600)), Tick::Dead);
    }

    #[test]
    fn duplicates_and_older_messages_are_stale() {
        let mut link = LinkHealth::open(ms(0), HeartbeatConfig::default());
        assert_eq!(link.admit(ms(1), 5).0, Admit::Fresh);
        assert_eq!(link.admit(ms(2), 5).0, Admit::Stale);
        assert_eq!(link.admit(ms(3), 4).0, Admit::Stale);
        assert_eq!(link.admit(ms(4), 9).0, Admit::Fresh);
    }

    #[test]
    fn flood_is_rate_limited_and_the_bucket_refills() {
        let cfg = HeartbeatConfig::default();
        let mut link = LinkHealth::open(ms(0), cfg);
        let mut fresh = 0;
        for seq in 1..=1000 {
            if link.admit(ms(0), seq).0 == Admit::Fresh {
                fresh += 1;
            }
        }
        assert_eq!(fresh, cfg.burst);
        assert_eq!(link.dropped, 800);
        // one second later the bucket holds rate_per_sec tokens again
        assert_eq!(link.admit(ms(1000), 2000).0, Admit::Fresh);
    }

    #[test]
    fn rtt_excludes_the_peer_processing_time() {
        let mut link = LinkHealth::open(ms(0), HeartbeatConfig::default());
        let pong = Pong {
            id: 1,
            t0: 1_000,
            t1: 50_000,
            t2: 50_300,
        };
        link.on_pong(Time(1_000 + 2_300), &pong);
        assert_eq!(link.rtt, Some(Duration::from_micros(2_000)));
    }
}
