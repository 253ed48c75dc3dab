//! Encoding chunks: header, value, padding to 4 bytes (RFC 9260 §3.2). The chunk length field
//! counts neither the chunk's padding nor its last parameter's.

use super::decode::*;
use super::*;

/// Bytes of a parameter's header: type and length.
pub(super) const PARAM_HEADER_LEN: usize = 4;

/// Unpadded lengths of the parameters an INIT / INIT ACK carries, in the order written.
fn init_params(init: &Init) -> [Option<(u16, usize)>; 3] {
    let extensions = usize::from(init.reconfig) + usize::from(init.forward_tsn);
    [
        (extensions > 0).then_some((PARAM_SUPPORTED_EXTENSIONS, PARAM_HEADER_LEN + extensions)),
        init.forward_tsn
            .then_some((PARAM_FORWARD_TSN_SUPPORTED, PARAM_HEADER_LEN)),
        init.cookie
            .as_ref()
            .map(|c| (PARAM_STATE_COOKIE, PARAM_HEADER_LEN + c.len())),
    ]
}

/// The chunk length field of an INIT / INIT ACK.
pub(super) fn init_len(init: &Init) -> usize {
    CHUNK_HEADER_LEN + 16 + params_len(init_params(init).iter().flatten().map(|p| p.1))
}

/// The value length of a list of parameters of these unpadded lengths: every one padded but
/// the last.
pub(super) fn params_len(lens: impl Iterator<Item = usize>) -> usize {
    let mut total = 0;
    let mut last_pad = 0;
    for len in lens {
        total += padded(len);
        last_pad = padded(len) - len;
    }
    total - last_pad
}

fn reconfig_param_len(p: &ReconfigParam) -> usize {
    PARAM_HEADER_LEN
        + match p {
            ReconfigParam::OutgoingReset { streams, .. } => 12 + 2 * streams.len(),
            ReconfigParam::IncomingReset { streams, .. } => 4 + 2 * streams.len(),
            ReconfigParam::Response { .. } => 8,
            ReconfigParam::Other { value, .. } => value.len(),
        }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes a parameter header; the caller writes the value, then [`pad`]s.
fn put_param_header(out: &mut Vec<u8>, kind: u16, len: usize) {
    put_u16(out, kind);
    put_u16(out, len as u16);
}

/// Zero bytes up to the next multiple of 4 from `start`.
fn pad(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    out.resize(start + padded(len), 0);
}

impl Chunk {
    /// The chunk's type code.
    pub fn kind(&self) -> u8 {
        match self {
            Chunk::Data(_) => TYPE_DATA,
            Chunk::Init(_) => TYPE_INIT,
            Chunk::InitAck(_) => TYPE_INIT_ACK,
            Chunk::Sack(_) => TYPE_SACK,
            Chunk::Heartbeat(_) => TYPE_HEARTBEAT,
            Chunk::HeartbeatAck(_) => TYPE_HEARTBEAT_ACK,
            Chunk::Abort { .. } => TYPE_ABORT,
            Chunk::Shutdown { .. } => TYPE_SHUTDOWN,
            Chunk::ShutdownAck => TYPE_SHUTDOWN_ACK,
            Chunk::Error(_) => TYPE_ERROR,
            Chunk::CookieEcho(_) => TYPE_COOKIE_ECHO,
            Chunk::CookieAck => TYPE_COOKIE_ACK,
            Chunk::ShutdownComplete { .. } => TYPE_SHUTDOWN_COMPLETE,
            Chunk::ForwardTsn { .. } => TYPE_FORWARD_TSN,
            Chunk::Reconfig(_) => TYPE_RECONFIG,
            Chunk::Unknown { kind, .. } => *kind,
        }
    }

    fn flags(&self) -> u8 {
        let bit = |set: bool, flag: u8| if set { flag } else { 0 };
        match self {
            Chunk::Data(d) => {
                bit(d.end, FLAG_END)
                    | bit(d.begin, FLAG_BEGIN)
                    | bit(d.unordered, FLAG_UNORDERED)
                    | bit(d.immediate, FLAG_IMMEDIATE)
            }
            Chunk::Abort { reflected, .. } | Chunk::ShutdownComplete { reflected } => {
                bit(*reflected, FLAG_REFLECTED)
            }
            Chunk::Unknown { flags, .. } => *flags,
            _ => 0,
        }
    }

    /// The value of the chunk length field: header and value, without the chunk's padding.
    pub fn unpadded_len(&self) -> usize {
        CHUNK_HEADER_LEN
            + match self {
                Chunk::Data(d) => DATA_HEADER_LEN - CHUNK_HEADER_LEN + d.payload.len(),
                Chunk::Init(i) | Chunk::InitAck(i) => init_len(i) - CHUNK_HEADER_LEN,
                Chunk::Sack(s) => 12 + 4 * (s.gaps.len() + s.duplicates.len()),
                Chunk::Heartbeat(info) | Chunk::HeartbeatAck(info) => PARAM_HEADER_LEN + info.len(),
                Chunk::Abort { causes: b, .. }
                | Chunk::Error(b)
                | Chunk::CookieEcho(b)
                | Chunk::Unknown { value: b, .. } => b.len(),
                Chunk::Shutdown { .. } => 4,
                Chunk::ShutdownAck | Chunk::CookieAck | Chunk::ShutdownComplete { .. } => 0,
                Chunk::ForwardTsn { streams, .. } => 4 + 4 * streams.len(),
                Chunk::Reconfig(params) => params_len(params.iter().map(reconfig_param_len)),
            }
    }

    /// Bytes the chunk takes in a packet, padding included.
    pub fn encoded_len(&self) -> usize {
        padded(self.unpadded_len())
    }

    /// Appends the chunk, padded to a multiple of 4 bytes, to `out`. The caller keeps chunks
    /// below 65 536 bytes (they fit a packet of at most the path MTU); a longer one is a bug
    /// (debug assertion) and its length field would be wrong.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let len = self.unpadded_len();
        debug_assert!(len <= usize::from(u16::MAX), "chunk of {len} bytes");
        out.reserve(padded(len));
        out.push(self.kind());
        out.push(self.flags());
        put_u16(out, len as u16);
        match self {
            Chunk::Data(d) => {
                put_u32(out, d.tsn);
                put_u16(out, d.stream);
                put_u16(out, d.ssn);
                put_u32(out, d.ppid);
                out.extend_from_slice(&d.payload);
            }
            Chunk::Init(i) | Chunk::InitAck(i) => encode_init(out, i),
            Chunk::Sack(s) => {
                put_u32(out, s.cum_tsn_ack);
                put_u32(out, s.a_rwnd);
                put_u16(out, s.gaps.len() as u16);
                put_u16(out, s.duplicates.len() as u16);
                for g in &s.gaps {
                    put_u16(out, g.start);
                    put_u16(out, g.end);
                }
                for d in &s.duplicates {
                    put_u32(out, *d);
                }
            }
            Chunk::Heartbeat(info) | Chunk::HeartbeatAck(info) => {
                put_param_header(out, PARAM_HEARTBEAT_INFO, PARAM_HEADER_LEN + info.len());
                out.extend_from_slice(info);
            }
            Chunk::Abort { causes: b, .. }
            | Chunk::Error(b)
            | Chunk::CookieEcho(b)
            | Chunk::Unknown { value: b, .. } => out.extend_from_slice(b),
            Chunk::Shutdown { cum_tsn_ack } => put_u32(out, *cum_tsn_ack),
            Chunk::ShutdownAck | Chunk::CookieAck | Chunk::ShutdownComplete { .. } => {}
            Chunk::ForwardTsn {
                new_cum_tsn,
                streams,
            } => {
                put_u32(out, *new_cum_tsn);
                for (stream, ssn) in streams {
                    put_u16(out, *stream);
                    put_u16(out, *ssn);
                }
            }
            Chunk::Reconfig(params) => {
                for p in params {
                    encode_reconfig_param(out, p);
                }
            }
        }
        pad(out, start);
    }
}

fn encode_init(out: &mut Vec<u8>, init: &Init) {
    put_u32(out, init.initiate_tag);
    put_u32(out, init.a_rwnd);
    put_u16(out, init.outbound_streams);
    put_u16(out, init.inbound_streams);
    put_u32(out, init.initial_tsn);
    for (kind, len) in init_params(init).into_iter().flatten() {
        let start = out.len();
        put_param_header(out, kind, len);
        match kind {
            PARAM_SUPPORTED_EXTENSIONS => {
                if init.reconfig {
                    out.push(TYPE_RECONFIG);
                }
                if init.forward_tsn {
                    out.push(TYPE_FORWARD_TSN);
                }
            }
            PARAM_STATE_COOKIE => out.extend_from_slice(init.cookie.as_deref().unwrap_or(&[])),
            _ => {}
        }
        pad(out, start);
    }
}

fn encode_reconfig_param(out: &mut Vec<u8>, p: &ReconfigParam) {
    let start = out.len();
    let len = reconfig_param_len(p);
    match p {
        ReconfigParam::OutgoingReset {
            request_seq,
            response_seq,
            last_tsn,
            streams,
        } => {
            put_param_header(out, PARAM_OUTGOING_RESET, len);
            put_u32(out, *request_seq);
            put_u32(out, *response_seq);
            put_u32(out, *last_tsn);
            streams.iter().for_each(|s| put_u16(out, *s));
        }
        ReconfigParam::IncomingReset {
            request_seq,
            streams,
        } => {
            put_param_header(out, PARAM_INCOMING_RESET, len);
            put_u32(out, *request_seq);
            streams.iter().for_each(|s| put_u16(out, *s));
        }
        ReconfigParam::Response {
            response_seq,
            result,
        } => {
            put_param_header(out, PARAM_RECONFIG_RESPONSE, len);
            put_u32(out, *response_seq);
            put_u32(out, *result);
        }
        ReconfigParam::Other { kind, value } => {
            put_param_header(out, *kind, len);
            out.extend_from_slice(value);
        }
    }
    pad(out, start);
}
