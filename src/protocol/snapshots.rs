//! Payloads of presence and state snapshots (PROTOCOL.md §5 "State"): the participant list, the
//! choir snapshot with the published files, the solo snapshot and its last-write-wins stamps.

use super::manifest::{is_sha256_hex, SessionMediaMeta, SessionPackMeta};
use super::payloads::{invalid, FollowMode, Layout, PageState, StreamInfo};
use super::shared_clock::{Control, KeyEntry, Playback};
use super::{check_id, clamp_name, DecodeError, Validate, MAX_PARTICIPANTS};
use serde::{Deserialize, Serialize};

/// Role in the presence list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The master (host).
    Master,
    /// A follower (participant).
    Follower,
}

/// Where a participant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Link up and joined.
    Connected,
    /// Link lost; may rejoin with its token.
    Disconnected,
    /// Left, or gone long enough to be dropped from the list.
    Left,
}

/// One entry of the participant list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// Device id.
    pub id: String,
    /// Human name (clamped to 48 bytes).
    #[serde(default)]
    pub name: String,
    /// Master or follower.
    pub role: Role,
    /// Follow/free, for followers.
    #[serde(default)]
    pub follow_mode: FollowMode,
    /// Connected, disconnected or left.
    pub status: PresenceStatus,
}

impl Validate for Participant {
    fn validate(&mut self) -> Result<(), DecodeError> {
        check_id("participants.id", &self.id, false)?;
        clamp_name(&mut self.name);
        Ok(())
    }
}

fn validate_participants(list: &mut [Participant]) -> Result<(), DecodeError> {
    if list.len() > MAX_PARTICIPANTS {
        return Err(invalid("participants", "more than 256 entries"));
    }
    list.iter_mut().try_for_each(Validate::validate)
}

/// `PRESENCE`: participants that changed since the last one, or the whole list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Connected participants, master included.
    pub count: u32,
    /// `true` when `participants` is the whole list rather than the changes.
    #[serde(default)]
    pub complete: bool,
    /// The entries.
    #[serde(default)]
    pub participants: Vec<Participant>,
}

impl Validate for Presence {
    fn validate(&mut self) -> Result<(), DecodeError> {
        validate_participants(&mut self.participants)
    }
}

/// The choir session state a follower needs to catch up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChoirSnapshot {
    /// Human session name.
    #[serde(default)]
    pub session_name: String,
    /// Current song and page.
    pub page: PageState,
    /// Streamed score of the current song, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamInfo>,
    /// Whole participant list (empty in periodic snapshots, which leave presence alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participants: Vec<Participant>,
    /// The host's published files (`sessionPackMeta` / `sessionMediaMeta`); absent fields mean
    /// "no pack" / "no media", both valid states.
    #[serde(default, skip_serializing_if = "SessionFiles::is_empty")]
    pub files: SessionFiles,
    /// Shared playback/timer state, anchored to the master's clock (§12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playback: Option<Box<Playback>>,
    /// Control mode and editor (§12).
    #[serde(
        default,
        skip_serializing_if = "super::shared_clock::control_is_default"
    )]
    pub control: Control,
    /// Every synced key (§12).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyEntry>,
}

impl Validate for ChoirSnapshot {
    fn validate(&mut self) -> Result<(), DecodeError> {
        clamp_name(&mut self.session_name);
        self.page.validate()?;
        if let Some(s) = &mut self.stream {
            s.validate()?;
        }
        self.files.validate()?;
        if let Some(p) = &mut self.playback {
            p.validate()?;
        }
        self.control.validate()?;
        super::shared_clock::validate_keys(&mut self.keys)?;
        validate_participants(&mut self.participants)
    }
}

/// What files the host has published: the metadata a participant's start gate compares with
/// what it holds (PROTOCOL.md §11.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFiles {
    /// The session pack, if one is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<SessionPackMeta>,
    /// The session media, if any is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<SessionMediaMeta>,
}

impl SessionFiles {
    /// Neither a pack nor media.
    pub fn is_empty(&self) -> bool {
        self.pack.is_none() && self.media.is_none()
    }
}

impl Validate for SessionFiles {
    fn validate(&mut self) -> Result<(), DecodeError> {
        if let Some(p) = &self.pack {
            if !is_sha256_hex(&p.hash) {
                return Err(invalid("files.pack.hash", "not 64 lower-case hex digits"));
            }
            check_id("files.pack.uploadedBy", &p.uploaded_by, false)?;
        }
        if let Some(m) = &self.media {
            check_id("files.media.uploadedBy", &m.uploaded_by, false)?;
        }
        Ok(())
    }
}

/// When and by whom the solo page was last changed: the last-write-wins stamp. A state never
/// changed has `ts` 0 and the holder's own id (PROTOCOL.md §6.1); devices of earlier releases
/// wrote an empty `sender_id` there, which is still read.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Change time, ms (a hybrid clock: never below the last stamp seen plus one).
    pub ts: u64,
    /// Device that made the change; breaks ties (higher wins).
    pub sender_id: String,
}

/// Solo shared state (PROTOCOL.md §5 "State", §6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoloSnapshot {
    /// Current song and page (epoch and revision unused).
    pub page: PageState,
    /// Last-write-wins stamp of `page`.
    pub last_page_change: Stamp,
    /// Layout leader and parity.
    pub layout: Layout,
    /// Last-write-wins stamp of `layout`.
    #[serde(default)]
    pub last_layout_change: Stamp,
}

impl Validate for SoloSnapshot {
    fn validate(&mut self) -> Result<(), DecodeError> {
        self.page.validate()?;
        check_id(
            "last_page_change.sender_id",
            &self.last_page_change.sender_id,
            true,
        )?;
        check_id(
            "last_layout_change.sender_id",
            &self.last_layout_change.sender_id,
            true,
        )?;
        self.layout.validate()
    }
}

/// `STATE_SNAPSHOT`: tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// Snapshots are decoded one at a time and applied at once: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Snapshot {
    /// Choir session state, from the master.
    Choir(ChoirSnapshot),
    /// Solo pair state, from either device.
    Solo(SoloSnapshot),
}

impl Validate for Snapshot {
    fn validate(&mut self) -> Result<(), DecodeError> {
        match self {
            Snapshot::Choir(s) => s.validate(),
            Snapshot::Solo(s) => s.validate(),
        }
    }
}
