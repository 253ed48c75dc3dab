//! The bodies of the join endpoint's two round trips (PROTOCOL.md §9.1, §9.3, §9.4), as JSON on
//! the wire: what a follower posts, what the master answers or refuses with, the paths, the
//! version and the size limits. Pure (serde only), so the follower page's WebAssembly can build
//! and read the same bodies as the native client.

use serde::{Deserialize, Serialize};

use crate::protocol::RejectReason;
use crate::session::DoorAuth;

/// The path of the first round trip: nonce (and PAKE) exchange.
pub const START_PATH: &str = "/v1/join/start";
/// The path of the second round trip: offer, proof, answer.
pub const JOIN_PATH: &str = "/v1/join";
/// Version of the join requests (`"v"`); anything else is answered `version_mismatch`.
pub const JOIN_VERSION: u64 = 2;
/// Largest request body, in bytes; larger ones are answered `too_large` without being read.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest offer SDP, in bytes.
pub const MAX_OFFER: usize = 16 * 1024;
/// Largest answer SDP the client accepts (an answer is about the size of an offer).
pub const MAX_ANSWER: usize = 16 * 1024;
/// Largest session code field, in bytes (PROTOCOL.md §3).
pub const MAX_CODE_FIELD: usize = 32;

/// Which secret a join proves (the start request's `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinAuth {
    /// The session token (QR join link).
    Token,
    /// The session code and password, through SPAKE2.
    Code,
    /// The member secret the master gave this device at its first join.
    Member,
}

impl JoinAuth {
    /// The session's name for this kind of secret, as the master's door is asked about it.
    pub fn door(self) -> DoorAuth {
        match self {
            JoinAuth::Token => DoorAuth::Token,
            JoinAuth::Code => DoorAuth::Code,
            JoinAuth::Member => DoorAuth::Member,
        }
    }
}

/// The first request on the wire, `POST /v1/join/start`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StartRequest {
    /// [`JOIN_VERSION`].
    pub v: u64,
    /// Which secret the join proves.
    pub auth: JoinAuth,
    /// The session code of a code join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_code: Option<String>,
    /// The device id the join is for.
    pub device_id: String,
    /// The follower's SPAKE2 message of a code join, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pake: Option<String>,
}

/// The answer to the first request.
#[derive(Debug, Serialize, Deserialize)]
pub struct StartReply {
    /// The nonce the join request proves over, 64 hex digits.
    pub nonce: String,
    /// The master's SPAKE2 message of a code join, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pake: Option<String>,
}

/// The second request on the wire, `POST /v1/join`.
#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    /// [`JOIN_VERSION`].
    pub v: u64,
    /// The start reply's nonce.
    pub nonce: String,
    /// The device id the start named.
    pub device_id: String,
    /// The follower's display name.
    #[serde(default)]
    pub device_name: String,
    /// The follower's SDP offer.
    pub offer: String,
    /// The HMAC under the join key over nonce, device id and offer (PROTOCOL.md §9.2), hex.
    pub proof: String,
}

/// A successful answer on the wire (PROTOCOL.md §9.4).
#[derive(Debug, Serialize, Deserialize)]
pub struct JoinAnswer {
    /// The master's answer SDP.
    pub answer: String,
    /// The MAC under the join key over nonce and answer (PROTOCOL.md §9.2), hex.
    pub mac: String,
}

/// A refusal on the wire (PROTOCOL.md §9.3).
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The reason: a JOIN_REJECT reason's name, or `rate_limited`, `busy`, `stale_nonce`,
    /// `too_large`, `bad_request`.
    pub error: String,
    /// What was wrong with a `bad_request`, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The snake_case wire name of a reason (as in JOIN_REJECT); `join_rejected` for a reason
/// without a name.
pub fn reject_name(r: RejectReason) -> String {
    match serde_json::to_value(r) {
        Ok(serde_json::Value::String(name)) if r != RejectReason::Unknown => name,
        _ => "join_rejected".into(),
    }
}

/// The reason an `error` names; an unknown name reads as a generic rejection.
pub fn reject_reason(error: &str) -> RejectReason {
    serde_json::from_value(serde_json::Value::String(error.to_string()))
        .unwrap_or(RejectReason::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_their_wire_names() {
        assert_eq!(
            reject_name(RejectReason::InvalidPassword),
            "invalid_password"
        );
        assert_eq!(
            reject_name(RejectReason::SessionNotFound),
            "session_not_found"
        );
        assert_eq!(reject_name(RejectReason::Unknown), "join_rejected");
        assert_eq!(
            reject_reason("session_not_found"),
            RejectReason::SessionNotFound
        );
        assert_eq!(reject_reason("join_rejected"), RejectReason::Unknown);
    }
}
