//! The master's admission decision at the door (the LAN join endpoint, PROTOCOL.md §9), made by
//! the session core so the rules live in one place.
//!
//! The join endpoint never keeps its own copy of who may join. For each request it asks the
//! master's machine ([`Machine::door`](super::Machine::door)) two things: which secret the
//! request must prove (the session token, the session code and password, or the member secret of
//! the device id it claims), and whether the session would admit that device once proven (ended,
//! full, device id held by another member). The endpoint checks the proof with that secret and
//! only then reveals the verdict, so a device without the secret learns nothing about the session.

use crate::protocol::RejectReason;

/// How a join request authenticates (the request's `auth`, PROTOCOL.md §9.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorAuth {
    /// The session token (QR join link).
    Token,
    /// The session code and password (typed by a person).
    Code,
    /// The member secret the master gave this device when it first joined (rejoin).
    Member,
}

/// One join request as the door sees it before checking its proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorQuery {
    /// How the request authenticates.
    pub auth: DoorAuth,
    /// The session code the request names (code joins; normalised or not).
    pub session_code: Option<String>,
    /// The device id the request claims.
    pub device_id: String,
}

/// The secret a join request must prove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DoorSecret {
    /// The session token (32 hex digits).
    Token(String),
    /// The normalised session code and the password (`""` when the session has none).
    Code {
        /// The session code, `XXXX-XXXX`.
        code: String,
        /// The password, `""` when none is set (an open session).
        password: String,
    },
    /// The member secret of the claimed device id (32 hex digits).
    Member(String),
}

/// The master's answer to a [`DoorQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorReply {
    /// What the request must prove; `None` when there is nothing it could prove (a code that is
    /// not this session's, a member secret for an unknown device): refuse as for a wrong proof.
    pub secret: Option<DoorSecret>,
    /// Whether the device is admitted once its proof holds (revealed only then).
    pub verdict: Result<(), RejectReason>,
}

impl DoorReply {
    /// A door that admits nobody (roles that are not a master).
    pub fn closed() -> DoorReply {
        DoorReply {
            secret: None,
            verdict: Err(RejectReason::Unknown),
        }
    }
}
