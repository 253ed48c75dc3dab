//! The [`Record`] a node keeps on disk, one per role, and the checks on it ([`MasterRecord`],
//! [`FollowerRecord`]). A record
//! is read back after a restart, so it is treated like a message from a peer, with the rules of
//! the wire (PROTOCOL.md §3): what the wire rejects refuses the whole record; what the wire clamps
//! (display strings, playback ranges, well-known key values) is clamped.

use super::{FollowerRecord, MasterRecord, SoloRecord};
use crate::protocol::{
    check_id, clamp_name, DecodeError, KeyEntry, SessionCode, Validate, MAX_KEYS, MAX_SECRET_LEN,
};
use serde::{Deserialize, Serialize};

/// State that survives a crash or restart. Serialised by the driver (JSON) to one file per role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
// One record per machine, written on changes only: not worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Record {
    /// A master's session.
    Master(MasterRecord),
    /// A follower's membership.
    Follower(FollowerRecord),
    /// A remembered solo pair.
    Solo(SoloRecord),
    /// Nothing to keep (session left or ended).
    Cleared,
}

/// Longest session code a follower keeps (PROTOCOL.md §3, `session_code`).
const MAX_SESSION_CODE_LEN: usize = 32;

/// What is wrong with a stored record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RecordError {
    /// The field (dotted path) that breaks a rule.
    pub field: String,
    /// The rule it breaks.
    pub reason: String,
}

impl RecordError {
    fn new(field: &str, reason: &str) -> Self {
        RecordError {
            field: field.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl From<DecodeError> for RecordError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Invalid { field, reason } => RecordError::new(field, reason),
            other => RecordError::new("record", &other.to_string()),
        }
    }
}

/// Runs a payload's wire validation, naming the field by its path in the record.
fn check_as_wire<T: Validate>(field: &str, v: &mut T) -> Result<(), RecordError> {
    v.validate().map_err(|e| {
        let e = RecordError::from(e);
        RecordError::new(&format!("{field}.{}", e.field), &e.reason)
    })
}

/// A join token: 1–128 bytes of printable ASCII.
fn check_token(field: &str, token: &str) -> Result<(), RecordError> {
    if token.is_empty() {
        return Err(RecordError::new(field, "must not be empty"));
    }
    check_secret(field, token)
}

/// A secret: at most 128 bytes of printable ASCII.
fn check_secret(field: &str, s: &str) -> Result<(), RecordError> {
    if s.len() > MAX_SECRET_LEN {
        return Err(RecordError::new(field, "longer than 128 bytes"));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RecordError::new(field, "not printable ASCII"));
    }
    Ok(())
}

impl MasterRecord {
    /// Checks every field against the wire rules (PROTOCOL.md §3) and the formats the master
    /// itself produces (session code `XXXX-XXXX`, §6.2); clamps what the wire clamps.
    pub fn validate(&mut self) -> Result<(), RecordError> {
        check_id("session_id", &self.session_id, false)?;
        check_token("token", &self.token)?;
        let code = self.session_code.as_str();
        if SessionCode::parse(code).as_ref() != Some(&self.session_code) {
            return Err(RecordError::new(
                "session_code",
                "not a session code XXXX-XXXX",
            ));
        }
        clamp_name(&mut self.session_name);
        if let Some(p) = &self.password {
            check_secret("password", p)?;
        }
        check_as_wire("page", &mut self.page)?;
        if let Some(s) = &mut self.stream {
            check_as_wire("stream", s)?;
        }
        check_as_wire("files", &mut self.files)?;
        if let Some(p) = &mut self.playback {
            check_as_wire("playback", p.as_mut())?;
        }
        check_as_wire("control", &mut self.control)?;
        if self.members.len() > super::master::MAX_REMEMBERED {
            return Err(RecordError::new(
                "members",
                "more member secrets than a master keeps",
            ));
        }
        for (id, member) in &self.members {
            check_id("members", id, false)?;
            check_token("members", &member.secret)?;
        }
        if self.keys.len() > MAX_KEYS {
            return Err(RecordError::new("keys", "more than 64 keys"));
        }
        for k in self.keys.iter() {
            let mut k: KeyEntry = k.clone();
            check_as_wire("keys", &mut k)?;
        }
        Ok(())
    }
}

impl FollowerRecord {
    /// Checks every field against the wire rules (PROTOCOL.md §3); clamps what the wire clamps.
    pub fn validate(&mut self) -> Result<(), RecordError> {
        check_id("session_id", &self.session_id, false)?;
        if self.session_code.len() > MAX_SESSION_CODE_LEN {
            return Err(RecordError::new("session_code", "longer than 32 bytes"));
        }
        check_secret("session_code", &self.session_code)?;
        clamp_name(&mut self.session_name);
        if let Some(token) = &self.token {
            check_token("token", token)?;
        }
        if let Some(secret) = &self.member_secret {
            check_token("member_secret", secret)?;
        }
        if self.token.is_none() && self.member_secret.is_none() {
            return Err(RecordError::new(
                "token",
                "neither a token nor a member secret to rejoin with",
            ));
        }
        check_as_wire("view", &mut self.view)?;
        if self.sync_groups.len() > MAX_KEYS {
            return Err(RecordError::new("sync_groups", "more than 64 groups"));
        }
        for g in &self.sync_groups {
            check_id("sync_groups", g, false)?;
        }
        Ok(())
    }
}

impl SoloRecord {
    /// Checks a record read back from disk by the rules of the wire (PROTOCOL.md §3, §6.1).
    pub fn validate(&mut self) -> Result<(), RecordError> {
        check_id("pair_id", &self.pair_id, false)?;
        check_id("partner_id", &self.partner_id, false)?;
        clamp_name(&mut self.partner_name);
        if self.pair_secret.len() != 32 || !self.pair_secret.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(RecordError::new("pair_secret", "not 32 hex digits"));
        }
        if let Some(fp) = &self.partner_fingerprint {
            // `sha-256 AB:CD:…`: 103 bytes for SHA-256.
            if fp.len() > MAX_SECRET_LEN || !fp.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                return Err(RecordError::new("partner_fingerprint", "not a fingerprint"));
            }
        }
        if self.partner_endpoints.len() > crate::protocol::MAX_BOND_ENDPOINTS {
            return Err(RecordError::new("partner_endpoints", "more than 8"));
        }
        check_as_wire("page", &mut self.page)?;
        check_as_wire("layout", &mut self.layout)?;
        check_id("page_stamp", &self.page_stamp.sender_id, true)?;
        check_id("layout_stamp", &self.layout_stamp.sender_id, true)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Master, MasterConfig, Time};

    fn master_record() -> MasterRecord {
        let m = Master::new(MasterConfig::new("master"), Time::from_millis(1), [7; 32]);
        m.record().clone()
    }

    #[test]
    fn a_fresh_master_record_is_valid() {
        let mut r = master_record();
        let before = r.clone();
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(r, before);
    }

    #[test]
    fn out_of_rule_master_records_are_refused() {
        let mut r = master_record();
        r.page.page_index = 4_000_000_000;
        assert_eq!(r.validate().unwrap_err().field, "page.page_index");

        let mut r = master_record();
        r.page.song_id = Some("x".repeat(70_000));
        assert_eq!(r.validate().unwrap_err().field, "page.song_id");

        let mut r = master_record();
        r.session_id = "bad id".into();
        assert_eq!(r.validate().unwrap_err().field, "session_id");

        let mut r = master_record();
        r.token = String::new();
        assert_eq!(r.validate().unwrap_err().field, "token");

        let mut r = master_record();
        r.session_name = "n".repeat(70_000);
        assert_eq!(
            r.validate(),
            Ok(()),
            "display strings are clamped, as on the wire"
        );
        assert_eq!(r.session_name.len(), 48);
    }
}
