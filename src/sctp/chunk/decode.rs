//! Decoding chunks from untrusted bytes: every length is checked before it is used, nothing
//! is indexed unchecked, and DATA payloads are slices of the packet (no copy).

use std::ops::Range;

use bytes::Bytes;

use super::*;

/// Parameter types read here (RFC 9260 §3.3.2–3.3.3, RFC 5061 §4.2.7, RFC 3758 §3.1).
pub(super) const PARAM_HEARTBEAT_INFO: u16 = 1;
pub(super) const PARAM_STATE_COOKIE: u16 = 7;
pub(super) const PARAM_SUPPORTED_EXTENSIONS: u16 = 0x8008;
pub(super) const PARAM_FORWARD_TSN_SUPPORTED: u16 = 0xC000;
/// RE-CONFIG parameter types (RFC 6525 §4).
pub(super) const PARAM_OUTGOING_RESET: u16 = 13;
pub(super) const PARAM_INCOMING_RESET: u16 = 14;
pub(super) const PARAM_RECONFIG_RESPONSE: u16 = 16;

/// DATA flags (RFC 9260 §3.3.1, RFC 7053 §3).
pub(super) const FLAG_END: u8 = 0x01;
pub(super) const FLAG_BEGIN: u8 = 0x02;
pub(super) const FLAG_UNORDERED: u8 = 0x04;
pub(super) const FLAG_IMMEDIATE: u8 = 0x08;
/// The T bit of ABORT and SHUTDOWN COMPLETE (RFC 9260 §3.3.7).
pub(super) const FLAG_REFLECTED: u8 = 0x01;

/// Bytes of the fixed fields of INIT / INIT ACK after the chunk header.
const INIT_FIXED_LEN: usize = 16;
/// Bytes of the fixed fields of SACK after the chunk header.
const SACK_FIXED_LEN: usize = 12;

/// `len` rounded up to a multiple of 4 (RFC 9260 §3.2: chunks and parameters are padded).
pub(super) fn padded(len: usize) -> usize {
    len.saturating_add(3) & !3
}

pub(super) fn u16_at(v: &[u8], at: usize) -> Option<u16> {
    let b: [u8; 2] = v.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(b))
}

fn u32_at(v: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = v.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// The type-length-value parameters of a chunk's value, as (type, value range within `v`).
/// The last parameter's padding may be absent (RFC 9260 §3.2.1).
pub(super) struct Params<'a> {
    v: &'a [u8],
    pos: usize,
    chunk: u8,
}

impl Iterator for Params<'_> {
    type Item = Result<(u16, Range<usize>), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.v.len() {
            return None;
        }
        let header = u16_at(self.v, self.pos).zip(u16_at(self.v, self.pos + 2));
        let end = header.and_then(|(_, len)| {
            let len = usize::from(len);
            let end = self.pos.checked_add(len)?;
            (len >= 4 && end <= self.v.len()).then_some(end)
        });
        let (Some((kind, _)), Some(end)) = (header, end) else {
            self.pos = self.v.len();
            return Some(Err(ChunkError::BadParameter(self.chunk)));
        };
        let value = self.pos + 4..end;
        self.pos = self.pos + padded(end - self.pos);
        Some(Ok((kind, value)))
    }
}

pub(super) fn params(v: &[u8], chunk: u8) -> Params<'_> {
    Params { v, pos: 0, chunk }
}

/// A list of 16-bit stream identifiers filling `v` exactly.
fn streams(v: &[u8], chunk: u8) -> Result<Vec<u16>, ChunkError> {
    if v.len() % 2 != 0 {
        return Err(ChunkError::BadParameter(chunk));
    }
    Ok(v.chunks_exact(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .collect())
}

impl Chunk {
    /// Decodes the chunk at the start of `buf`. Returns it and the bytes it took, padding
    /// included (a final chunk's padding may be missing from `buf`).
    pub fn decode(buf: &Bytes) -> Result<(Chunk, usize), ChunkError> {
        Self::decode_at(buf, 0)
    }

    /// Decodes the chunk starting at offset `at` of `buf`; returns it and the offset just past
    /// it and its padding (at most `buf.len()`).
    pub fn decode_at(buf: &Bytes, at: usize) -> Result<(Chunk, usize), ChunkError> {
        let rest = buf.get(at..).unwrap_or_default();
        let (Some(kind), Some(flags), Some(len)) = (rest.first(), rest.get(1), u16_at(rest, 2))
        else {
            return Err(ChunkError::Truncated);
        };
        let (kind, flags, len) = (*kind, *flags, usize::from(len));
        if len < CHUNK_HEADER_LEN {
            return Err(ChunkError::BadLength(kind));
        }
        let Some(v) = rest.get(CHUNK_HEADER_LEN..len) else {
            return Err(ChunkError::Truncated);
        };
        // Offsets of the value within `buf`, for zero-copy slices.
        let base = at + CHUNK_HEADER_LEN;
        let slice = |r: Range<usize>| buf.slice(base + r.start..base + r.end);
        let short = ChunkError::BadLength(kind);
        let chunk = match kind {
            TYPE_DATA => {
                let fields = (u32_at(v, 0), u16_at(v, 4), u16_at(v, 6), u32_at(v, 8));
                let (Some(tsn), Some(stream), Some(ssn), Some(ppid)) = fields else {
                    return Err(short);
                };
                let header = DATA_HEADER_LEN - CHUNK_HEADER_LEN;
                if v.len() == header {
                    return Err(ChunkError::EmptyData);
                }
                Chunk::Data(Data {
                    tsn,
                    stream,
                    ssn,
                    ppid,
                    unordered: flags & FLAG_UNORDERED != 0,
                    begin: flags & FLAG_BEGIN != 0,
                    end: flags & FLAG_END != 0,
                    immediate: flags & FLAG_IMMEDIATE != 0,
                    payload: slice(header..v.len()),
                })
            }
            TYPE_INIT | TYPE_INIT_ACK => {
                let init = decode_init(v, kind, &slice)?;
                if kind == TYPE_INIT {
                    Chunk::Init(init)
                } else {
                    Chunk::InitAck(init)
                }
            }
            TYPE_SACK => Chunk::Sack(decode_sack(v).ok_or(short)?),
            TYPE_HEARTBEAT | TYPE_HEARTBEAT_ACK => {
                let mut info = None;
                for p in params(v, kind) {
                    let (ptype, range) = p?;
                    if ptype == PARAM_HEARTBEAT_INFO && info.is_none() {
                        info = Some(slice(range));
                    }
                }
                let info = info.ok_or(ChunkError::NoHeartbeatInfo)?;
                if kind == TYPE_HEARTBEAT {
                    Chunk::Heartbeat(info)
                } else {
                    Chunk::HeartbeatAck(info)
                }
            }
            TYPE_ABORT => Chunk::Abort {
                reflected: flags & FLAG_REFLECTED != 0,
                causes: slice(0..v.len()),
            },
            TYPE_SHUTDOWN => Chunk::Shutdown {
                cum_tsn_ack: u32_at(v, 0).ok_or(short)?,
            },
            TYPE_SHUTDOWN_ACK => Chunk::ShutdownAck,
            TYPE_ERROR => Chunk::Error(slice(0..v.len())),
            TYPE_COOKIE_ECHO => Chunk::CookieEcho(slice(0..v.len())),
            TYPE_COOKIE_ACK => Chunk::CookieAck,
            TYPE_SHUTDOWN_COMPLETE => Chunk::ShutdownComplete {
                reflected: flags & FLAG_REFLECTED != 0,
            },
            TYPE_FORWARD_TSN => {
                let new_cum_tsn = u32_at(v, 0).ok_or(short)?;
                let pairs = v.get(4..).unwrap_or_default();
                if pairs.len() % 4 != 0 {
                    return Err(short);
                }
                let streams = pairs
                    .chunks_exact(4)
                    .map(|b| {
                        (
                            u16::from_be_bytes([b[0], b[1]]),
                            u16::from_be_bytes([b[2], b[3]]),
                        )
                    })
                    .collect();
                Chunk::ForwardTsn {
                    new_cum_tsn,
                    streams,
                }
            }
            TYPE_RECONFIG => {
                let mut out = Vec::new();
                for p in params(v, kind) {
                    let (ptype, range) = p?;
                    out.push(decode_reconfig_param(v, ptype, range, &slice)?);
                }
                Chunk::Reconfig(out)
            }
            _ => Chunk::Unknown {
                kind,
                flags,
                value: slice(0..v.len()),
            },
        };
        let next = at.saturating_add(padded(len)).min(buf.len());
        Ok((chunk, next))
    }
}

fn decode_init(
    v: &[u8],
    kind: u8,
    slice: &impl Fn(Range<usize>) -> Bytes,
) -> Result<Init, ChunkError> {
    let fields = (
        u32_at(v, 0),
        u32_at(v, 4),
        u16_at(v, 8),
        u16_at(v, 10),
        u32_at(v, 12),
    );
    let (Some(initiate_tag), Some(a_rwnd), Some(outbound), Some(inbound), Some(initial_tsn)) =
        fields
    else {
        return Err(ChunkError::BadLength(kind));
    };
    let mut init = Init {
        initiate_tag,
        a_rwnd,
        outbound_streams: outbound,
        inbound_streams: inbound,
        initial_tsn,
        ..Init::default()
    };
    let list = v.get(INIT_FIXED_LEN..).unwrap_or_default();
    for p in params(list, kind) {
        let (ptype, range) = p?;
        let value = list.get(range.clone()).unwrap_or_default();
        match ptype {
            PARAM_STATE_COOKIE if init.cookie.is_none() => {
                init.cookie = Some(slice(
                    INIT_FIXED_LEN + range.start..INIT_FIXED_LEN + range.end,
                ));
            }
            PARAM_SUPPORTED_EXTENSIONS => {
                init.reconfig |= value.contains(&TYPE_RECONFIG);
                init.forward_tsn |= value.contains(&TYPE_FORWARD_TSN);
            }
            PARAM_FORWARD_TSN_SUPPORTED => init.forward_tsn = true,
            // Addresses, ECN, authentication, …: not used over DTLS; skipped.
            _ => {}
        }
    }
    // Refuse what could not be encoded again (a cookie within a few bytes of the largest
    // chunk): keeps decode ∘ encode the identity.
    if super::encode::init_len(&init) > usize::from(u16::MAX) {
        return Err(ChunkError::BadParameter(kind));
    }
    Ok(init)
}

fn decode_sack(v: &[u8]) -> Option<Sack> {
    let cum_tsn_ack = u32_at(v, 0)?;
    let a_rwnd = u32_at(v, 4)?;
    let gap_count = usize::from(u16_at(v, 8)?);
    let dup_count = usize::from(u16_at(v, 10)?);
    // The counts must describe exactly the rest of the chunk.
    let rest = v.get(SACK_FIXED_LEN..)?;
    if rest.len() != 4 * (gap_count + dup_count) {
        return None;
    }
    let (gap_bytes, dup_bytes) = rest.split_at(4 * gap_count);
    let gaps = gap_bytes
        .chunks_exact(4)
        .map(|b| GapBlock {
            start: u16::from_be_bytes([b[0], b[1]]),
            end: u16::from_be_bytes([b[2], b[3]]),
        })
        .collect();
    let duplicates = dup_bytes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some(Sack {
        cum_tsn_ack,
        a_rwnd,
        gaps,
        duplicates,
    })
}

fn decode_reconfig_param(
    v: &[u8],
    kind: u16,
    range: Range<usize>,
    slice: &impl Fn(Range<usize>) -> Bytes,
) -> Result<ReconfigParam, ChunkError> {
    let value = v.get(range.clone()).unwrap_or_default();
    let bad = ChunkError::BadParameter(TYPE_RECONFIG);
    Ok(match kind {
        PARAM_OUTGOING_RESET => ReconfigParam::OutgoingReset {
            request_seq: u32_at(value, 0).ok_or(bad)?,
            response_seq: u32_at(value, 4).ok_or(bad)?,
            last_tsn: u32_at(value, 8).ok_or(bad)?,
            streams: streams(value.get(12..).unwrap_or_default(), TYPE_RECONFIG)?,
        },
        PARAM_INCOMING_RESET => ReconfigParam::IncomingReset {
            request_seq: u32_at(value, 0).ok_or(bad)?,
            streams: streams(value.get(4..).unwrap_or_default(), TYPE_RECONFIG)?,
        },
        // The optional next-TSN fields (RFC 6525 §4.4) only matter for stream addition and
        // TSN reset, which we never request: not kept.
        PARAM_RECONFIG_RESPONSE => ReconfigParam::Response {
            response_seq: u32_at(value, 0).ok_or(bad)?,
            result: u32_at(value, 4).ok_or(bad)?,
        },
        _ => ReconfigParam::Other {
            kind,
            value: slice(range),
        },
    })
}
