//! Solo states (PROTOCOL.md §6.1).

use crate::session::{RoleState, StateName};
use serde::{Deserialize, Serialize};

/// Solo states (PROTOCOL.md §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SoloState {
    /// No partner (never paired, or gave up reconnecting).
    #[serde(rename = "SOLO_LOCAL_ONLY")]
    LocalOnly,
    /// Paired and in step.
    #[serde(rename = "SOLO_PAIRED_CONNECTED")]
    PairedConnected,
    /// Paired, but the partner has gone quiet.
    #[serde(rename = "SOLO_PAIRED_DEGRADED")]
    PairedDegraded,
    /// Link lost; retrying in the background.
    #[serde(rename = "SOLO_PAIRED_RECONNECTING")]
    PairedReconnecting,
}

impl StateName for SoloState {
    fn name(self) -> &'static str {
        match self {
            SoloState::LocalOnly => "SOLO_LOCAL_ONLY",
            SoloState::PairedConnected => "SOLO_PAIRED_CONNECTED",
            SoloState::PairedDegraded => "SOLO_PAIRED_DEGRADED",
            SoloState::PairedReconnecting => "SOLO_PAIRED_RECONNECTING",
        }
    }

    fn role_state(self) -> RoleState {
        RoleState::Solo(self)
    }
}
