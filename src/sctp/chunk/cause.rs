//! Error causes (RFC 9260 §3.3.10), the contents of ABORT and ERROR chunks: built for what we
//! send, read for what a peer's ABORT says.

use bytes::Bytes;

use super::decode::{padded, params};
use super::encode::{params_len, PARAM_HEADER_LEN};
use super::TYPE_ABORT;

/// Cause code: Unrecognized Chunk Type (the info is the chunk's header and value).
pub const CAUSE_UNRECOGNIZED_CHUNK: u16 = 6;
/// Cause code: User-Initiated Abort (the info is a reason, upper-layer defined).
pub const CAUSE_USER_INITIATED_ABORT: u16 = 12;
/// Cause code: Protocol Violation (the info is a reason).
pub const CAUSE_PROTOCOL_VIOLATION: u16 = 13;

/// One error cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCause<'a> {
    /// Cause code.
    pub code: u16,
    /// Cause-specific information.
    pub info: &'a [u8],
}

/// A cause's info, cut to what its 16-bit length can describe.
fn capped<'a>(c: &ErrorCause<'a>) -> &'a [u8] {
    const MAX_INFO: usize = u16::MAX as usize - PARAM_HEADER_LEN;
    c.info.get(..MAX_INFO).unwrap_or(c.info)
}

/// The causes in order, as the `causes` of [`super::Chunk::Abort`] or the value of
/// [`super::Chunk::Error`]. Each is padded but the last; an info longer than a cause can hold
/// is cut to fit.
pub fn encode_causes(causes: &[ErrorCause<'_>]) -> Bytes {
    let lens = || causes.iter().map(|c| PARAM_HEADER_LEN + capped(c).len());
    let mut out = Vec::with_capacity(params_len(lens()) + 3);
    for c in causes {
        let start = out.len();
        let info = capped(c);
        out.extend_from_slice(&c.code.to_be_bytes());
        out.extend_from_slice(&((PARAM_HEADER_LEN + info.len()) as u16).to_be_bytes());
        out.extend_from_slice(info);
        out.resize(start + padded(out.len() - start), 0);
    }
    out.truncate(params_len(lens()));
    Bytes::from(out)
}

/// The causes a peer sent, up to the first malformed one.
pub fn decode_causes(raw: &[u8]) -> impl Iterator<Item = ErrorCause<'_>> {
    params(raw, TYPE_ABORT)
        .map_while(Result::ok)
        .map(move |(code, range)| ErrorCause {
            code,
            info: raw.get(range).unwrap_or_default(),
        })
}

/// A short human-readable account of a peer's causes, for logs and close reasons: known
/// codes by name, reasons as (lossy) text, at most `max` bytes of text.
pub fn describe_causes(raw: &[u8], max: usize) -> String {
    let mut text = String::new();
    for c in decode_causes(raw) {
        if !text.is_empty() {
            text.push_str("; ");
        }
        match c.code {
            CAUSE_UNRECOGNIZED_CHUNK => text.push_str("unrecognized chunk"),
            CAUSE_USER_INITIATED_ABORT | CAUSE_PROTOCOL_VIOLATION => {
                let name = match c.code {
                    CAUSE_PROTOCOL_VIOLATION => "protocol violation",
                    _ => "user abort",
                };
                text.push_str(name);
                if !c.info.is_empty() {
                    text.push_str(": ");
                    let reason = c.info.get(..max).unwrap_or(c.info);
                    text.extend(
                        String::from_utf8_lossy(reason)
                            .chars()
                            .filter(|ch| !ch.is_control()),
                    );
                }
            }
            code => text.push_str(&format!("cause {code}")),
        }
        if text.len() >= max {
            break;
        }
    }
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}
