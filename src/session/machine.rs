//! The machine skeleton every role shares: what a driver feeds in ([`Input`]), what it carries
//! out ([`Output`]), the [`Machine`] interface, and the [`Outbox`] each role queues its outputs
//! in, which also decodes every received control message once.

use super::{
    Command, DoorQuery, DoorReply, Event, FileCue, FollowerState, JoinCredentials, MasterState,
    Record, SoloState,
};
use crate::protocol::{DecodeError, Envelope, Message, RejectReason};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

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
