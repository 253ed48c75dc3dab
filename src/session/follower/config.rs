//! The follower's settings.

use crate::protocol::FollowMode;
use crate::session::keys::DEFAULT_SYNC_GROUPS;
use crate::session::{BackoffConfig, HeartbeatConfig};
use std::collections::BTreeSet;
use std::time::Duration;

/// Follower settings.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// This device's stable id.
    pub device_id: String,
    /// This device's human name.
    pub device_name: String,
    /// Mode at start.
    pub follow_mode: FollowMode,
    /// Heartbeat timing.
    pub heartbeat: HeartbeatConfig,
    /// Reconnection schedule.
    pub backoff: BackoffConfig,
    /// A JOIN_REQUEST unanswered for this long is sent again.
    pub join_retry: Duration,
    /// Groups of synced state applied at first start (a stored record's choice wins).
    pub sync_groups: BTreeSet<String>,
    /// The local playback model is corrected when the master's predicted position differs from
    /// it by more than this (a discrete change always goes through).
    pub playback_tolerance: Duration,
    /// Clock probes sent right after joining, so the offset is known within a second.
    pub clock_burst: u32,
    /// Spacing of those probes.
    pub clock_burst_interval: Duration,
}

pub(super) fn default_sync_groups() -> BTreeSet<String> {
    DEFAULT_SYNC_GROUPS.iter().map(|g| g.to_string()).collect()
}

impl FollowerConfig {
    /// Defaults for a device id.
    pub fn new(device_id: impl Into<String>) -> FollowerConfig {
        FollowerConfig {
            device_id: device_id.into(),
            device_name: "Follower".into(),
            follow_mode: FollowMode::Follow,
            heartbeat: HeartbeatConfig::default(),
            backoff: BackoffConfig::default(),
            join_retry: Duration::from_secs(2),
            sync_groups: default_sync_groups(),
            playback_tolerance: Duration::from_millis(15),
            clock_burst: 16,
            clock_burst_interval: Duration::from_millis(50),
        }
    }
}
