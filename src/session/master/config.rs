//! The master's settings.

use crate::session::HeartbeatConfig;
use std::time::Duration;

/// Master settings.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// This device's stable id.
    pub device_id: String,
    /// This device's human name.
    pub device_name: String,
    /// Session name shown to followers.
    pub session_name: String,
    /// Optional password required with a session code (not with a token).
    pub password: Option<String>,
    /// Most followers at once (at most 255).
    pub max_followers: usize,
    /// Heartbeat timing.
    pub heartbeat: HeartbeatConfig,
    /// Period of the STATE_SNAPSHOT broadcast.
    pub snapshot_interval: Duration,
    /// A link that has not sent a valid JOIN_REQUEST by then is closed.
    pub join_timeout: Duration,
    /// Presence changes are batched for this long, so a crowd joining costs few broadcasts.
    pub presence_delay: Duration,
    /// A disconnected participant is listed as left after this long (its member secret still
    /// works).
    pub participant_expiry: Duration,
    /// Sustained state updates (PLAYBACK_REQUEST, KEY_SET) per second accepted from one
    /// participant; excess is dropped.
    pub updates_per_sec: u32,
    /// Burst allowance of state updates on top of the rate.
    pub update_burst: u32,
}

impl MasterConfig {
    /// Defaults for a device id.
    pub fn new(device_id: impl Into<String>) -> MasterConfig {
        MasterConfig {
            device_id: device_id.into(),
            device_name: "Master".into(),
            session_name: "Rehearsal".into(),
            password: None,
            max_followers: 200,
            heartbeat: HeartbeatConfig::default(),
            snapshot_interval: Duration::from_secs(5),
            join_timeout: Duration::from_secs(10),
            presence_delay: Duration::from_millis(100),
            participant_expiry: Duration::from_secs(120),
            updates_per_sec: 20,
            update_burst: 40,
        }
    }
}
