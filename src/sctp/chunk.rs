//! SCTP chunks (RFC 9260 §3.3, RFC 6525 §3–4, RFC 7053 for the I bit): the types, their
//! encoding ([`Chunk::encode`]) and their decoding from untrusted bytes ([`Chunk::decode`]).

use bytes::Bytes;

mod cause;
mod decode;
mod encode;

pub use cause::{
    decode_causes, describe_causes, encode_causes, ErrorCause, CAUSE_PROTOCOL_VIOLATION,
    CAUSE_UNRECOGNIZED_CHUNK, CAUSE_USER_INITIATED_ABORT,
};
#[cfg(test)]
pub(super) mod tests;

/// Bytes of every chunk's header: type, flags, length (RFC 9260 §3.2).
pub const CHUNK_HEADER_LEN: usize = 4;
/// Bytes of a DATA chunk before its user data: the chunk header, TSN, stream, SSN and PPID.
pub const DATA_HEADER_LEN: usize = 16;

/// Chunk type of DATA.
pub const TYPE_DATA: u8 = 0;
/// Chunk type of INIT.
pub const TYPE_INIT: u8 = 1;
/// Chunk type of INIT ACK.
pub const TYPE_INIT_ACK: u8 = 2;
/// Chunk type of SACK.
pub const TYPE_SACK: u8 = 3;
/// Chunk type of HEARTBEAT.
pub const TYPE_HEARTBEAT: u8 = 4;
/// Chunk type of HEARTBEAT ACK.
pub const TYPE_HEARTBEAT_ACK: u8 = 5;
/// Chunk type of ABORT.
pub const TYPE_ABORT: u8 = 6;
/// Chunk type of SHUTDOWN.
pub const TYPE_SHUTDOWN: u8 = 7;
/// Chunk type of SHUTDOWN ACK.
pub const TYPE_SHUTDOWN_ACK: u8 = 8;
/// Chunk type of ERROR.
pub const TYPE_ERROR: u8 = 9;
/// Chunk type of COOKIE ECHO.
pub const TYPE_COOKIE_ECHO: u8 = 10;
/// Chunk type of COOKIE ACK.
pub const TYPE_COOKIE_ACK: u8 = 11;
/// Chunk type of SHUTDOWN COMPLETE.
pub const TYPE_SHUTDOWN_COMPLETE: u8 = 14;
/// Chunk type of RE-CONFIG (RFC 6525 §3.1).
pub const TYPE_RECONFIG: u8 = 130;
/// Chunk type of FORWARD TSN (RFC 3758 §3.2).
pub const TYPE_FORWARD_TSN: u8 = 192;

/// Why bytes are not a chunk. Any of these drops the whole packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The chunk header, or the length it declares, runs past the end of the packet.
    #[error("chunk truncated")]
    Truncated,
    /// The chunk length is below 4, too short for the type's fixed fields, or disagrees with
    /// the counts inside the chunk (SACK, FORWARD TSN).
    #[error("bad length in chunk type {0}")]
    BadLength(u8),
    /// A DATA chunk without user data (RFC 9260 §3.3.1).
    #[error("DATA chunk without user data")]
    EmptyData,
    /// A parameter shorter than its header, running past the chunk, or with a bad value.
    #[error("bad parameter in chunk type {0}")]
    BadParameter(u8),
    /// A HEARTBEAT or HEARTBEAT ACK without its Heartbeat Info parameter.
    #[error("heartbeat without heartbeat info")]
    NoHeartbeatInfo,
}

/// A DATA chunk (type 0): one fragment of a user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    /// Transmission sequence number.
    pub tsn: u32,
    /// Stream identifier.
    pub stream: u16,
    /// Stream sequence number (ignored for unordered messages).
    pub ssn: u16,
    /// Payload protocol identifier (WebRTC: 51 string, 53 binary, 56/57 empty, 50 DCEP).
    pub ppid: u32,
    /// U bit: delivered as soon as complete, outside the stream's order.
    pub unordered: bool,
    /// B bit: first fragment of a message.
    pub begin: bool,
    /// E bit: last fragment of a message.
    pub end: bool,
    /// I bit (RFC 7053): the sender asks for a SACK without delay.
    pub immediate: bool,
    /// User data (never empty on the wire: RFC 9260 §3.3.1).
    pub payload: Bytes,
}

/// INIT (type 1) and INIT ACK (type 2) share their fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Init {
    /// The tag the peer must put in every packet it sends to us (never 0).
    pub initiate_tag: u32,
    /// Advertised receiver window credit, bytes.
    pub a_rwnd: u32,
    /// Number of outbound streams the sender wants.
    pub outbound_streams: u16,
    /// Most inbound streams the sender accepts.
    pub inbound_streams: u16,
    /// First TSN the sender will use.
    pub initial_tsn: u32,
    /// State Cookie parameter (type 7): INIT ACK only.
    pub cookie: Option<Bytes>,
    /// Forward-TSN-Supported (0xC000) or FORWARD TSN listed in Supported Extensions.
    pub forward_tsn: bool,
    /// RE-CONFIG (130) listed in Supported Extensions (0x8008).
    pub reconfig: bool,
}

/// One gap ack block of a SACK, offsets from the cumulative TSN ack (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapBlock {
    /// First TSN received in the block, as an offset from `cum_tsn_ack`.
    pub start: u16,
    /// Last TSN received in the block, as an offset from `cum_tsn_ack`.
    pub end: u16,
}

/// SACK (type 3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sack {
    /// Highest TSN received with no hole before it.
    pub cum_tsn_ack: u32,
    /// Receiver window credit, bytes.
    pub a_rwnd: u32,
    /// Blocks received past a hole, in increasing order.
    pub gaps: Vec<GapBlock>,
    /// TSNs received more than once since the last SACK.
    pub duplicates: Vec<u32>,
}

/// A parameter of a RE-CONFIG chunk (RFC 6525 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconfigParam {
    /// Outgoing SSN Reset Request (type 13): the sender resets its outgoing streams (for us,
    /// incoming ones) once every TSN up to `last_tsn` has arrived.
    OutgoingReset {
        /// Request sequence number.
        request_seq: u32,
        /// The last response sequence number the sender saw from us.
        response_seq: u32,
        /// The sender's last assigned TSN before the reset.
        last_tsn: u32,
        /// Streams to reset; empty means all.
        streams: Vec<u16>,
    },
    /// Incoming SSN Reset Request (type 14).
    IncomingReset {
        /// Request sequence number.
        request_seq: u32,
        /// Streams to reset; empty means all.
        streams: Vec<u16>,
    },
    /// Re-configuration Response (type 16).
    Response {
        /// The request this answers.
        response_seq: u32,
        /// RFC 6525 §4.4 result (0 success nothing to do, 1 success performed, 2 denied, …).
        result: u32,
    },
    /// Any other parameter, kept to be answered "denied".
    Other {
        /// Parameter type.
        kind: u16,
        /// Parameter value.
        value: Bytes,
    },
}

/// An SCTP chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// DATA (0).
    Data(Data),
    /// INIT (1).
    Init(Init),
    /// INIT ACK (2); `cookie` is set.
    InitAck(Init),
    /// SACK (3).
    Sack(Sack),
    /// HEARTBEAT (4): the Heartbeat Info parameter's value, opaque to the receiver.
    Heartbeat(Bytes),
    /// HEARTBEAT ACK (5): the Heartbeat Info echoed back.
    HeartbeatAck(Bytes),
    /// ABORT (6).
    Abort {
        /// T bit: the verification tag is the receiver's own (reflected).
        reflected: bool,
        /// Error causes, raw.
        causes: Bytes,
    },
    /// SHUTDOWN (7).
    Shutdown {
        /// Cumulative TSN ack.
        cum_tsn_ack: u32,
    },
    /// SHUTDOWN ACK (8).
    ShutdownAck,
    /// ERROR (9): error causes, raw.
    Error(Bytes),
    /// COOKIE ECHO (10): the cookie from the INIT ACK.
    CookieEcho(Bytes),
    /// COOKIE ACK (11).
    CookieAck,
    /// SHUTDOWN COMPLETE (14).
    ShutdownComplete {
        /// T bit, as for ABORT.
        reflected: bool,
    },
    /// FORWARD TSN (192, RFC 3758).
    ForwardTsn {
        /// The new cumulative TSN.
        new_cum_tsn: u32,
        /// (stream, ssn) pairs skipped.
        streams: Vec<(u16, u16)>,
    },
    /// RE-CONFIG (130, RFC 6525).
    Reconfig(Vec<ReconfigParam>),
    /// A chunk type this implementation does not know (what to do is in its top two bits,
    /// RFC 9260 §3.2).
    Unknown {
        /// Chunk type.
        kind: u8,
        /// Chunk flags.
        flags: u8,
        /// Chunk value.
        value: Bytes,
    },
}
