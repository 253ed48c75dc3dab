//! Payload types of the session messages, with their validation rules (snapshots and presence
//! in `snapshots`, the shared clock's in `shared_clock`, transfers' in `transfer_msgs`).
//!
//! Rule of thumb: identifiers, secrets and ordering counters are *rejected* when malformed (a wrong
//! id is never "almost right"); display strings are *clamped* (truncated, control characters
//! dropped) because a long name is harmless once shortened.

use super::snapshots::ChoirSnapshot;
use super::{
    check_id, clamp_name, DecodeError, Validate, MAX_CAPABILITIES, MAX_PAGE, MAX_SECRET_LEN,
    MAX_SONG_ID_LEN,
};
use serde::{Deserialize, Serialize};

pub(super) fn invalid(field: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::Invalid { field, reason }
}

fn check_page(page: u32) -> Result<(), DecodeError> {
    if page > MAX_PAGE {
        return Err(invalid("page_index", "above 99999"));
    }
    Ok(())
}

pub(super) fn check_song_id(song: &Option<String>) -> Result<(), DecodeError> {
    match song {
        Some(s) if s.len() > MAX_SONG_ID_LEN => Err(invalid("song_id", "longer than 256 bytes")),
        Some(s) if s.chars().any(char::is_control) => {
            Err(invalid("song_id", "contains control characters"))
        }
        _ => Ok(()),
    }
}

fn check_secret(field: &'static str, s: &Option<String>) -> Result<(), DecodeError> {
    match s {
        Some(s) if s.len() > MAX_SECRET_LEN => Err(invalid(field, "longer than 128 bytes")),
        _ => Ok(()),
    }
}

/// A payload with no fields (`{}`); extra fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

impl Validate for Empty {
    fn validate(&mut self) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// The role a device plays in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One of two equal devices of a solo pair.
    Solo,
    /// The choir master.
    ChoirMaster,
    /// A choir follower.
    ChoirFollower,
}

/// `HELLO`: first message on every link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's role.
    pub mode: Mode,
    /// Human name of the device (clamped to 48 bytes).
    #[serde(default)]
    pub device_name: String,
    /// Optional features the sender supports (at most 16, each an identifier).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl Validate for Hello {
    fn validate(&mut self) -> Result<(), DecodeError> {
        clamp_name(&mut self.device_name);
        if self.capabilities.len() > MAX_CAPABILITIES {
            return Err(invalid("capabilities", "more than 16 entries"));
        }
        for c in &self.capabilities {
            check_id("capabilities", c, false)?;
        }
        Ok(())
    }
}

/// Follower's display mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowMode {
    /// Applies the master's pages.
    #[default]
    Follow,
    /// Navigates on its own; still applies song changes.
    Free,
}

/// `JOIN_REQUEST`: credentials are the `member_secret` of a rejoining member, a `token` (QR
/// link), or a `session_code` (+ `password`) (PROTOCOL.md §6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    /// Session token from a QR link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Human session code `XXXX-XXXX` (normalised by the master).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_code: Option<String>,
    /// Session password, when the master set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The member secret a JOIN_ACCEPT gave this device: proves a rejoin is the same device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_secret: Option<String>,
    /// Human name of the device.
    #[serde(default)]
    pub device_name: String,
    /// The follower's current mode, so presence is right from the start.
    #[serde(default)]
    pub follow_mode: FollowMode,
}

impl Validate for JoinRequest {
    fn validate(&mut self) -> Result<(), DecodeError> {
        check_secret("token", &self.token)?;
        check_secret("password", &self.password)?;
        check_secret("member_secret", &self.member_secret)?;
        if let Some(code) = &self.session_code {
            if code.len() > 32 {
                return Err(invalid("session_code", "longer than 32 bytes"));
            }
        }
        clamp_name(&mut self.device_name);
        Ok(())
    }
}

/// `JOIN_ACCEPT`: the follower is in. It never carries the session token (PROTOCOL.md §6.2): a
/// code joiner must not learn it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinAccept {
    /// This device's member secret, to store and prove on every rejoin (32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_secret: Option<String>,
    /// The session token, as masters before member secrets sent it: still read, never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Human session code, for display.
    #[serde(default)]
    pub session_code: String,
    /// Full session state, with the participant list. Written with `"kind":"choir"` like a
    /// STATE_SNAPSHOT (PROTOCOL.md §5); read with or without it (masters of earlier releases
    /// left it out).
    #[serde(serialize_with = "choir_tagged")]
    pub snapshot: ChoirSnapshot,
}

/// Writes a choir snapshot as STATE_SNAPSHOT carries it: its fields and `"kind":"choir"`.
fn choir_tagged<S: serde::Serializer>(snap: &ChoirSnapshot, out: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Tagged<'a> {
        Choir(&'a ChoirSnapshot),
    }
    Tagged::Choir(snap).serialize(out)
}

impl Validate for JoinAccept {
    fn validate(&mut self) -> Result<(), DecodeError> {
        for (field, secret) in [
            ("member_secret", &self.member_secret),
            ("token", &self.token),
        ] {
            if secret
                .as_ref()
                .is_some_and(|s| s.is_empty() || s.len() > MAX_SECRET_LEN)
            {
                return Err(invalid(field, "must be 1 to 128 bytes"));
            }
        }
        if self.session_code.len() > 32 {
            return Err(invalid("session_code", "longer than 32 bytes"));
        }
        self.snapshot.validate()
    }
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The token is not this session's.
    InvalidToken,
    /// The password is wrong or missing.
    InvalidPassword,
    /// The session has ended; its token is void.
    SessionEnded,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// The session has as many participants as it accepts.
    SessionFull,
    /// No session with that code here.
    SessionNotFound,
    /// The device id belongs to a member of the session and the request did not prove that
    /// member's secret, or it is not the id the link was admitted as (PROTOCOL.md §6.2).
    DeviceIdTaken,
    /// A reason this version does not know.
    #[serde(other)]
    Unknown,
}

impl RejectReason {
    /// The error code apps show (PROTOCOL.md §8, kebab-case).
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::InvalidToken => "invalid-token",
            RejectReason::InvalidPassword => "invalid-password",
            RejectReason::SessionEnded => "session-ended",
            RejectReason::VersionMismatch => "version-mismatch",
            RejectReason::SessionFull => "session-full",
            RejectReason::SessionNotFound => "session-not-found",
            RejectReason::DeviceIdTaken => "device-id-taken",
            RejectReason::Unknown => "join-rejected",
        }
    }
}

/// `JOIN_REJECT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinReject {
    /// Why.
    pub reason: RejectReason,
}

impl Validate for JoinReject {
    fn validate(&mut self) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// `SESSION_END`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// Optional human reason (clamped to 48 bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Validate for SessionEnd {
    fn validate(&mut self) -> Result<(), DecodeError> {
        clamp_name(&mut self.reason);
        Ok(())
    }
}

/// The page position shared by SET_SONG, SET_PAGE and snapshots.
///
/// Choir orders these by `(song_epoch, page_revision)`; solo by the envelope's `(ts, sender_id)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageState {
    /// Current song, if any.
    #[serde(default)]
    pub song_id: Option<String>,
    /// Incremented by the master on every song change.
    #[serde(default)]
    pub song_epoch: u64,
    /// Incremented by the master on every page change; reset to 0 by a song change.
    #[serde(default)]
    pub page_revision: u64,
    /// Zero-based page index, at most 99999.
    pub page_index: u32,
    /// Optional master-clock time (ms since the Unix epoch) at which to apply the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

impl PageState {
    /// The choir ordering key.
    pub fn version(&self) -> (u64, u64) {
        (self.song_epoch, self.page_revision)
    }
}

impl Validate for PageState {
    fn validate(&mut self) -> Result<(), DecodeError> {
        check_page(self.page_index)?;
        check_song_id(&self.song_id)
    }
}

/// Which solo device leads the complementary layout, and on which parity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    /// The leader shows odd pages (1, 3, 5 … in 1-based numbering).
    #[default]
    Odd,
    /// The leader shows even pages.
    Even,
}

/// `SET_LAYOUT_PARITY` payload and the solo layout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Device id of the page leader; empty when unset (then the higher device id leads).
    #[serde(default)]
    pub leader_device_id: String,
    /// The leader's parity.
    #[serde(default)]
    pub parity: Parity,
}

impl Validate for Layout {
    fn validate(&mut self) -> Result<(), DecodeError> {
        check_id("leader_device_id", &self.leader_device_id, true)
    }
}

/// `PAIR_BOND` (solo only, PROTOCOL.md §6.1): what a remembered pair needs to find itself again.
/// Each device sends one right after its HELLO on every link of a pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairBond {
    /// On the first link of a pairing made from codes only: this device's half of the pair
    /// secret, 16 random bytes as 32 hex digits. Absent once the pair is remembered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half: Option<String>,
    /// Where this device's redial endpoint listens (`"ip:port"`, at most
    /// [`MAX_BOND_ENDPOINTS`]); empty for the device that dials.
    #[serde(default)]
    pub endpoints: Vec<String>,
}

/// Most endpoints a `PAIR_BOND` lists (more are refused).
pub const MAX_BOND_ENDPOINTS: usize = 8;

impl Validate for PairBond {
    fn validate(&mut self) -> Result<(), DecodeError> {
        if let Some(h) = &self.half {
            if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid("half", "not 32 hex digits"));
            }
        }
        if self.endpoints.len() > MAX_BOND_ENDPOINTS {
            return Err(invalid("endpoints", "more than 8"));
        }
        for e in &self.endpoints {
            if e.len() > 64 || e.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid("endpoints", "not an ip:port"));
            }
        }
        Ok(())
    }
}

/// `SET_FOLLOW_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowModeMsg {
    /// The follower's new mode.
    pub mode: FollowMode,
}

impl Validate for FollowModeMsg {
    fn validate(&mut self) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// `STREAM_PREPARE`: a temporary, view-only score for one song epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Identifier of this stream.
    pub stream_id: String,
    /// The song epoch it belongs to; older epochs make it void.
    pub song_epoch: u64,
    /// File name to show (clamped to 48 bytes).
    #[serde(default)]
    pub name: String,
    /// MIME type (e.g. `application/pdf`).
    #[serde(default)]
    pub mime: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Lower-case hex SHA-256 of the content (64 characters), or empty when not yet known.
    #[serde(default)]
    pub sha256: String,
}

impl Validate for StreamInfo {
    fn validate(&mut self) -> Result<(), DecodeError> {
        check_id("stream_id", &self.stream_id, false)?;
        clamp_name(&mut self.name);
        if self.mime.len() > 127 || !self.mime.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("mime", "not a MIME type"));
        }
        if !(self.sha256.is_empty()
            || (self.sha256.len() == 64
                && self
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))))
        {
            return Err(invalid("sha256", "not 64 lower-case hex digits"));
        }
        Ok(())
    }
}

/// `STREAM_CLEAR`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamClear {
    /// The stream to clear; empty clears whatever is shown.
    #[serde(default)]
    pub stream_id: String,
}

impl Validate for StreamClear {
    fn validate(&mut self) -> Result<(), DecodeError> {
        check_id("stream_id", &self.stream_id, true)
    }
}

/// `PING`: heartbeat and clock probe. Times are the sender's clock in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Probe id, echoed in the PONG.
    pub id: u64,
    /// Sender's clock when sending (µs since the Unix epoch).
    pub t0: u64,
}

impl Validate for Ping {
    fn validate(&mut self) -> Result<(), DecodeError> {
        Ok(())
    }
}

/// `PONG`: answer to a PING, NTP style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The PING's id.
    pub id: u64,
    /// The PING's `t0`, echoed.
    pub t0: u64,
    /// Answerer's clock when the PING arrived (µs).
    pub t1: u64,
    /// Answerer's clock when sending the PONG (µs).
    pub t2: u64,
}

impl Validate for Pong {
    fn validate(&mut self) -> Result<(), DecodeError> {
        if self.t2 < self.t1 {
            return Err(invalid("t2", "earlier than t1"));
        }
        Ok(())
    }
}
