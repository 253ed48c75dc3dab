//! The follower's side of the join (PROTOCOL.md §9): both round trips, and the checks that the
//! answer comes from the session's master.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use super::wire::{
    reject_reason, ErrorBody, JoinAnswer, JoinAuth, JoinRequest, StartReply, StartRequest,
    JOIN_PATH, JOIN_VERSION, MAX_ANSWER, MAX_BODY, START_PATH,
};
use super::SignalingError;
use crate::auth::{self, hex, unhex, Key, PakeFollower, NONCE_LEN, PAKE_MSG_LEN};
use crate::session::{JoinCredentials, SessionCode};

/// Connection and per-request time limits. The master gathers candidates before it answers the
/// offer (2 s by default), so a request allows well beyond that.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// An answer whose MAC verified: it comes from whoever holds the join key, the session's master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAnswer {
    /// The answer SDP.
    pub answer: String,
    /// The master's DTLS fingerprint as the verified answer names it (`"sha-256 AB:CD:…"`): a
    /// follower that joined by code keeps it, so later rejoins check it.
    pub fingerprint: String,
}

/// Asks the master at `addr` to answer `offer_sdp` and returns the answer once its MAC — and,
/// when `expected_fingerprint` is given (`"sha-256 AB:CD:…"`, or bare hex), its DTLS fingerprint
/// — show it comes from the real master.
///
/// The credentials proven are, in this order of preference: the member secret (a rejoin), the
/// token (a QR link), the session code and password (through SPAKE2; `""` when no password).
pub async fn request_join(
    addr: SocketAddr,
    creds: &JoinCredentials,
    expected_fingerprint: Option<&str>,
    device_id: &str,
    device_name: &str,
    offer_sdp: &str,
) -> Result<VerifiedAnswer, SignalingError> {
    let client = reqwest::Client::builder()
        // The master is on the LAN: a configured HTTP proxy must not see (or break) the join.
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| SignalingError::Unreachable(e.to_string()))?;

    let (start, pake) = start_request(creds, device_id)?;
    let body = post(&client, addr, START_PATH, &start).await?;
    let reply: StartReply = serde_json::from_slice(&body)
        .map_err(|e| SignalingError::Protocol(format!("bad start reply: {e}")))?;
    let nonce = unhex(&reply.nonce)
        .filter(|n| n.len() == NONCE_LEN)
        .ok_or_else(|| SignalingError::Protocol("nonce must be 64 hex digits".into()))?;
    let key = match (pake, creds) {
        (Some(pake), _) => {
            // A message that does not complete the PAKE cannot come from the real master.
            let msg = reply
                .pake
                .as_deref()
                .and_then(unhex)
                .filter(|m| m.len() == PAKE_MSG_LEN)
                .ok_or(SignalingError::BadBinding)?;
            pake.finish(&msg).ok_or(SignalingError::BadBinding)?
        }
        (
            None,
            JoinCredentials {
                member_secret: Some(secret),
                ..
            },
        ) => auth::member_key(device_id, secret),
        (
            None,
            JoinCredentials {
                token: Some(token), ..
            },
        ) => auth::token_key(token),
        (None, _) => return Err(SignalingError::BadRequest("no credentials".into())),
    };

    let request = JoinRequest {
        v: JOIN_VERSION,
        nonce: reply.nonce.clone(),
        device_id: device_id.to_string(),
        device_name: device_name.to_string(),
        offer: offer_sdp.to_string(),
        proof: hex(&auth::proof(&key, &nonce, device_id, offer_sdp)),
    };
    let body = post(&client, addr, JOIN_PATH, &request).await?;
    let answer: JoinAnswer = serde_json::from_slice(&body)
        .map_err(|e| SignalingError::Protocol(format!("bad answer: {e}")))?;
    verify(addr, &key, &nonce, answer, expected_fingerprint)
}

/// The start request for these credentials, and the PAKE state of a code join.
fn start_request(
    creds: &JoinCredentials,
    device_id: &str,
) -> Result<(StartRequest, Option<PakeFollower>), SignalingError> {
    let mut start = StartRequest {
        v: JOIN_VERSION,
        auth: JoinAuth::Token,
        session_code: None,
        device_id: device_id.to_string(),
        pake: None,
    };
    if creds.member_secret.is_some() {
        start.auth = JoinAuth::Member;
        return Ok((start, None));
    }
    if creds.token.is_some() {
        return Ok((start, None));
    }
    let Some(code) = &creds.session_code else {
        return Err(SignalingError::BadRequest(
            "no member secret, token or session code to join with".into(),
        ));
    };
    let code = SessionCode::parse(code)
        .ok_or_else(|| SignalingError::BadRequest(format!("{code:?} is not a session code")))?;
    let mut entropy = [0u8; 32];
    getrandom::fill(&mut entropy).map_err(|e| SignalingError::BadRequest(e.to_string()))?;
    let password = creds.password.as_deref().unwrap_or("");
    let (pake, msg) = PakeFollower::start(code.as_str(), password, entropy)
        .ok_or_else(|| SignalingError::BadRequest("not a session code".into()))?;
    start.auth = JoinAuth::Code;
    start.session_code = Some(code.as_str().to_string());
    start.pake = Some(hex(&msg));
    Ok((start, Some(pake)))
}

/// Checks the answer's MAC, then the fingerprint it names.
fn verify(
    addr: SocketAddr,
    key: &Key,
    nonce: &[u8],
    answer: JoinAnswer,
    expected_fingerprint: Option<&str>,
) -> Result<VerifiedAnswer, SignalingError> {
    if answer.answer.len() > MAX_ANSWER {
        return Err(SignalingError::Protocol("answer SDP too large".into()));
    }
    let mac = unhex(&answer.mac).ok_or(SignalingError::BadBinding)?;
    if !auth::verify_answer(key, nonce, &answer.answer, &mac) {
        tracing::warn!(%addr, "join answer has a bad MAC: not the session's master");
        return Err(SignalingError::BadBinding);
    }
    if let Some(expected) = expected_fingerprint {
        if !crate::auth::sdp_names_fingerprint(&answer.answer, expected) {
            tracing::warn!(%addr, "join answer has another DTLS fingerprint than expected");
            return Err(SignalingError::BadBinding);
        }
    }
    // Every fingerprint line must name the same certificate as the first one.
    let fingerprint = crate::auth::sdp_fingerprint(&answer.answer)
        .filter(|fp| crate::auth::sdp_names_fingerprint(&answer.answer, fp))
        .ok_or(SignalingError::BadBinding)?;
    Ok(VerifiedAnswer {
        answer: answer.answer,
        fingerprint,
    })
}

/// POSTs `body` as JSON and returns the success body, or the refusal as an error. Reads at most
/// [`MAX_BODY`] bytes: the peer is untrusted.
async fn post(
    client: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    body: &impl Serialize,
) -> Result<Vec<u8>, SignalingError> {
    let url = format!("http://{addr}{path}");
    let mut response = client
        .post(&url)
        .json(body)
        .send()
        .await
        .map_err(|e| SignalingError::Unreachable(error_chain(&e)))?;
    let status = response.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| SignalingError::Unreachable(error_chain(&e)))?
    {
        if bytes.len() + chunk.len() > MAX_BODY {
            return Err(SignalingError::Protocol("response too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    if status.is_success() {
        return Ok(bytes);
    }
    let Ok(err) = serde_json::from_slice::<ErrorBody>(&bytes) else {
        return Err(SignalingError::Protocol(format!(
            "HTTP {status} without a join error"
        )));
    };
    Err(match err.error.as_str() {
        "rate_limited" => SignalingError::RateLimited,
        "busy" => SignalingError::Busy,
        "stale_nonce" => SignalingError::StaleNonce,
        "too_large" => SignalingError::TooLarge,
        "bad_request" => SignalingError::BadRequest(err.detail.unwrap_or_default()),
        other => SignalingError::Rejected(reject_reason(other)),
    })
}

/// The error and its sources in one line (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_pick_member_then_token_then_code() {
        let all = JoinCredentials {
            token: Some("t".into()),
            session_code: Some("abcd-efgh".into()),
            password: Some("pw".into()),
            member_secret: Some("m".into()),
        };
        assert_eq!(start_request(&all, "d").unwrap().0.auth, JoinAuth::Member);
        let no_member = JoinCredentials {
            member_secret: None,
            ..all.clone()
        };
        assert_eq!(
            start_request(&no_member, "d").unwrap().0.auth,
            JoinAuth::Token
        );
        let code = JoinCredentials {
            token: None,
            ..no_member
        };
        let (start, pake) = start_request(&code, "d").unwrap();
        assert_eq!(start.auth, JoinAuth::Code);
        assert_eq!(start.session_code.as_deref(), Some("ABCD-EFGH"));
        assert!(pake.is_some());
        assert!(start_request(&JoinCredentials::default(), "d").is_err());
    }
}
