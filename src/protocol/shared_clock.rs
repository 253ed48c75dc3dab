//! Payloads of the shared clock (PROTOCOL.md §12): playback/timer state, control mode and
//! editor, synced keys. Every value a peer sends is bounded here: positions and rates are
//! clamped, identifiers and oversized values rejected.

use super::payloads::{check_song_id, invalid};
use super::snapshots::Stamp;
use super::{check_id, clamp_name, DecodeError, Validate, MAX_ID_LEN};
use serde::{Deserialize, Serialize};

/// Largest media position or in/out point: one week, in µs. Larger values are clamped.
pub const MAX_POSITION_US: u64 = 7 * 24 * 3600 * 1_000_000;
/// Slowest playback rate; slower (and zero or negative) is clamped up to it.
pub const MIN_RATE: f64 = 1.0 / 16.0;
/// Fastest playback rate; faster is clamped down to it.
pub const MAX_RATE: f64 = 16.0;
/// Most synced keys in one session; new keys beyond are ignored.
pub const MAX_KEYS: usize = 64;
/// Largest synced value, in bytes of JSON.
pub const MAX_KEY_VALUE: usize = 256;
/// A timed change (`at`) further ahead than this, in ms of master clock, is applied at once.
pub const MAX_SCHEDULE_AHEAD_MS: u64 = 10_000;
/// Range of the well-known `view.zoom` key.
pub const ZOOM_RANGE: (f64, f64) = (0.05, 20.0);
/// Range of the well-known `view.pan_x` / `view.pan_y` keys.
pub const PAN_RANGE: (f64, f64) = (-1.0e6, 1.0e6);

/// Playback speed: a finite number in [`MIN_RATE`], [`MAX_RATE`]. Direction is separate.
#[derive(Debug, Clone, Copy, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rate(f64);

impl Rate {
    /// Normal speed.
    pub const NORMAL: Rate = Rate(1.0);

    /// Clamped into range; anything that is not a number becomes normal speed.
    pub fn new(r: f64) -> Rate {
        if r.is_nan() {
            Rate::NORMAL
        } else {
            Rate(r.clamp(MIN_RATE, MAX_RATE))
        }
    }
    /// The multiplier.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for Rate {
    fn default() -> Rate {
        Rate::NORMAL
    }
}

impl PartialEq for Rate {
    fn eq(&self, other: &Rate) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
// Bitwise equality is reflexive, so `Eq` holds even for values not yet clamped.
impl Eq for Rate {}

/// Which way media time runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Position grows.
    #[default]
    Forward,
    /// Position shrinks.
    Backward,
}

/// What happens at the out point (forward) or in point (backward).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopMode {
    /// Stop there.
    #[default]
    Off,
    /// Jump to the other end and go on.
    Loop,
}

/// Shared playback or timer state, anchored: `position_us` held at `anchor_us` on the clock of
/// whoever holds it (the master's clock on the wire), and moves from there by `rate` in
/// `direction` while `running`. Positions are µs of media time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Playback {
    /// Media item (or timer) identifier; empty when nothing is loaded. ≤ 256 bytes.
    #[serde(default)]
    pub media_id: String,
    /// Incremented by the master on every change; receivers keep the highest.
    #[serde(default)]
    pub revision: u64,
    /// Playing (or the timer counting).
    #[serde(default)]
    pub running: bool,
    /// Position at `anchor_us`, µs, within [`in_us`, `out_us`].
    #[serde(default)]
    pub position_us: u64,
    /// Clock time (µs since the Unix epoch) at which `position_us` held.
    #[serde(default)]
    pub anchor_us: u64,
    /// Speed.
    #[serde(default)]
    pub rate: Rate,
    /// Which way.
    #[serde(default)]
    pub direction: Direction,
    /// Behaviour at the ends.
    #[serde(default)]
    pub loop_mode: LoopMode,
    /// In point, µs.
    #[serde(default)]
    pub in_us: u64,
    /// Out point, µs; absent means the media's own end (unknown here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_us: Option<u64>,
    /// Free label of the current phase (a drawing timer's "pose 3", "break"); ≤ 48 bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub phase: String,
}

impl Playback {
    /// Clamps every number into range and puts the position between the in and out points.
    pub fn clamp(&mut self) {
        self.rate = Rate::new(self.rate.get());
        self.in_us = self.in_us.min(MAX_POSITION_US);
        self.out_us = self.out_us.map(|o| o.clamp(self.in_us, MAX_POSITION_US));
        let hi = self.out_us.unwrap_or(MAX_POSITION_US);
        self.position_us = self.position_us.clamp(self.in_us, hi);
        clamp_name(&mut self.phase);
    }
}

fn check_media_id(id: &str) -> Result<(), DecodeError> {
    check_song_id(&Some(id.to_string())).map_err(|_| invalid("media_id", "not a media id"))
}

impl Validate for Playback {
    fn validate(&mut self) -> Result<(), DecodeError> {
        check_media_id(&self.media_id)?;
        self.clamp();
        Ok(())
    }
}

/// A change to the playback state: what the master's app, the editor or (in `shared_pause`
/// mode, play and pause only) a participant asks for. Tagged by `op`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PlaybackOp {
    /// Load a media item: position 0, paused, normal speed forward, no loop, whole range.
    Load {
        /// Media identifier.
        media_id: String,
    },
    /// Start or resume.
    Play,
    /// Pause where it is.
    Pause,
    /// Jump to a position (clamped to the in/out range).
    Seek {
        /// Position, µs.
        position_us: u64,
    },
    /// Change speed.
    SetRate {
        /// New rate (clamped).
        rate: Rate,
    },
    /// Change direction.
    SetDirection {
        /// New direction.
        direction: Direction,
    },
    /// Change the loop mode.
    SetLoop {
        /// New mode.
        loop_mode: LoopMode,
    },
    /// Set the in and out points.
    SetRange {
        /// In point, µs.
        #[serde(default)]
        in_us: u64,
        /// Out point, µs; absent for the media's end.
        #[serde(default)]
        out_us: Option<u64>,
    },
    /// Label the current phase.
    SetPhase {
        /// Label (clamped to 48 bytes).
        phase: String,
    },
    /// A countdown for drawing sessions: a timer of `duration_us` that starts now.
    Timer {
        /// Length, µs.
        duration_us: u64,
        /// Label of the phase.
        #[serde(default)]
        phase: String,
    },
}

impl PlaybackOp {
    /// Whether a participant may ask for this in `shared_pause` mode.
    pub fn is_pause_or_resume(&self) -> bool {
        matches!(self, PlaybackOp::Play | PlaybackOp::Pause)
    }
}

impl Validate for PlaybackOp {
    fn validate(&mut self) -> Result<(), DecodeError> {
        match self {
            PlaybackOp::Load { media_id } => check_media_id(media_id)?,
            PlaybackOp::Seek { position_us } => *position_us = (*position_us).min(MAX_POSITION_US),
            PlaybackOp::SetRate { rate } => *rate = Rate::new(rate.get()),
            PlaybackOp::SetRange { in_us, out_us } => {
                *in_us = (*in_us).min(MAX_POSITION_US);
                *out_us = out_us.map(|o| o.clamp(*in_us, MAX_POSITION_US));
            }
            PlaybackOp::SetPhase { phase } => clamp_name(phase),
            PlaybackOp::Timer { duration_us, phase } => {
                *duration_us = (*duration_us).min(MAX_POSITION_US);
                clamp_name(phase);
            }
            PlaybackOp::Play
            | PlaybackOp::Pause
            | PlaybackOp::SetDirection { .. }
            | PlaybackOp::SetLoop { .. } => {}
        }
        Ok(())
    }
}

/// Who may change the shared state besides the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlMode {
    /// Only the host (and the editor).
    #[default]
    HostOnly,
    /// Participants may also pause and resume playback, nothing else.
    SharedPause,
}

/// `CONTROL`: the control mode and the editor role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    /// The mode.
    #[serde(default)]
    pub mode: ControlMode,
    /// Device id of the participant the host handed the editor role to, if any: it may change
    /// playback and host-authority keys as the host does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub editor: Option<String>,
    /// Incremented by the master on every change; receivers keep the highest.
    #[serde(default)]
    pub revision: u64,
}

impl Control {
    fn is_default(&self) -> bool {
        *self == Control::default()
    }
}

impl Validate for Control {
    fn validate(&mut self) -> Result<(), DecodeError> {
        match &self.editor {
            Some(e) => check_id("editor", e, false),
            None => Ok(()),
        }
    }
}

/// Who may write a synced key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPolicy {
    /// Anyone; the latest stamp wins.
    #[default]
    Lww,
    /// Only the host and the editor.
    Host,
}

/// `KEY_SET`, and one entry of a snapshot's `keys`: an app-defined named value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// `group.name` (e.g. `view.zoom`): identifier alphabet, ≤ 64 bytes, a non-empty group
    /// before the first `.`. The group decides who applies it.
    pub key: String,
    /// Any JSON value of at most [`MAX_KEY_VALUE`] bytes.
    pub value: serde_json::Value,
    /// Who may write it.
    #[serde(default)]
    pub policy: KeyPolicy,
    /// Last-write-wins stamp: time (ms) and the device that wrote it.
    pub stamp: Stamp,
}

impl KeyEntry {
    /// The key's group: what comes before the first `.`.
    pub fn group(&self) -> &str {
        key_group(&self.key)
    }
}

/// The group of a key name.
pub fn key_group(key: &str) -> &str {
    key.split('.').next().unwrap_or_default()
}

/// Checks a key name: `group.name`, identifier alphabet, ≤ 64 bytes.
pub fn check_key(key: &str) -> Result<(), DecodeError> {
    check_id("key", key, false)?;
    match key.split_once('.') {
        Some((group, name)) if !group.is_empty() && !name.is_empty() && key.len() <= MAX_ID_LEN => {
            Ok(())
        }
        _ => Err(invalid("key", "not group.name")),
    }
}

/// Clamps the values of well-known keys; rejects a well-known key of the wrong type.
fn clamp_known(key: &str, value: &mut serde_json::Value) -> Result<(), DecodeError> {
    let range = match key {
        "view.zoom" => ZOOM_RANGE,
        "view.pan_x" | "view.pan_y" => PAN_RANGE,
        _ => return Ok(()),
    };
    let n = value
        .as_f64()
        .ok_or_else(|| invalid("value", "not a number"))?;
    let clamped = n.clamp(range.0, range.1);
    if clamped != n {
        *value = serde_json::Value::from(clamped);
    }
    Ok(())
}

impl Validate for KeyEntry {
    fn validate(&mut self) -> Result<(), DecodeError> {
        check_key(&self.key)?;
        check_id("stamp.sender_id", &self.stamp.sender_id, false)?;
        let size = serde_json::to_string(&self.value).map_or(usize::MAX, |s| s.len());
        if size > MAX_KEY_VALUE {
            return Err(invalid("value", "longer than 256 bytes"));
        }
        clamp_known(&self.key, &mut self.value)
    }
}

/// Validates a snapshot's key list.
pub(super) fn validate_keys(keys: &mut [KeyEntry]) -> Result<(), DecodeError> {
    if keys.len() > MAX_KEYS {
        return Err(invalid("keys", "more than 64 entries"));
    }
    keys.iter_mut().try_for_each(Validate::validate)
}

/// Serde helper for the snapshot's `control` field.
pub(super) fn control_is_default(c: &Control) -> bool {
    c.is_default()
}
