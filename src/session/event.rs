//! What the application is told ([`Event`]), serialised as `{"event":"…",…}`.

use super::{LinkState, PeerId, RoleState};
use crate::protocol::{
    Control, FollowMode, Layout, PageState, Participant, Playback, RejectReason, SessionFiles,
    StreamInfo,
};
use serde::{Deserialize, Serialize};

/// What the application is told. Serialised as `{"event":"…",…}` in `--json` mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A link changed state.
    Link {
        /// The link (followers and solo devices have one at a time).
        peer: PeerId,
        /// New state.
        state: LinkState,
    },
    /// The role's own state machine moved (e.g. `FOLLOWER_CONNECTED_FOLLOW`).
    State {
        /// The new state (serialised as its name, PROTOCOL.md §6).
        state: RoleState,
        /// Why it moved.
        reason: String,
    },
    /// What the device should display now.
    Page {
        /// Current song.
        song_id: Option<String>,
        /// Song epoch (choir).
        song_epoch: u64,
        /// Zero-based page.
        page: u32,
        /// `local` (this device turned) or `remote` (applied from a peer).
        origin: Origin,
    },
    /// Solo layout changed.
    Layout(Layout),
    /// Follower mode changed.
    FollowMode {
        /// New mode.
        mode: FollowMode,
    },
    /// Follower joined (or rejoined) a session.
    Joined {
        /// Session id.
        session_id: String,
        /// Device id of the master: the only peer whose files are accepted.
        host_id: String,
        /// Human session code.
        session_code: String,
        /// Session name.
        session_name: String,
        /// `true` when this was an automatic rejoin.
        rejoin: bool,
    },
    /// Master: a session exists (created or restored).
    Hosting {
        /// Session id.
        session_id: String,
        /// Human session code `XXXX-XXXX`.
        session_code: String,
        /// Secret token for QR links.
        token: String,
        /// No password: anyone on the network who sees the code can join, and a follower
        /// joining by code cannot tell this master from an impostor (PROTOCOL.md §6.2).
        open: bool,
    },
    /// A join was refused.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// The session ended (follower: told by the master; master: ended it).
    SessionEnded,
    /// A participant joined or came back.
    ParticipantJoined(Participant),
    /// A participant left or disconnected.
    ParticipantLeft(Participant),
    /// Number of connected participants, master included.
    Presence {
        /// Count.
        count: u32,
    },
    /// A streamed score is available for the current song.
    StreamPrepared(StreamInfo),
    /// The streamed score is gone; delete any temporary copy.
    StreamCleared,
    /// Follower: what files the host has published changed (also sent once on joining when
    /// there are any).
    SessionFiles(SessionFiles),
    /// Automatic reconnection stopped after this many attempts; `Command::Retry` starts again.
    GaveUp {
        /// Attempts made.
        attempts: u32,
    },
    /// Solo: the pair is remembered (PROTOCOL.md §6.1): its record is persisted and the two
    /// devices find each other again after a cut or a restart, without codes. The secret is
    /// never in an event.
    PairRemembered {
        /// The pair id.
        pair_id: String,
        /// The partner's device id.
        partner_id: String,
    },
    /// The shared playback/timer state, anchored to *this* device's clock: position
    /// `position_us` at local time `anchor_us`, moving at `rate` in `direction` while `running`.
    /// Sent on every discrete change and when the prediction moved beyond the tolerance, not
    /// per frame: the app computes the position itself.
    Playback(Playback),
    /// The control mode or the editor changed.
    Control(Control),
    /// A synced key this device applies changed.
    Key {
        /// `group.name`.
        key: String,
        /// New value.
        value: serde_json::Value,
        /// `local` (this device wrote it) or `remote`.
        origin: Origin,
    },
    /// Follower: the groups of synced state it applies.
    SyncGroups {
        /// Group names.
        groups: Vec<String>,
    },
    /// Something the app should show; `code` is stable (kebab-case).
    Error {
        /// Stable error code.
        code: String,
        /// Human message.
        message: String,
    },
}

impl Event {
    /// The `Page` event for what `state` shows.
    pub(crate) fn page(state: &PageState, origin: Origin) -> Event {
        Event::Page {
            song_id: state.song_id.clone(),
            song_epoch: state.song_epoch,
            page: state.page_index,
            origin,
        }
    }
}

/// Whether a page change came from this device or a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// This device.
    Local,
    /// A peer.
    Remote,
}
