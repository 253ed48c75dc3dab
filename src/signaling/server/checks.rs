//! The checks every join request passes before anything else (PROTOCOL.md §9.3, checks 3–5):
//! the body is a JSON object of version 2 whose fields are within their limits; and the refusals,
//! each with its HTTP status and `{"error": …}` body.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::auth::{unhex, MAC_LEN, NONCE_LEN, PAKE_MSG_LEN};
use crate::protocol::{check_id, RejectReason, MAX_NAME_LEN};
use crate::signaling::wire::{
    reject_name, ErrorBody, JoinAuth, JoinRequest, StartRequest, JOIN_VERSION, MAX_CODE_FIELD,
    MAX_OFFER,
};

/// Why the server refuses a request.
#[derive(Debug)]
pub(super) enum Refusal {
    Reject(RejectReason),
    BadRequest(String),
    TooLarge,
    RateLimited,
    Busy,
    StaleNonce,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let retry = matches!(self, Refusal::RateLimited | Refusal::Busy);
        let (status, error, detail) = match self {
            Refusal::Reject(r) => (reject_status(r), reject_name(r), None),
            Refusal::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad_request".into(), Some(d)),
            Refusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large".into(), None),
            Refusal::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into(), None),
            Refusal::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy".into(), None),
            Refusal::StaleNonce => (StatusCode::FORBIDDEN, "stale_nonce".into(), None),
        };
        let body = Json(ErrorBody { error, detail });
        if retry {
            (status, [(header::RETRY_AFTER, "1")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

fn reject_status(r: RejectReason) -> StatusCode {
    match r {
        RejectReason::VersionMismatch => StatusCode::BAD_REQUEST,
        RejectReason::SessionNotFound => StatusCode::NOT_FOUND,
        RejectReason::SessionEnded => StatusCode::GONE,
        RejectReason::SessionFull => StatusCode::SERVICE_UNAVAILABLE,
        // Wrong proofs, a device id held by another member, and reasons without a status.
        _ => StatusCode::FORBIDDEN,
    }
}

/// Reads `v` alone first, so a later version's request is answered `version_mismatch` whatever
/// else it holds.
fn check_version(bytes: &[u8]) -> Result<(), Refusal> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: Option<serde_json::Value>,
    }
    let probe: VersionOnly = serde_json::from_slice(bytes)
        .map_err(|e| Refusal::BadRequest(format!("not a JSON object: {e}")))?;
    match probe.v.as_ref().and_then(serde_json::Value::as_u64) {
        Some(JOIN_VERSION) => Ok(()),
        Some(_) => Err(Refusal::Reject(RejectReason::VersionMismatch)),
        None if probe.v.is_some() => Err(Refusal::Reject(RejectReason::VersionMismatch)),
        None => Err(Refusal::BadRequest("missing \"v\"".into())),
    }
}

fn bad(e: impl std::fmt::Display) -> Refusal {
    Refusal::BadRequest(e.to_string())
}

/// Parses and checks a start request (PROTOCOL.md §9.1).
pub(super) fn parse_start(bytes: &[u8]) -> Result<StartRequest, Refusal> {
    check_version(bytes)?;
    let mut req: StartRequest = serde_json::from_slice(bytes).map_err(bad)?;
    check_id("device_id", &req.device_id, false).map_err(bad)?;
    if req.auth != JoinAuth::Code {
        // Ignored for the other kinds.
        req.session_code = None;
        req.pake = None;
        return Ok(req);
    }
    match &req.session_code {
        None => return Err(bad("a code join needs session_code")),
        Some(c) if c.len() > MAX_CODE_FIELD => return Err(bad("session_code over 32 bytes")),
        Some(_) => {}
    }
    let pake_ok = req
        .pake
        .as_deref()
        .is_some_and(|p| p.len() == 2 * PAKE_MSG_LEN && unhex(p).is_some());
    if !pake_ok {
        return Err(bad("a code join needs pake, 66 hex digits"));
    }
    Ok(req)
}

/// Parses and checks a join request (PROTOCOL.md §9.1).
pub(super) fn parse_join(bytes: &[u8]) -> Result<JoinRequest, Refusal> {
    check_version(bytes)?;
    let mut req: JoinRequest = serde_json::from_slice(bytes).map_err(bad)?;
    if req.nonce.len() != 2 * NONCE_LEN || unhex(&req.nonce).is_none() {
        return Err(bad("nonce must be 64 hex digits"));
    }
    check_id("device_id", &req.device_id, false).map_err(bad)?;
    if req.device_name.len() > MAX_NAME_LEN {
        return Err(bad("device_name longer than 48 bytes"));
    }
    if req.device_name.chars().any(char::is_control) {
        req.device_name.retain(|c| !c.is_control());
    }
    if req.offer.is_empty() || req.offer.len() > MAX_OFFER {
        return Err(bad("offer empty or over 16 KiB"));
    }
    if req.proof.len() != 2 * MAC_LEN || unhex(&req.proof).is_none() {
        return Err(bad("proof must be 64 hex digits"));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_have_their_statuses() {
        assert_eq!(
            reject_status(RejectReason::InvalidToken),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn parse_start_checks_version_first_and_fields() {
        let ok = |v: serde_json::Value| parse_start(v.to_string().as_bytes());
        let base = serde_json::json!({
            "v": 2, "auth": "code", "session_code": "abcd efgh", "device_id": "d1",
            "pake": "41".repeat(PAKE_MSG_LEN)
        });
        assert!(ok(base.clone()).is_ok());
        let mut v1 = base.clone();
        v1["v"] = 1.into();
        v1["auth"] = "future".into();
        assert!(matches!(
            ok(v1),
            Err(Refusal::Reject(RejectReason::VersionMismatch))
        ));
        for (field, value) in [
            ("device_id", serde_json::Value::from("x".repeat(65))),
            ("device_id", "bad id".into()),
            ("session_code", "c".repeat(33).into()),
            ("session_code", serde_json::Value::Null),
            ("pake", "41".repeat(PAKE_MSG_LEN + 1).into()),
            ("pake", "zz".repeat(PAKE_MSG_LEN).into()),
            ("pake", serde_json::Value::Null),
            ("auth", "magic".into()),
        ] {
            let mut req = base.clone();
            req[field] = value;
            assert!(
                matches!(ok(req), Err(Refusal::BadRequest(_))),
                "{field} accepted"
            );
        }
        let token = serde_json::json!({"v": 2, "auth": "token", "device_id": "d1"});
        assert!(ok(token).is_ok());
        assert!(matches!(parse_start(b"{nope"), Err(Refusal::BadRequest(_))));
        assert!(matches!(parse_start(b"[]"), Err(Refusal::BadRequest(_))));
    }

    #[test]
    fn parse_join_checks_fields() {
        let ok = |v: serde_json::Value| parse_join(v.to_string().as_bytes());
        let base = serde_json::json!({
            "v": 2, "nonce": "00".repeat(32), "device_id": "d1", "device_name": "Alto\u{7} 2",
            "offer": "v=0\r\n", "proof": "00".repeat(32)
        });
        assert_eq!(ok(base.clone()).unwrap().device_name, "Alto 2");
        for (field, value) in [
            ("nonce", serde_json::Value::from("00".repeat(31))),
            ("nonce", "zz".repeat(32).into()),
            ("device_id", "bad id".into()),
            ("device_name", "n".repeat(49).into()),
            ("offer", "".into()),
            ("offer", "o".repeat(MAX_OFFER + 1).into()),
            ("proof", "zz".into()),
        ] {
            let mut req = base.clone();
            req[field] = value;
            assert!(
                matches!(ok(req), Err(Refusal::BadRequest(_))),
                "{field} accepted"
            );
        }
        let mut v3 = base.clone();
        v3["v"] = 3.into();
        assert!(matches!(
            ok(v3),
            Err(Refusal::Reject(RejectReason::VersionMismatch))
        ));
    }
}
