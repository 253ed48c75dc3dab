//! The two round trips of a join (PROTOCOL.md §9.1–§9.4), with the keys, proof and answer MAC
//! of lansync's own `auth` module: the page only moves the bodies over `fetch`. No WebCrypto:
//! a page served over plain HTTP on a LAN is not a secure context, so `crypto.subtle` is absent.

use lansync::auth::{self, hex, unhex, Key, PakeFollower, NONCE_LEN, PAKE_MSG_LEN};
use lansync::invite::JoinLink;
use lansync::protocol::RejectReason;
use lansync::session::{JoinCredentials, SessionCode};
use serde::Deserialize;
use serde_json::json;
use wasm_bindgen::prelude::*;

/// Version of the join requests (PROTOCOL.md §9.1).
const JOIN_VERSION: u64 = 2;
/// Largest response body read (PROTOCOL.md §9.4).
const MAX_BODY: usize = 65_536;
/// Largest answer SDP accepted.
const MAX_ANSWER: usize = 16_384;

/// One join attempt: start body → start reply → join body → verified answer.
#[wasm_bindgen]
pub struct Handshake {
    device_id: String,
    start: serde_json::Value,
    pake: Option<PakeFollower>,
    /// The key of a member or token join, known from the start; a code join's after the PAKE.
    key: Option<Key>,
    nonce: Vec<u8>,
    link: JoinLink,
    /// Set when the master refused the device for good (not "try again").
    refused: Option<RejectReason>,
}

#[derive(Deserialize)]
struct StartReply {
    nonce: String,
    #[serde(default)]
    pake: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    answer: String,
    mac: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

impl Handshake {
    /// A handshake for these credentials (member secret first, then token, then code), with 32
    /// random bytes for a code join's PAKE.
    pub(crate) fn new(
        link: &JoinLink,
        creds: &JoinCredentials,
        device_id: &str,
        entropy: [u8; 32],
    ) -> Result<Handshake, String> {
        let mut hs = Handshake {
            device_id: device_id.to_string(),
            start: serde_json::Value::Null,
            pake: None,
            key: None,
            nonce: Vec::new(),
            link: link.clone(),
            refused: None,
        };
        if let Some(secret) = &creds.member_secret {
            hs.key = Some(auth::member_key(device_id, secret));
            hs.start = json!({"v": JOIN_VERSION, "auth": "member", "device_id": device_id});
        } else if let Some(token) = &creds.token {
            hs.key = Some(auth::token_key(token));
            hs.start = json!({"v": JOIN_VERSION, "auth": "token", "device_id": device_id});
        } else if let Some(code) = creds.session_code.as_deref().and_then(SessionCode::parse) {
            let password = creds.password.as_deref().unwrap_or("");
            let (pake, msg) = PakeFollower::start(code.as_str(), password, entropy)
                .ok_or("not a session code")?;
            hs.pake = Some(pake);
            hs.start = json!({"v": JOIN_VERSION, "auth": "code", "session_code": code.as_str(),
                "device_id": device_id, "pake": hex(&msg)});
        } else {
            return Err("no member secret, token or session code to join with".into());
        }
        Ok(hs)
    }

    /// Reads a refusal (`{"error": …}`, PROTOCOL.md §9.3) into an error sentence, noting a
    /// definite refusal of the device; `rate_limited`, `busy`, `stale_nonce` and the rest are
    /// "try again".
    fn refusal(&mut self, status: u16, body: &str) -> String {
        let Ok(err) = serde_json::from_str::<ErrorBody>(body) else {
            return format!("the master answered HTTP {status} without a join error");
        };
        match err.error.as_str() {
            "rate_limited" | "busy" => "the master is busy; trying again".into(),
            "stale_nonce" => "the join took too long; trying again".into(),
            "too_large" | "bad_request" => {
                format!("the master refused the request ({})", err.error)
            }
            other => {
                let reason = serde_json::from_value(serde_json::Value::String(other.into()))
                    .unwrap_or(RejectReason::Unknown);
                self.refused = Some(reason);
                format!(
                    "the master refused to let this device in ({})",
                    reason.code()
                )
            }
        }
    }
}

#[wasm_bindgen]
impl Handshake {
    /// The body of `POST /v1/join/start`.
    pub fn start_body(&self) -> String {
        self.start.to_string()
    }

    /// Takes the start's answer (HTTP status and body); throws with a sentence when it is a
    /// refusal or malformed.
    pub fn read_start(&mut self, status: u16, body: &str) -> Result<(), JsError> {
        if body.len() > MAX_BODY {
            return Err(JsError::new("the master's reply is too large"));
        }
        if !(200..300).contains(&status) {
            return Err(JsError::new(&self.refusal(status, body)));
        }
        let reply: StartReply = serde_json::from_str(body)
            .map_err(|e| JsError::new(&format!("bad start reply: {e}")))?;
        self.nonce = unhex(&reply.nonce)
            .filter(|n| n.len() == NONCE_LEN)
            .ok_or_else(|| JsError::new("the master's nonce is not 64 hex digits"))?;
        if let Some(pake) = self.pake.take() {
            // A message that does not complete the PAKE cannot come from the real master.
            let key = reply
                .pake
                .as_deref()
                .and_then(unhex)
                .filter(|m| m.len() == PAKE_MSG_LEN)
                .and_then(|m| pake.finish(&m))
                .ok_or_else(|| JsError::new("the answer is not from the session's master"))?;
            self.key = Some(key);
        }
        Ok(())
    }

    /// The body of `POST /v1/join` for this offer, with its proof.
    pub fn join_body(&self, device_name: &str, offer: &str) -> Result<String, JsError> {
        let key = self
            .key
            .ok_or_else(|| JsError::new("the join was not started"))?;
        let name: String = lansync::protocol::truncate(device_name, 48)
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let proof = auth::proof(&key, &self.nonce, &self.device_id, offer);
        Ok(
            json!({"v": JOIN_VERSION, "nonce": hex(&self.nonce), "device_id": self.device_id,
            "device_name": name, "offer": offer, "proof": hex(&proof)})
            .to_string(),
        )
    }

    /// Takes the join's answer and returns the answer SDP once its MAC and its DTLS
    /// fingerprint show it is the session's master's (PROTOCOL.md §9.4); throws otherwise.
    pub fn read_answer(&mut self, status: u16, body: &str) -> Result<String, JsError> {
        if body.len() > MAX_BODY {
            return Err(JsError::new("the master's reply is too large"));
        }
        if !(200..300).contains(&status) {
            return Err(JsError::new(&self.refusal(status, body)));
        }
        let key = self
            .key
            .ok_or_else(|| JsError::new("the join was not started"))?;
        let answer: Answer =
            serde_json::from_str(body).map_err(|e| JsError::new(&format!("bad answer: {e}")))?;
        if answer.answer.len() > MAX_ANSWER {
            return Err(JsError::new("the answer SDP is too large"));
        }
        let bad = || JsError::new("the answer is not from the session's master");
        let mac = unhex(&answer.mac).ok_or_else(bad)?;
        if !auth::verify_answer(&key, &self.nonce, &answer.answer, &mac) {
            return Err(bad());
        }
        if !self.link.matches_answer(&answer.answer) {
            return Err(bad());
        }
        Ok(answer.answer)
    }

    /// The master's refusal code (`invalid_token`, …) when it refused the device for good.
    pub fn refused(&self) -> Option<String> {
        self.refused.map(|r| {
            serde_json::to_value(r)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        })
    }
}
