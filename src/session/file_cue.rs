//! What the file service needs from the session, as outputs ([`FileCue`]): the transfer
//! messages the machine decoded and the session facts derived from its events (PROTOCOL.md §11).

use super::{Event, LinkState, PeerId, RoleState, SoloState};
use crate::protocol::{Envelope, SessionFiles};

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
    pub(crate) fn of_event(e: &Event) -> Option<FileCue> {
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
