//! Invite and answer codes for solo pairing, where no network service exists: device A shows an
//! invite code (text and QR) for its SDP offer, B pastes or scans it and shows an answer code, A
//! pastes that back.
//!
//! Two formats are written and read (PROTOCOL.md §7 is the normative description):
//!
//! - **Compact** (`LS:` + base45): only what ICE and DTLS need (ICE ufrag/pwd, the SHA-256 DTLS
//!   fingerprint, the DTLS role, up to 8 UDP candidates) in binary with a 2-byte checksum; 99
//!   characters for one LAN candidate when the transport uses 4/22-character ICE credentials, all
//!   in the QR alphanumeric set, so it fits a small QR code. The decoder rebuilds a
//!   data-channel-only SDP. `LS.` + base64url is the same bytes in a URL-safe form.
//! - **lz** (`lz-string` `compressToEncodedURIComponent` of `{"t":"offer","s":"<sdp>"}`): what
//!   the JavaScript apps of this family exchange; the whole SDP, 700 characters and more.
//!
//! [`decode`] takes either (also a raw SDP compressed with lz-string, and a URL holding a code),
//! and never panics: every way a code can be wrong is an [`InviteError`] that tells a person what
//! happened. This module is pure (no IO) and builds for `wasm32-unknown-unknown`.

mod base45;
mod base64url;
pub mod compact;
pub mod join_link;
pub mod lz;
#[cfg(feature = "native")]
pub mod qr;

use std::fmt;

pub use compact::{Candidate, CandidateType, SdpEssentials, SetupRole};
pub use join_link::{is_page_url, JoinLink};

/// Prefix of a compact code in its QR/text form (base45 follows). Only QR alphanumeric
/// characters, and `:` never occurs in lz-string output, so the formats cannot be confused.
pub const COMPACT_PREFIX: &str = "LS:";
/// Prefix of a compact code in its URL form (unpadded base64url follows). `.` never occurs in
/// lz-string output.
pub const COMPACT_URL_PREFIX: &str = "LS.";
/// Longest code text [`decode`] looks at, in bytes (an lz code of a 64 KiB SDP fits).
pub const MAX_CODE_BYTES: usize = 128 * 1024;
/// Longest SDP accepted, in bytes (and lz-decompressed text, in UTF-16 units).
pub const MAX_SDP_LEN: usize = lz::MAX_DECOMPRESSED_UNITS;
/// URL scheme and path of [`pair_url`].
pub const PAIR_URL_BASE: &str = "lansync://pair?c=";

/// Whether a code carries an offer (the invite) or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeKind {
    /// The invite: the SDP offer of the device that starts pairing.
    Offer,
    /// The reply: the SDP answer of the device that was invited.
    Answer,
}

impl CodeKind {
    /// `"offer"` or `"answer"`, as in the JSON form and in SDP type names.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Offer => "offer",
            CodeKind::Answer => "answer",
        }
    }
}

impl fmt::Display for CodeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decoded code: its kind and an SDP ready to be set as the remote description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// Offer or answer.
    pub kind: CodeKind,
    /// The SDP: the sender's own (lz form) or rebuilt from the essentials (compact form).
    pub sdp: String,
}

/// Which format a code text is in, as [`decode`] detects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeFormat {
    /// `LS:` + base45.
    Compact,
    /// `LS.` + base64url.
    CompactUrl,
    /// lz-string `compressToEncodedURIComponent` (JSON wrapper or raw SDP inside).
    Lz,
    /// Not encoded at all: an SDP (`v=0…`) or its JSON wrapper (`{…}`) pasted as it is.
    Plain,
}

/// Everything that can be wrong with a code, each with a message for the person holding it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InviteError {
    /// Nothing but whitespace was given.
    #[error("the code is empty: paste or scan the whole code")]
    Empty,
    /// The code ends too early (part of it was not copied).
    #[error("the code is cut short: part of it is missing, copy all of it")]
    Truncated,
    /// The compact code's checksum does not match: a typo or a changed character.
    #[error("the code has a typo or was changed (its checksum does not match)")]
    BadChecksum,
    /// A compact code of a format version this build does not know.
    #[error("the code uses format version {0}, which this lansync does not know; update lansync on both devices")]
    UnsupportedVersion(u8),
    /// An answer code was given where an invite (offer) was expected.
    #[error("this is an answer code, but an invite code was expected here")]
    NotAnOffer,
    /// An invite (offer) code was given where an answer was expected.
    #[error("this is an invite code, but an answer code was expected here (give it to the other device)")]
    NotAnAnswer,
    /// A character that cannot occur in the detected format.
    #[error("character {ch:?} at position {position} cannot appear in this code")]
    BadCharacter {
        /// The character.
        ch: char,
        /// Its position in the code, counted in characters from 0.
        position: usize,
    },
    /// The SDP (given to an encoder, or found inside a code) cannot be used.
    #[error("the session description cannot be used: {0}")]
    BadSdp(String),
    /// The code, or what it decompresses to, is larger than any real session description.
    #[error("the code is too large to be an invite (limits: {MAX_CODE_BYTES} bytes of code, {MAX_SDP_LEN} characters of session description)")]
    TooLarge,
    /// The SDP lists no address to connect to.
    #[error("the session description has no usable network address (ICE candidate); the device that made it found no LAN address")]
    NoCandidates,
    /// The code is well-formed text but its content is inconsistent.
    #[error("the code is damaged: {0}")]
    Corrupt(String),
    /// lz-string text that decompresses to JSON of the wrong shape.
    #[error("the code's content is not an invite: {0}")]
    BadJson(String),
    /// A URL without a code in its `c`/`code` parameter or fragment.
    #[error("the link has no code in it (expected …?c=CODE or …#CODE)")]
    NoCodeInUrl,
}

/// Encodes a data-channel-only SDP as a compact code, `LS:` + base45 (QR alphanumeric mode).
///
/// The SDP must have ICE credentials (ufrag 4–35 and pwd 22–255 ice-chars), a SHA-256
/// fingerprint, `a=setup`, mid `0`, SCTP port 5000, no media sections, and at least one UDP host
/// or srflx candidate with an IP address (mDNS `.local` candidates are dropped). Use
/// [`encode_lz`] for anything else.
pub fn encode_compact(kind: CodeKind, sdp: &str) -> Result<String, InviteError> {
    let bytes = compact_bytes(kind, sdp)?;
    Ok(format!("{COMPACT_PREFIX}{}", base45::encode(&bytes)))
}

/// The same code as [`encode_compact`] in its URL-safe form, `LS.` + unpadded base64url (no
/// character needs escaping in a URL path, query or fragment; shorter, but not QR-alphanumeric).
pub fn encode_compact_url(kind: CodeKind, sdp: &str) -> Result<String, InviteError> {
    let bytes = compact_bytes(kind, sdp)?;
    Ok(format!("{COMPACT_URL_PREFIX}{}", base64url::encode(&bytes)))
}

fn compact_bytes(kind: CodeKind, sdp: &str) -> Result<Vec<u8>, InviteError> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(InviteError::TooLarge);
    }
    SdpEssentials::from_sdp(sdp)?.to_bytes(kind)
}

/// The JSON wrapper JS apps compress: keys in this order, as `JSON.stringify` writes them.
#[derive(serde::Serialize)]
struct Wire<'a> {
    t: &'a str,
    s: &'a str,
}

/// Encodes an SDP the way the JavaScript apps do: lz-string `compressToEncodedURIComponent` of
/// `{"t":"offer"|"answer","s":"<sdp>"}`. Carries the SDP unchanged; any SDP works.
pub fn encode_lz(kind: CodeKind, sdp: &str) -> String {
    let json = serde_json::to_string(&Wire {
        t: kind.as_str(),
        s: sdp,
    })
    // Serializing two strings cannot fail; fall back to an empty object rather than panic.
    .unwrap_or_else(|_| String::from("{}"));
    lz::compress_to_encoded_uri_component(&json)
}

/// Builds `lansync://pair?c=<code>` with the code percent-encoded (every character but
/// `A–Z a–z 0–9 - . _ ~`), so base45 codes survive URL handling. [`decode`] accepts it.
pub fn pair_url(code: &str) -> String {
    let mut url = String::from(PAIR_URL_BASE);
    url.push_str(&percent_encode(code.trim()));
    url
}

/// Percent-encodes every byte outside the URL unreserved set (`A–Z a–z 0–9 - . _ ~`).
pub fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

/// Fails with [`InviteError::NotAnOffer`] or [`InviteError::NotAnAnswer`] unless the invite is
/// of the expected kind.
pub fn expect_kind(invite: &Invite, kind: CodeKind) -> Result<(), InviteError> {
    match (kind, invite.kind) {
        (CodeKind::Offer, CodeKind::Answer) => Err(InviteError::NotAnOffer),
        (CodeKind::Answer, CodeKind::Offer) => Err(InviteError::NotAnAnswer),
        _ => Ok(()),
    }
}

/// Which format [`decode`] reads `code` as (after trimming and taking it out of a URL); useful
/// to answer in the format the invite came in.
pub fn code_format(code: &str) -> Result<CodeFormat, InviteError> {
    if plain(code)?.is_some() {
        return Ok(CodeFormat::Plain);
    }
    let code = clean(code)?;
    Ok(detect(&code).0)
}

/// Decodes any code: compact (`LS:` base45, `LS.` base64url, prefix in either case), lz-string
/// (JSON `{"t","s"}` or `{"type","sdp"}` wrapper, or a raw SDP, whose kind is then read from
/// `a=setup`: `actpass` is an offer), or a URL holding one of them in its `c`/`code` query
/// parameter or its fragment. Surrounding whitespace and line breaks inside are ignored. An
/// SDP or JSON wrapper pasted without any encoding is accepted too.
pub fn decode(code: &str) -> Result<Invite, InviteError> {
    if let Some(text) = plain(code)? {
        return lz_invite(text);
    }
    let code = clean(code)?;
    let (format, payload_at) = detect(&code);
    let payload = &code[payload_at..];
    let offset = code[..payload_at].chars().count();
    let at = |position: usize| position + offset;
    match format {
        CodeFormat::Compact => {
            // base45 has no lower-case letters: accept a code a person retyped in lower case.
            let upper = payload.to_ascii_uppercase();
            let bytes = base45::decode(&upper).map_err(|e| match e {
                base45::Base45Error::BadCharacter { ch, position } => InviteError::BadCharacter {
                    ch,
                    position: at(position),
                },
                base45::Base45Error::Truncated => InviteError::Truncated,
                base45::Base45Error::BadGroup { position } => InviteError::Corrupt(format!(
                    "the characters at position {} are not a valid base45 group",
                    at(position)
                )),
            })?;
            compact_invite(&bytes)
        }
        CodeFormat::CompactUrl => {
            let bytes = base64url::decode(payload).map_err(|e| match e {
                base64url::Base64Error::BadCharacter { ch, position } => {
                    InviteError::BadCharacter {
                        ch,
                        position: at(position),
                    }
                }
                base64url::Base64Error::Truncated => InviteError::Truncated,
                base64url::Base64Error::BadPadding => {
                    InviteError::Corrupt("its last character has stray bits".into())
                }
            })?;
            compact_invite(&bytes)
        }
        CodeFormat::Lz => {
            let text = lz::decompress_from_encoded_uri_component(payload).map_err(|e| match e {
                lz::LzError::Empty => InviteError::Empty,
                lz::LzError::BadCharacter { ch, position } => InviteError::BadCharacter {
                    ch,
                    position: at(position),
                },
                lz::LzError::Truncated => InviteError::Truncated,
                lz::LzError::BadCode => {
                    InviteError::Corrupt("it refers to data that does not exist".into())
                }
                lz::LzError::TooLarge => InviteError::TooLarge,
                lz::LzError::BadUtf16 => {
                    InviteError::Corrupt("it decompresses to invalid text".into())
                }
            })?;
            lz_invite(&text)
        }
        // detect() never returns it: plain text was handled before clean().
        CodeFormat::Plain => lz_invite(payload),
    }
}

fn compact_invite(bytes: &[u8]) -> Result<Invite, InviteError> {
    let (kind, essentials) = SdpEssentials::from_bytes(bytes)?;
    Ok(Invite {
        kind,
        sdp: essentials.to_sdp(),
    })
}

/// Reads what an lz code decompressed to.
fn lz_invite(text: &str) -> Result<Invite, InviteError> {
    if text.trim_start().starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| InviteError::BadJson(e.to_string()))?;
        let field = |a: &str, b: &str| {
            value
                .get(a)
                .or_else(|| value.get(b))
                .and_then(serde_json::Value::as_str)
        };
        let kind = match field("t", "type") {
            Some("offer") => CodeKind::Offer,
            Some("answer") => CodeKind::Answer,
            Some(other) => {
                return Err(InviteError::BadJson(format!(
                    "its type {other:?} is neither \"offer\" nor \"answer\""
                )))
            }
            None => return Err(InviteError::BadJson("it has no \"t\" (type) field".into())),
        };
        let sdp = field("s", "sdp")
            .ok_or_else(|| InviteError::BadJson("it has no \"s\" (SDP) field".into()))?;
        check_sdp(sdp)?;
        return Ok(Invite {
            kind,
            sdp: sdp.to_string(),
        });
    }
    check_sdp(text)?;
    // A bare SDP carries no type; an offer is the side that leaves the DTLS role open.
    let setup = text
        .lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix("a=setup:"))
        .map(str::trim);
    let kind = match setup {
        Some("actpass") => CodeKind::Offer,
        Some("active") | Some("passive") => CodeKind::Answer,
        _ => {
            return Err(InviteError::BadSdp(
                "it has no a=setup line to tell an offer from an answer".into(),
            ))
        }
    };
    Ok(Invite {
        kind,
        sdp: text.to_string(),
    })
}

/// The checks an SDP from an lz code must pass before it is handed to WebRTC: an SDP at all,
/// and candidates in it (pairing is non-trickle: there is no later chance to send them).
fn check_sdp(sdp: &str) -> Result<(), InviteError> {
    if sdp.len() > MAX_SDP_LEN {
        return Err(InviteError::TooLarge);
    }
    if sdp.lines().next().map(|l| l.trim_end_matches('\r')) != Some("v=0") {
        return Err(InviteError::BadSdp("it does not start with v=0".into()));
    }
    if let Some(c) = sdp
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'))
    {
        return Err(InviteError::BadSdp(format!(
            "it contains the control character {c:?}"
        )));
    }
    if !sdp.lines().any(|l| l.starts_with("m=")) {
        return Err(InviteError::BadSdp("it has no media section (m=)".into()));
    }
    if !sdp.lines().any(|l| l.starts_with("a=candidate:")) {
        return Err(InviteError::NoCandidates);
    }
    Ok(())
}

/// An unencoded SDP or JSON wrapper (neither `v` followed by `=` nor `{` can start a code of the
/// other formats), with leading whitespace dropped and its line breaks kept.
fn plain(code: &str) -> Result<Option<&str>, InviteError> {
    if code.len() > MAX_CODE_BYTES {
        return Err(InviteError::TooLarge);
    }
    let text = code.trim_start();
    Ok((text.starts_with("v=") || text.starts_with('{')).then_some(text))
}

/// Trims, bounds the size, takes the code out of a URL, and drops line breaks and tabs inside
/// (a code wrapped over lines). Spaces inside are kept: they are base45 characters.
fn clean(code: &str) -> Result<String, InviteError> {
    if code.len() > MAX_CODE_BYTES {
        return Err(InviteError::TooLarge);
    }
    let code = code.trim();
    if code.is_empty() {
        return Err(InviteError::Empty);
    }
    let code = if has_prefix(code, COMPACT_PREFIX) || has_prefix(code, COMPACT_URL_PREFIX) {
        code.to_string()
    } else if looks_like_url(code) {
        from_url(code)?
    } else {
        code.to_string()
    };
    let code: String = code
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\t'))
        .collect();
    let code = code.trim();
    if code.is_empty() {
        return Err(InviteError::Empty);
    }
    Ok(code.to_string())
}

fn has_prefix(code: &str, prefix: &str) -> bool {
    code.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// Returns the format and the byte index where its payload starts.
fn detect(code: &str) -> (CodeFormat, usize) {
    if has_prefix(code, COMPACT_PREFIX) {
        (CodeFormat::Compact, COMPACT_PREFIX.len())
    } else if has_prefix(code, COMPACT_URL_PREFIX) {
        (CodeFormat::CompactUrl, COMPACT_URL_PREFIX.len())
    } else {
        (CodeFormat::Lz, 0)
    }
}

/// `?`, `#` and `:` never occur in lz-string text, so any of them (outside a compact code) means
/// a URL.
fn looks_like_url(code: &str) -> bool {
    code.contains(['?', '#', ':'])
}

/// Takes the code out of a URL: the fragment if there is one (`…#CODE` or `…#c=CODE`), else the
/// `c` or `code` query parameter; percent-decoded.
fn from_url(url: &str) -> Result<String, InviteError> {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (url, None),
    };
    let raw = fragment
        .map(|f| {
            if f.contains('=') {
                code_param(f).unwrap_or("")
            } else {
                f
            }
        })
        .filter(|f| !f.is_empty())
        .or_else(|| {
            before_fragment
                .split_once('?')
                .and_then(|(_, q)| code_param(q))
                .filter(|v| !v.is_empty())
        })
        .ok_or(InviteError::NoCodeInUrl)?;
    percent_decode(raw)
}

/// The value of the `c` or `code` parameter in `a=1&c=CODE`.
fn code_param(params: &str) -> Option<&str> {
    params.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        matches!(k, "c" | "code").then_some(v)
    })
}

/// Decodes `%XX` escapes; `+` stays `+` (it is a base45 and lz-string character).
fn percent_decode(text: &str) -> Result<String, InviteError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let mut byte = [0u8];
            bytes
                .get(i + 1..i + 3)
                .and_then(|h| hex::decode_to_slice(h, &mut byte).ok())
                .ok_or_else(|| {
                    InviteError::Corrupt(format!("the link has a broken %-escape at byte {i}"))
                })?;
            out.push(byte[0]);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| InviteError::Corrupt("the link's %-escapes are not valid UTF-8".into()))
}

#[cfg(test)]
mod tests;
