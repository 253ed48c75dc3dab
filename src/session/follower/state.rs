//! The follower's states (PROTOCOL.md §6.3).

use crate::session::{RoleState, StateName};
use serde::{Deserialize, Serialize};

/// Follower states (PROTOCOL.md §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FollowerState {
    /// No session.
    #[serde(rename = "FOLLOWER_IDLE_LOCAL")]
    IdleLocal,
    /// First join under way.
    #[serde(rename = "FOLLOWER_JOINING")]
    Joining,
    /// Joined, applying the master's pages.
    #[serde(rename = "FOLLOWER_CONNECTED_FOLLOW")]
    ConnectedFollow,
    /// Joined, navigating freely.
    #[serde(rename = "FOLLOWER_CONNECTED_FREE")]
    ConnectedFree,
    /// Link lost; navigating locally, waiting to retry.
    #[serde(rename = "FOLLOWER_DISCONNECTED_LOCAL")]
    DisconnectedLocal,
    /// Automatic rejoin under way.
    #[serde(rename = "FOLLOWER_REJOINING")]
    Rejoining,
}

impl StateName for FollowerState {
    fn name(self) -> &'static str {
        match self {
            FollowerState::IdleLocal => "FOLLOWER_IDLE_LOCAL",
            FollowerState::Joining => "FOLLOWER_JOINING",
            FollowerState::ConnectedFollow => "FOLLOWER_CONNECTED_FOLLOW",
            FollowerState::ConnectedFree => "FOLLOWER_CONNECTED_FREE",
            FollowerState::DisconnectedLocal => "FOLLOWER_DISCONNECTED_LOCAL",
            FollowerState::Rejoining => "FOLLOWER_REJOINING",
        }
    }

    fn role_state(self) -> RoleState {
        RoleState::Follower(self)
    }
}

impl FollowerState {
    pub(super) fn connected(self) -> bool {
        matches!(
            self,
            FollowerState::ConnectedFollow | FollowerState::ConnectedFree
        )
    }

    pub(super) fn dialing(self) -> bool {
        matches!(self, FollowerState::Joining | FollowerState::Rejoining)
    }
}
