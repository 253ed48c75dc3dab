//! Who may join (PROTOCOL.md §6.2, §9.3): the session's secrets (token, code, password), the
//! members' secrets, and the one admission rule that the join endpoint and JOIN_REQUEST both ask.

use crate::auth::hex;
use crate::protocol::{JoinRequest, RejectReason, SessionCode, MAX_PARTICIPANTS};
use crate::session::{DoorAuth, DoorReply, DoorSecret};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// What the master remembers of a device it admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The member secret (32 hex digits) sent in its first JOIN_ACCEPT.
    pub secret: String,
    /// When it was first admitted (ms on the master's clock): the oldest is forgotten first.
    pub since: u64,
}

/// Most member secrets a master remembers: a few times the largest session, so joining devices
/// that never come back cannot grow the record without bound.
pub(crate) const MAX_REMEMBERED: usize = 4 * MAX_PARTICIPANTS;

/// The session's secrets and its members' secrets, and the rule that checks a join against them.
#[derive(Debug)]
pub(super) struct Admission {
    /// Join token.
    pub(super) token: String,
    /// Human session code.
    pub(super) code: SessionCode,
    /// Password, if any.
    pub(super) password: Option<String>,
    /// Every device admitted and not gone for good, by device id, with the secret it proves on
    /// a rejoin (PROTOCOL.md §6.2).
    pub(super) members: BTreeMap<String, MemberRecord>,
    /// The master's own device id: never a follower's.
    own_id: String,
    /// Most followers connected at once.
    max_followers: usize,
    /// Makes member secrets: a key from the master's entropy and a counter.
    secrets: SecretMaker,
}

impl Admission {
    /// The admission of a session with these secrets and members.
    pub(super) fn new(
        token: String,
        code: SessionCode,
        password: Option<String>,
        members: BTreeMap<String, MemberRecord>,
        own_id: String,
        max_followers: usize,
        entropy: &[u8; 32],
    ) -> Admission {
        Admission {
            token,
            code,
            password,
            members,
            own_id,
            max_followers,
            secrets: SecretMaker::new(entropy),
        }
    }

    /// Whether `device_id` has a member secret.
    pub(super) fn holds(&self, device_id: &str) -> bool {
        self.members.contains_key(device_id)
    }

    /// The member secret of `device_id`, if it has one.
    pub(super) fn secret_of(&self, device_id: &str) -> Option<String> {
        self.members.get(device_id).map(|m| m.secret.clone())
    }

    /// The one admission rule (PROTOCOL.md §6.2, §9.3), asked by the join endpoint and by
    /// JOIN_REQUEST alike: what a join as `device_id` by `auth` must prove, and whether it is
    /// admitted once proven, given whether the session has `ended` and how many followers are
    /// `connected`. A member's id is only ever its own: any other join naming it is refused,
    /// and a member may always come back, full or not.
    pub(super) fn door(
        &self,
        auth: DoorAuth,
        session_code: Option<&str>,
        device_id: &str,
        ended: bool,
        connected: usize,
    ) -> DoorReply {
        let secret = match auth {
            DoorAuth::Token => {
                (!self.token.is_empty()).then(|| DoorSecret::Token(self.token.clone()))
            }
            DoorAuth::Code => session_code
                .and_then(SessionCode::parse)
                .filter(|c| *c == self.code)
                .map(|c| DoorSecret::Code {
                    code: c.as_str().to_string(),
                    password: self.password.clone().unwrap_or_default(),
                }),
            DoorAuth::Member => self
                .members
                .get(device_id)
                .map(|m| DoorSecret::Member(m.secret.clone())),
        };
        let held = self.members.contains_key(device_id) || device_id == self.own_id;
        let verdict = if ended {
            Err(RejectReason::SessionEnded)
        } else if held && auth != DoorAuth::Member {
            Err(RejectReason::DeviceIdTaken)
        } else if !held && connected >= self.max_followers {
            Err(RejectReason::SessionFull)
        } else {
            Ok(())
        };
        DoorReply { secret, verdict }
    }

    /// A JOIN_REQUEST's proof and verdict, by [`door`](Self::door). A device that holds its id
    /// proves its member secret; any other proves the token or the code.
    pub(super) fn check(
        &self,
        req: &JoinRequest,
        device_id: &str,
        ended: bool,
        connected: usize,
    ) -> Result<(), RejectReason> {
        let held = self.members.contains_key(device_id);
        let (auth, given) = match (&req.member_secret, &req.token, &req.session_code) {
            (Some(secret), _, _) if held => (DoorAuth::Member, secret.as_str()),
            (_, Some(token), _) => (DoorAuth::Token, token.as_str()),
            (_, None, Some(_)) => (DoorAuth::Code, req.password.as_deref().unwrap_or("")),
            (Some(secret), None, None) => (DoorAuth::Member, secret.as_str()),
            (None, None, None) => return Err(RejectReason::InvalidToken),
        };
        let reply = self.door(
            auth,
            req.session_code.as_deref(),
            device_id,
            ended,
            connected,
        );
        match reply.secret {
            None if auth == DoorAuth::Code => return Err(RejectReason::SessionNotFound),
            None => return Err(RejectReason::InvalidToken),
            Some(DoorSecret::Code { password, .. }) => {
                if !password.is_empty() && !secret_eq(given, &password) {
                    return Err(RejectReason::InvalidPassword);
                }
            }
            Some(DoorSecret::Token(secret) | DoorSecret::Member(secret)) => {
                if !secret_eq(given, &secret) {
                    return Err(RejectReason::InvalidToken);
                }
            }
        }
        reply.verdict
    }

    /// Makes a device's member secret at its first admission; the oldest secret of a device not
    /// `present` now goes when the record holds the most it keeps.
    pub(super) fn remember(&mut self, now: Time, device_id: &str, present: impl Fn(&str) -> bool) {
        if self.members.len() >= MAX_REMEMBERED {
            let oldest = self
                .members
                .iter()
                .filter(|(id, _)| !present(id))
                .min_by_key(|(_, m)| m.since)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.members.remove(&id);
            }
        }
        let secret = self.secrets.make(device_id);
        self.members.insert(
            device_id.to_string(),
            MemberRecord {
                secret,
                since: now.as_millis(),
            },
        );
    }

    /// Forgets a member gone for good: its id is free again (and would get a new secret).
    /// Whether it had a secret.
    pub(super) fn forget(&mut self, device_id: &str) -> bool {
        self.members.remove(device_id).is_some()
    }
}

/// Member secrets from the master's entropy: SHA-256 of a key and a counter, never repeated.
#[derive(Debug)]
struct SecretMaker {
    key: [u8; 32],
    made: u64,
}

impl SecretMaker {
    fn new(entropy: &[u8; 32]) -> SecretMaker {
        SecretMaker {
            key: derive(entropy, "lansync member secrets"),
            made: 0,
        }
    }

    fn make(&mut self, device_id: &str) -> String {
        self.made += 1;
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(self.made.to_be_bytes());
        h.update(device_id.as_bytes());
        hex(&h.finalize()[..16])
    }
}

/// A key for one purpose (`label`) from the master's entropy.
pub(super) fn derive(entropy: &[u8; 32], label: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update(entropy);
    h.finalize().into()
}

/// Equality that takes the same time wherever the strings differ, so a secret cannot be guessed
/// byte by byte from response times (PROTOCOL.md §6.2). Only whether the lengths differ shows
/// (tokens and member secrets all have one length).
fn secret_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}
