//! Session state machines: pure, deterministic, no IO.
//!
//! Each role ([`Solo`], [`Master`], [`Follower`]) is a [`Machine`]: the driver feeds it
//! [`Input`]s together with the current [`Time`], drains [`Output`]s with
//! [`Machine::poll_output`], and calls [`Machine::handle`] with [`Input::Timeout`] once
//! [`Machine::poll_timeout`] has passed. Time and randomness are inputs, so the same machine runs
//! under tokio, in a browser, or on the virtual clock of the simulated network in `tests/sim`.
//!
//! ```text
//!            Input (link up/down, bytes received, command, timeout)
//!   driver ───────────────────────────────▶ machine
//!          ◀─────────────────────────────── poll_output(): Send, Close, Dial, Persist, Event, Files
//!                                           poll_timeout(): when to call back
//! ```

mod backoff;
mod clock;
mod door;
mod follower;
mod keys;
mod link;
mod master;
mod playback;
mod records;
mod solo;

pub use backoff::{Backoff, BackoffConfig, Rng};
pub use clock::{ClockEstimate, ClockFilter};
pub use door::{DoorAuth, DoorQuery, DoorReply, DoorSecret};
pub use follower::{Follower, FollowerConfig, FollowerRecord, FollowerState, JoinCredentials};
pub use keys::{KeyStore, Merge, DEFAULT_SYNC_GROUPS, PLAYBACK_GROUP};
pub use link::{HeartbeatConfig, LinkState};
pub use master::{Master, MasterConfig, MasterRecord, MasterState, MemberRecord, SessionCode};
pub use playback::TIMER_MEDIA_ID;
pub use records::RecordError;
pub use solo::{Solo, SoloConfig, SoloRecord, SoloState, PARTNER_LEFT};

use crate::protocol::{
    Control, ControlMode, DecodeError, Envelope, FollowMode, KeyPolicy, Layout, Message, PageState,
    Parity, Participant, Playback, PlaybackOp, RejectReason, SessionFiles, StreamInfo,
};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// A point on the node's clock: microseconds since the Unix epoch.
///
/// Real drivers read the wall clock once at start and add a monotonic clock to it, so this never
/// goes backwards; tests use a virtual clock.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    /// From milliseconds since the Unix epoch.
    pub fn from_millis(ms: u64) -> Time {
        Time(ms.saturating_mul(1000))
    }
    /// Milliseconds since the Unix epoch (the envelope's `ts`).
    pub fn as_millis(self) -> u64 {
        self.0 / 1000
    }
    /// Microseconds since the Unix epoch.
    pub fn as_micros(self) -> u64 {
        self.0
    }
    /// Time elapsed since `earlier` (zero if `earlier` is later).
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(d.as_micros().min(u64::MAX as u128) as u64),
        )
    }
}

/// Identifies one link (one connection to one peer), chosen by the driver. A reconnect is a new
/// link with a new id.
pub type PeerId = u64;

/// What the driver tells a machine.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A link to a peer is open (both data channels).
    LinkUp(PeerId),
    /// A link the join endpoint made is open, admitted as this device id (PROTOCOL.md §9.4):
    /// the link may only join as that id. Roles that admit nobody treat it as `LinkUp`.
    AdmittedLinkUp(PeerId, &'a str),
    /// A link is gone (closed, failed, or the driver gave up on it).
    LinkDown(PeerId),
    /// A `Dial` could not produce a link (peer unreachable, no answer).
    DialFailed,
    /// A `Dial` was refused by the peer's join endpoint, for this reason (a follower then acts
    /// as on a JOIN_REJECT and stops retrying).
    DialRefused(RejectReason),
    /// The network came back (interface up, address changed): retry now instead of waiting.
    NetworkChanged,
    /// Bytes of one control message arrived on a link. Untrusted.
    Received(PeerId, &'a [u8]),
    /// The application asks for something.
    Command(&'a Command),
    /// `poll_timeout` has passed.
    Timeout,
}

/// What a machine asks of the driver.
#[derive(Debug, Clone, PartialEq)]
// Outputs are drained as soon as they are made; the large one (a record) is rare.
#[allow(clippy::large_enum_variant)]
pub enum Output {
    /// Send this control message (JSON text) on the link.
    Send(PeerId, String),
    /// Close this link after flushing what was queued for it.
    Close(PeerId),
    /// Open a link to the peer (master or solo partner), presenting these credentials to its
    /// join endpoint (a follower's member secret once it has one, with its token or code; for
    /// solo the pair secret of a remembered pair, else nothing); answer with
    /// `LinkUp`, `DialFailed` or `DialRefused`.
    Dial(JoinCredentials),
    /// Store this record durably (replacing the previous one) so a restart resumes the session.
    Persist(Record),
    /// Tell the application.
    Event(Event),
    /// Tell the file service (PROTOCOL.md §11); a driver without one drops it.
    Files(FileCue),
}

/// What the file service needs from the session: the `TRANSFER_*` messages (which never reach
/// the roles) and the session facts it acts on. Every driver gets the same cues; the native one
/// forwards them to its file actor, the follower page to its receiver.
#[derive(Debug, Clone, PartialEq)]
pub enum FileCue {
    /// A `TRANSFER_*` message arrived on this link (PROTOCOL.md §11): it has a counter of its
    /// own (§2), so the role never saw it.
    Transfer(PeerId, Box<Envelope>),
    /// The peer on this link is admitted (its link reported connected): serve it what is
    /// published. A driver serves only links it still holds.
    Serve(PeerId),
    /// The session this device is in, and its role in it.
    Session {
        /// Session id.
        session_id: String,
        /// Human session code.
        session_code: String,
        /// This device's role, for files.
        role: SessionRole,
    },
    /// A solo pair is connected on the last link reported connected: the side that publishes
    /// sends, the other receives on that link.
    Paired,
    /// The host's published files changed (from a snapshot).
    HostFiles(SessionFiles),
    /// A streamed score was announced, with this stream id (its file follows as a `stream`
    /// round).
    StreamPrepared(String),
    /// The streamed score was cleared or the session ended: remove the streamed file.
    StreamCleared,
    /// A song change or a stream clear was asked: withdraw the published streamed score, which
    /// belongs to its song, so no newcomer is sent it.
    WithdrawStream,
}

/// What the session says this device is, for files (PROTOCOL.md §11.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRole {
    /// A choir master: serves its sets, accepts none.
    Host,
    /// A follower admitted by the master `host_id`: accepts sets only on the link it was
    /// admitted on (the last link the session reported connected).
    Follower {
        /// The master's device id.
        host_id: String,
    },
}

impl FileCue {
    /// The cue an event carries for the file service, if any: its role, the link it was
    /// admitted on, what the host publishes, and which links are admitted.
    fn of_event(e: &Event) -> Option<FileCue> {
        Some(match e {
            Event::Link {
                peer,
                state: LinkState::Connected,
            } => FileCue::Serve(*peer),
            Event::Hosting {
                session_id,
                session_code,
                ..
            } => FileCue::Session {
                session_id: session_id.clone(),
                session_code: session_code.clone(),
                role: SessionRole::Host,
            },
            // Admitted on the link last reported connected: the only one files come from.
            Event::Joined {
                session_id,
                session_code,
                host_id,
                ..
            } => FileCue::Session {
                session_id: session_id.clone(),
                session_code: session_code.clone(),
                role: SessionRole::Follower {
                    host_id: host_id.clone(),
                },
            },
            // Files come on the partner's link only, once it is up.
            Event::State {
                state: RoleState::Solo(SoloState::PairedConnected),
                ..
            } => FileCue::Paired,
            Event::SessionFiles(f) => FileCue::HostFiles(f.clone()),
            Event::StreamPrepared(info) => FileCue::StreamPrepared(info.stream_id.clone()),
            Event::StreamCleared | Event::SessionEnded => FileCue::StreamCleared,
            _ => return None,
        })
    }
}

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

/// What the application asks a machine to do. Not every role accepts every command; the others
/// answer with an [`Event::Error`] `command-not-allowed`.
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

/// The interface every role offers the driver.
pub trait Machine {
    /// Feeds one input at time `now`.
    fn handle(&mut self, now: Time, input: Input<'_>);
    /// Next thing for the driver to do, if any.
    fn poll_output(&mut self) -> Option<Output>;
    /// When the machine next needs `Input::Timeout`.
    fn poll_timeout(&self) -> Option<Time>;
    /// Admission at the door: what a join request for `query` must prove and whether it would
    /// be admitted (PROTOCOL.md §9.3). Only a master admits anyone.
    fn door(&self, _now: Time, _query: &DoorQuery) -> DoorReply {
        DoorReply::closed()
    }
}

/// Queue of outputs plus this device's outgoing envelope counter: shared by every role.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Output>,
    seq: u64,
}

impl Outbox {
    pub(crate) fn push(&mut self, o: Output) {
        self.queue.push_back(o);
    }
    /// Queues an event for the app, after the cue it carries for the file service, if any.
    pub(crate) fn event(&mut self, e: Event) {
        if let Some(cue) = FileCue::of_event(&e) {
            self.queue.push_back(Output::Files(cue));
        }
        self.queue.push_back(Output::Event(e));
    }

    /// Decodes bytes received on `peer`, the one decode of every control message (PROTOCOL.md
    /// §3). A `TRANSFER_*` message goes out to the file service before any role logic (it has
    /// a counter of its own, §2: no seq, rate-limit, heartbeat or peer check) and `None` comes
    /// back; anything else comes back for the role, decoded or with why it could not be.
    pub(crate) fn received(
        &mut self,
        peer: PeerId,
        bytes: &[u8],
    ) -> Option<Result<Envelope, DecodeError>> {
        match Envelope::decode(bytes) {
            Ok(env) if env.msg.is_transfer() => {
                self.push(Output::Files(FileCue::Transfer(peer, Box::new(env))));
                None
            }
            decoded => Some(decoded),
        }
    }

    /// A streamed score belongs to its song: a song change or a stream clear withdraws its file
    /// from the file service too, so no newcomer is sent it. Asked of any role, accepted or not.
    pub(crate) fn stream_follows_the_song(&mut self, cmd: &Command) {
        if matches!(
            cmd,
            Command::SetSong { .. } | Command::SetSongAt { .. } | Command::StreamClear
        ) {
            self.push(Output::Files(FileCue::WithdrawStream));
        }
    }
    pub(crate) fn pop(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
    pub(crate) fn error(&mut self, code: &str, message: impl Into<String>) {
        self.event(Event::Error {
            code: code.into(),
            message: message.into(),
        });
    }
    /// Encodes `msg` in an envelope with this device's next `seq`. `None` only for a local bug
    /// (a message over the size limit), which is reported as an `internal` error event.
    pub(crate) fn envelope(
        &mut self,
        session_id: &str,
        sender_id: &str,
        ts: u64,
        msg: Message,
    ) -> Option<String> {
        let env = Envelope {
            session_id: session_id.to_string(),
            sender_id: sender_id.to_string(),
            ts,
            seq: self.next_seq(),
            msg,
        };
        match env.encode() {
            Ok(text) => Some(text),
            Err(e) => {
                tracing::error!(%e, "cannot encode");
                self.error("internal", e.to_string());
                None
            }
        }
    }

    /// Moves a role's state machine, logging and announcing the transition with its reason.
    pub(crate) fn transition<S: StateName>(&mut self, state: &mut S, next: S, reason: &str) {
        if *state == next {
            return;
        }
        tracing::info!(from = state.name(), to = next.name(), reason, "state");
        *state = next;
        self.event(Event::State {
            state: next.role_state(),
            reason: reason.into(),
        });
    }

    pub(crate) fn not_allowed(&mut self, role: &str, cmd: &Command) {
        self.error("command-not-allowed", format!("a {role} cannot do {cmd:?}"));
    }
}

/// A role state with the name the role's rules give it (PROTOCOL.md §6).
pub(crate) trait StateName: Copy + PartialEq {
    fn name(self) -> &'static str;
    fn role_state(self) -> RoleState;
}

/// The state of a device's role, typed. On the wire and in `--json` it is the state's name as
/// the role's rules give it (PROTOCOL.md §6), e.g. `"FOLLOWER_CONNECTED_FOLLOW"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RoleState {
    /// A solo device's state.
    Solo(SoloState),
    /// A choir master's state.
    Master(MasterState),
    /// A choir follower's state.
    Follower(FollowerState),
}

impl RoleState {
    /// The state's name (PROTOCOL.md §6), e.g. `"SOLO_PAIRED_CONNECTED"`.
    pub fn name(self) -> &'static str {
        match self {
            RoleState::Solo(s) => s.name(),
            RoleState::Master(s) => s.name(),
            RoleState::Follower(s) => s.name(),
        }
    }
}

impl std::fmt::Display for RoleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq<str> for RoleState {
    fn eq(&self, other: &str) -> bool {
        self.name() == other
    }
}

impl PartialEq<&str> for RoleState {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

/// The earliest of several optional deadlines.
pub(crate) fn earliest(times: impl IntoIterator<Item = Option<Time>>) -> Option<Time> {
    times.into_iter().flatten().min()
}
