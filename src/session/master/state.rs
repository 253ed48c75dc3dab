//! The master's states (PROTOCOL.md §6.2).

use crate::session::{RoleState, StateName};
use serde::{Deserialize, Serialize};

/// Master states (PROTOCOL.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MasterState {
    /// No session.
    #[serde(rename = "MASTER_IDLE")]
    Idle,
    /// Session running, every participant connected.
    #[serde(rename = "MASTER_SESSION_ACTIVE")]
    SessionActive,
    /// Session running, one or more participants disconnected.
    #[serde(rename = "MASTER_RECONNECTING_LINKS")]
    ReconnectingLinks,
    /// Session over; its token is refused.
    #[serde(rename = "MASTER_SESSION_ENDED")]
    SessionEnded,
}

impl StateName for MasterState {
    fn name(self) -> &'static str {
        match self {
            MasterState::Idle => "MASTER_IDLE",
            MasterState::SessionActive => "MASTER_SESSION_ACTIVE",
            MasterState::ReconnectingLinks => "MASTER_RECONNECTING_LINKS",
            MasterState::SessionEnded => "MASTER_SESSION_ENDED",
        }
    }

    fn role_state(self) -> RoleState {
        RoleState::Master(self)
    }
}
