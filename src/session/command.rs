//! What the application asks a machine to do ([`Command`]), serialised as `{"cmd":"…",…}`.

use super::JoinCredentials;
use crate::protocol::{
    ControlMode, FollowMode, KeyPolicy, Parity, PlaybackOp, SessionFiles, StreamInfo,
};
use serde::{Deserialize, Serialize};

/// What the application asks a machine to do. Not every role accepts every command; the others
/// answer with an [`Event::Error`](super::Event::Error) `command-not-allowed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Show this page (solo: shared; master: broadcast; follower: local navigation).
    SetPage {
        /// Zero-based page index.
        page: u32,
    },
    /// Change song (master; solo).
    SetSong {
        /// Song identifier.
        song_id: String,
    },
    /// Solo: set the layout leader and parity.
    SetParity {
        /// Leader device id; empty means this device.
        #[serde(default)]
        leader: String,
        /// Leader's parity.
        parity: Parity,
    },
    /// Follower: follow the master or navigate freely.
    SetFollowMode {
        /// The mode.
        mode: FollowMode,
    },
    /// Follower: join a session.
    Join(JoinCredentials),
    /// Follower: leave the session for good.
    Leave,
    /// Master: end the session.
    End,
    /// Master: announce a streamed score for the current song.
    StreamPrepare(StreamInfo),
    /// Master: clear the streamed score.
    StreamClear,
    /// Master: the pack and media now published (sent in snapshots; the node's file service
    /// issues it when a pack is published or reset).
    SetFiles(SessionFiles),
    /// Retry connecting now, after giving up or while waiting.
    Retry,
    /// Master: show this page at a time of the master's clock, so every device turns together
    /// (`{"cmd":"set_page_at","page":3,"at":1735689602000}`). A time already past, or more
    /// than 10 s ahead, turns at once.
    SetPageAt {
        /// Zero-based page index.
        page: u32,
        /// Master clock, ms since the Unix epoch.
        at: u64,
    },
    /// Master: change song at a time of the master's clock.
    SetSongAt {
        /// Song identifier.
        song_id: String,
        /// Master clock, ms since the Unix epoch.
        at: u64,
    },
    /// Change the shared playback or timer (`{"cmd":"playback","op":"seek","position_us":…}`):
    /// the master at once; a follower asks the master, which obeys the editor, and anyone's
    /// `play` / `pause` in `shared-pause` mode.
    Playback(PlaybackOp),
    /// Master: who besides the host may change playback.
    SetControlMode {
        /// The mode.
        mode: ControlMode,
    },
    /// Master: hand the editor role to a participant, or take it back (`device_id` absent).
    SetEditor {
        /// The participant's device id.
        #[serde(default)]
        device_id: Option<String>,
    },
    /// Set a synced key (`{"cmd":"set_key","key":"view.zoom","value":1.5}`). Followers may write
    /// last-write-wins keys; host-authority keys only the host and the editor.
    SetKey {
        /// `group.name`.
        key: String,
        /// The value (JSON, at most 256 bytes).
        value: serde_json::Value,
        /// Who may write it from now on (only the host and editor may choose `host`).
        #[serde(default)]
        policy: KeyPolicy,
    },
    /// Follower: apply one group of synced state or not (`playback`, `view`, app groups). The
    /// choice is persisted and survives reconnects and restarts.
    SetSync {
        /// The group.
        group: String,
        /// Whether to apply it.
        apply: bool,
    },
}
