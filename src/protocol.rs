//! The wire protocol: the JSON envelope, the message catalog, limits and validation.
//!
//! Every control message is one JSON object (UTF-8, at most [`MAX_CONTROL_MESSAGE`] bytes):
//!
//! ```json
//! {"v":1,"session_id":"…","sender_id":"…","type":"SET_PAGE","ts":1735689600000,"seq":7,"payload":{…}}
//! ```
//!
//! Decoding is two-phase, as in mini-redis: first the envelope (size cap, version, header fields),
//! then the payload of the named `type`, which is validated (identifiers rejected when malformed,
//! display values clamped). Unknown `type`s come back as [`DecodeError::UnknownType`] so callers can
//! ignore them; unknown fields are ignored everywhere. Nothing here panics on any input.
//!
//! What lives where: this file holds the envelope, the catalog and the limits; `payloads` the
//! session messages' payloads (§5), `snapshots` presence and state snapshots (§5 "State"),
//! `shared_clock` playback, control and synced keys (§12), `transfer_msgs` the file-transfer
//! messages (§11.4) and `manifest` the file manifest they carry (§11.1).
//!
//! `PROTOCOL.md` at the repository root is the normative description of all of this.

mod manifest;
mod payloads;
mod session_code;
mod shared_clock;
mod snapshots;
mod transfer_msgs;

pub use manifest::*;
pub use payloads::*;
pub use session_code::SessionCode;
pub use shared_clock::*;
pub use snapshots::*;
pub use transfer_msgs::*;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The protocol version this build speaks. A peer sending another `v` gets `version_mismatch`.
pub const PROTOCOL_VERSION: u64 = 1;
/// Largest control message, in bytes, accepted or produced.
pub const MAX_CONTROL_MESSAGE: usize = 64 * 1024;
/// Longest identifier (session id, sender id, stream id), in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Longest display name (device, session), in bytes of UTF-8; longer names are truncated.
pub const MAX_NAME_LEN: usize = 48;
/// Longest song id, in bytes.
pub const MAX_SONG_ID_LEN: usize = 256;
/// Longest session token or password, in bytes.
pub const MAX_SECRET_LEN: usize = 128;
/// Highest page index; anything above is rejected as garbage.
pub const MAX_PAGE: u32 = 99_999;
/// Most participants listed in one message (a session has at most this many minus the master).
pub const MAX_PARTICIPANTS: usize = 256;
/// Most capability strings in a HELLO.
pub const MAX_CAPABILITIES: usize = 16;

/// One decoded control message with its envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Session the message belongs to; empty before the sender knows it (a first JOIN_REQUEST).
    pub session_id: String,
    /// Stable device identifier of the sender.
    pub sender_id: String,
    /// Sender's clock, milliseconds since the Unix epoch.
    pub ts: u64,
    /// Sender's message counter, strictly increasing on one link (TRANSFER_* messages have a
    /// counter of their own, PROTOCOL.md §2).
    pub seq: u64,
    /// The message itself.
    pub msg: Message,
}

/// Why bytes could not be turned into an [`Envelope`]. Every variant is safe to ignore and log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_CONTROL_MESSAGE`].
    #[error("message of {len} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Bytes received.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Not JSON, or a required field is missing or of the wrong type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// `v` is not [`PROTOCOL_VERSION`]; the rest was not read.
    #[error("protocol version {got} is not supported (this peer speaks {PROTOCOL_VERSION})")]
    VersionMismatch {
        /// The version the peer sent.
        got: u64,
    },
    /// A `type` this version does not know; to be ignored.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A field holds a value outside its allowed range or alphabet.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field's name on the wire.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> Self {
        DecodeError::Malformed(e.to_string())
    }
}

/// Payloads check and normalise themselves after parsing: reject what is malformed, clamp what
/// only needs bounding.
pub trait Validate {
    /// Checks every field; may rewrite fields that are clamped.
    fn validate(&mut self) -> Result<(), DecodeError>;
}

/// Lists every message once: its Rust variant, payload type and wire name. Everything that must
/// know the catalog (encoding, decoding, names) is generated from this one list.
macro_rules! catalog {
    ($($(#[$doc:meta])* $variant:ident($payload:ty) = $wire:literal,)*) => {
        /// Every message of protocol version 1.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Message {
            $($(#[$doc])* $variant($payload),)*
        }

        impl Message {
            /// The wire name (`type` field) of this message.
            pub fn type_name(&self) -> &'static str {
                match self { $(Message::$variant(_) => $wire,)* }
            }

            /// Whether this is a `TRANSFER_*` message: the file service's, with a counter of
            /// its own (PROTOCOL.md §2, §11).
            pub fn is_transfer(&self) -> bool {
                self.type_name().starts_with("TRANSFER_")
            }

            fn payload(&self) -> &dyn erased::Payload {
                match self { $(Message::$variant(p) => p,)* }
            }

            fn decode_payload(type_name: &str, payload: &str) -> Result<Self, DecodeError> {
                match type_name {
                    $($wire => {
                        let mut p: $payload = serde_json::from_str(payload)?;
                        p.validate()?;
                        Ok(Message::$variant(p))
                    })*
                    other => Err(DecodeError::UnknownType(truncate(other, MAX_ID_LEN).to_string())),
                }
            }
        }

        /// Wire names of every message type, in catalog order.
        pub const MESSAGE_TYPES: &[&str] = &[$($wire,)*];
    };
}

catalog! {
    /// Declares the sender's mode and capabilities; first message on every link.
    Hello(Hello) = "HELLO",
    /// Follower → master: asks to join with a token or a session code.
    JoinRequest(JoinRequest) = "JOIN_REQUEST",
    /// Master → follower: membership confirmed, with the member secret to store and the full
    /// state (a choir snapshot with the participant list).
    JoinAccept(JoinAccept) = "JOIN_ACCEPT",
    /// Master → follower: refused, with the reason.
    JoinReject(JoinReject) = "JOIN_REJECT",
    /// Follower → master: leaving for good.
    LeaveSession(Empty) = "LEAVE_SESSION",
    /// Master → followers: the session is over and its token invalid.
    SessionEnd(SessionEnd) = "SESSION_END",
    /// Full authoritative state, for resync.
    StateSnapshot(Snapshot) = "STATE_SNAPSHOT",
    /// Master → followers: a new song (new song epoch).
    SetSong(PageState) = "SET_SONG",
    /// A page change: choir by (epoch, revision), solo by (ts, sender_id).
    SetPage(PageState) = "SET_PAGE",
    /// Solo: which device leads the odd/even layout.
    SetLayoutParity(Layout) = "SET_LAYOUT_PARITY",
    /// Solo: the pair secret's half and the redial endpoint (remembered pairs).
    PairBond(PairBond) = "PAIR_BOND",
    /// Follower → master: the follower's follow/free mode.
    SetFollowMode(FollowModeMsg) = "SET_FOLLOW_MODE",
    /// Master → followers: a temporary, view-only streamed score for the current song.
    StreamPrepare(StreamInfo) = "STREAM_PREPARE",
    /// Master → followers: drop the streamed score.
    StreamClear(StreamClear) = "STREAM_CLEAR",
    /// Heartbeat and clock probe.
    Ping(Ping) = "PING",
    /// Answer to a PING.
    Pong(Pong) = "PONG",
    /// Master → followers: participants that changed (or all of them when `complete`).
    Presence(Presence) = "PRESENCE",
    /// Master → followers: the shared playback/timer state, anchored to the master's clock.
    Playback(Playback) = "PLAYBACK",
    /// Participant → master: asks for a playback change (editor; pause/resume in shared-pause).
    PlaybackRequest(PlaybackOp) = "PLAYBACK_REQUEST",
    /// Master → followers: control mode and editor role.
    Control(Control) = "CONTROL",
    /// Any → master, master → followers: one synced key.
    KeySet(KeyEntry) = "KEY_SET",
    /// Host → participant: the manifest of one transfer round and its transfer index.
    TransferOffer(TransferOffer) = "TRANSFER_OFFER",
    /// Participant → host: the ranges to send (only what is missing).
    TransferRequest(TransferRequest) = "TRANSFER_REQUEST",
    /// Participant → host: every file is held and verified.
    TransferDone(TransferDone) = "TRANSFER_DONE",
    /// Either way: the round stops, with an error code.
    TransferAbort(TransferAbort) = "TRANSFER_ABORT",
}

/// Type-erased payload serialisation, so the encoder needs no per-message code.
mod erased {
    pub trait Payload {
        fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()>;
    }
    impl<T: serde::Serialize> Payload for T {
        fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
            serde_json::to_writer(out, self)
        }
    }
}

/// Why a message could not be encoded. Only local bugs cause these (e.g. a list too long).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message would exceed [`MAX_CONTROL_MESSAGE`].
    #[error("encoded message of {0} bytes exceeds the control-message limit")]
    TooLarge(usize),
    /// Serialisation failed.
    #[error("cannot serialise message: {0}")]
    Serde(String),
}

#[derive(Serialize)]
struct Header<'a> {
    v: u64,
    session_id: &'a str,
    sender_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    ts: u64,
    seq: u64,
}

impl Envelope {
    /// Encodes to the JSON wire form.
    pub fn encode(&self) -> Result<String, EncodeError> {
        let header = Header {
            v: PROTOCOL_VERSION,
            session_id: &self.session_id,
            sender_id: &self.sender_id,
            kind: self.msg.type_name(),
            ts: self.ts,
            seq: self.seq,
        };
        let mut out = serde_json::to_vec(&header).map_err(|e| EncodeError::Serde(e.to_string()))?;
        // Splice the payload in before the closing brace of the header object.
        out.pop();
        out.extend_from_slice(b",\"payload\":");
        self.msg
            .payload()
            .write_json(&mut out)
            .map_err(|e| EncodeError::Serde(e.to_string()))?;
        out.push(b'}');
        if out.len() > MAX_CONTROL_MESSAGE {
            return Err(EncodeError::TooLarge(out.len()));
        }
        // serde_json only writes valid UTF-8.
        String::from_utf8(out).map_err(|e| EncodeError::Serde(e.to_string()))
    }

    /// Decodes and validates one control message. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        if bytes.len() > MAX_CONTROL_MESSAGE {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                limit: MAX_CONTROL_MESSAGE,
            });
        }
        // Phase 1: the header, every field but `v` optional so that a future envelope layout
        // still yields a clear version mismatch; the payload stays raw until its type is known.
        let raw: RawEnvelope = serde_json::from_slice(bytes)?;
        if raw.v != PROTOCOL_VERSION {
            return Err(DecodeError::VersionMismatch { got: raw.v });
        }
        let missing = |field| DecodeError::Malformed(format!("missing field `{field}`"));
        let sender_id = raw.sender_id.ok_or_else(|| missing("sender_id"))?;
        let kind = raw.kind.ok_or_else(|| missing("type"))?;
        let ts = raw.ts.ok_or_else(|| missing("ts"))?;
        let seq = raw.seq.ok_or_else(|| missing("seq"))?;
        check_id("session_id", &raw.session_id, true)?;
        check_id("sender_id", &sender_id, false)?;
        // Phase 2: the payload of that type, parsed and validated.
        let payload = raw.payload.map_or("{}", RawValue::get);
        let msg = Message::decode_payload(&kind, payload)?;
        Ok(Envelope {
            session_id: raw.session_id,
            sender_id,
            ts,
            seq,
            msg,
        })
    }
}

#[derive(Deserialize)]
struct RawEnvelope<'a> {
    v: u64,
    #[serde(default)]
    session_id: String,
    sender_id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    ts: Option<u64>,
    seq: Option<u64>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

/// Checks an identifier: 1..=[`MAX_ID_LEN`] bytes of `A-Z a-z 0-9 _ - . :` (empty allowed when
/// `may_be_empty`).
pub fn check_id(field: &'static str, id: &str, may_be_empty: bool) -> Result<(), DecodeError> {
    if id.is_empty() {
        return if may_be_empty {
            Ok(())
        } else {
            Err(DecodeError::Invalid {
                field,
                reason: "must not be empty",
            })
        };
    }
    if id.len() > MAX_ID_LEN {
        return Err(DecodeError::Invalid {
            field,
            reason: "longer than 64 bytes",
        });
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
    {
        return Err(DecodeError::Invalid {
            field,
            reason: "only A-Z a-z 0-9 _ - . : are allowed",
        });
    }
    Ok(())
}

/// Clamps a display name: control characters removed, truncated to [`MAX_NAME_LEN`] bytes on a
/// character boundary.
pub fn clamp_name(name: &mut String) {
    if name.chars().any(char::is_control) {
        *name = name.chars().filter(|c| !c.is_control()).collect();
    }
    let cut = truncate(name, MAX_NAME_LEN).len();
    name.truncate(cut);
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
