//! A solo device's settings.

use crate::session::{BackoffConfig, HeartbeatConfig};
use std::net::SocketAddr;
use std::time::Duration;

/// Solo settings.
#[derive(Debug, Clone)]
pub struct SoloConfig {
    /// This device's stable id.
    pub device_id: String,
    /// This device's human name.
    pub device_name: String,
    /// Pair identifier used as the envelope's `session_id` (both devices use the same).
    pub pair_id: String,
    /// Whether this device redials after a loss (the offering side). The other one waits to be
    /// dialled, so the pair never races two links against each other.
    pub initiator: bool,
    /// Heartbeat timing.
    pub heartbeat: HeartbeatConfig,
    /// Reconnection schedule.
    pub backoff: BackoffConfig,
    /// Period of the STATE_SNAPSHOT each device sends, which repairs a change lost in transit.
    pub snapshot_interval: Duration,
    /// A new pairing to remember: this device's half of the pair secret (32 hex digits from a
    /// secure random source), sent in PAIR_BOND on the first link. `None`: the pair is not
    /// remembered (no state directory), or it already is (see
    /// [`Solo::restore`](super::Solo::restore)).
    pub bond_half: Option<String>,
    /// Where this device's redial endpoint listens (the waiting side of a remembered pair), sent
    /// in PAIR_BOND so the partner tries them first next time.
    pub own_endpoints: Vec<SocketAddr>,
    /// The partner's DTLS fingerprint (`sha-256 AB:…`) as the pairing codes named it: kept in
    /// the record so a redial is only accepted from, and only made to, that device.
    pub partner_fingerprint: Option<String>,
}

impl SoloConfig {
    /// Defaults for a device id.
    pub fn new(device_id: impl Into<String>) -> SoloConfig {
        SoloConfig {
            device_id: device_id.into(),
            device_name: "Tablet".into(),
            pair_id: String::new(),
            initiator: false,
            heartbeat: HeartbeatConfig::default(),
            backoff: BackoffConfig::default(),
            snapshot_interval: Duration::from_secs(5),
            bond_half: None,
            own_endpoints: Vec::new(),
            partner_fingerprint: None,
        }
    }
}
