//! The compact invite code: only what ICE and DTLS need, packed in binary.
//!
//! A data-channel-only WebRTC session is fully described, for the other side, by the ICE
//! credentials, the DTLS certificate fingerprint and role, and the candidate addresses. Everything
//! else in the SDP is fixed by the protocol (`m=application 9 UDP/DTLS/SCTP webrtc-datachannel`,
//! `a=sctp-port:5000`, `a=mid:0`, BUNDLE), so the decoder rebuilds it. See
//! PROTOCOL.md §7.1 for the byte layout. This file reads and writes the SDP side; `compact/bytes.rs`
//! the binary form.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sha2::{Digest, Sha256};

use super::{CodeKind, InviteError};

mod bytes;

/// Wire format version carried in the high nibble of the first byte.
pub const VERSION: u8 = 1;
/// Most candidates a compact code carries (the best ones by SDP priority are kept).
pub const MAX_CANDIDATES: usize = 8;
/// Shortest ICE username fragment (RFC 8839 `ice-ufrag` is 4–256 ice-chars).
pub const MIN_UFRAG: usize = 4;
/// Longest ICE username fragment a compact code carries (5-bit length field).
pub const MAX_UFRAG: usize = MIN_UFRAG + 31;
/// Shortest ICE password (RFC 8839 `ice-pwd` is 22–256 ice-chars).
pub const MIN_PWD: usize = 22;
/// Longest ICE password a compact code carries (8-bit length field).
pub const MAX_PWD: usize = 255;
/// Bytes of SHA-256 kept as the checksum.
pub const CHECKSUM_LEN: usize = 2;
/// `a=max-message-size` written when the code does not carry one (RFC 8841 default, and what
/// `webrtc` 0.21 announces by default).
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 65536;
/// The SCTP port every WebRTC stack uses for data channels.
const SCTP_PORT: &str = "5000";

/// Header byte 0 bit: a 4-byte `max-message-size` follows the credentials.
const FLAG_MAX_MESSAGE_SIZE: u8 = 0x01;

/// The DTLS role (`a=setup`) of the side that wrote the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetupRole {
    /// `actpass`: either role (offers).
    ActPass,
    /// `active`: DTLS client.
    Active,
    /// `passive`: DTLS server.
    Passive,
}

impl SetupRole {
    /// The `a=setup` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SetupRole::ActPass => "actpass",
            SetupRole::Active => "active",
            SetupRole::Passive => "passive",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "actpass" => Some(SetupRole::ActPass),
            "active" => Some(SetupRole::Active),
            "passive" => Some(SetupRole::Passive),
            _ => None,
        }
    }

    fn bits(self) -> u8 {
        match self {
            SetupRole::ActPass => 0,
            SetupRole::Active => 1,
            SetupRole::Passive => 2,
        }
    }
}

/// ICE candidate types a compact code can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateType {
    /// A local interface address.
    Host,
    /// An address seen by a STUN server (only with `--ice-server`).
    ServerReflexive,
}

impl CandidateType {
    /// RFC 8445 §5.1.2.2 recommended type preferences.
    fn type_preference(self) -> u32 {
        match self {
            CandidateType::Host => 126,
            CandidateType::ServerReflexive => 100,
        }
    }
}

/// One UDP candidate, component 1 (data channels always use rtcp-mux / one component).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Address and UDP port.
    pub addr: SocketAddr,
    /// Host or server-reflexive.
    pub kind: CandidateType,
}

/// What a compact code carries: everything the other side needs from a data-channel-only SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpEssentials {
    /// `a=ice-ufrag` (4–35 ice-chars).
    pub ufrag: String,
    /// `a=ice-pwd` (22–255 ice-chars).
    pub pwd: String,
    /// The SHA-256 certificate fingerprint (`a=fingerprint:sha-256`), raw.
    pub fingerprint: [u8; 32],
    /// `a=setup`.
    pub setup: SetupRole,
    /// `a=max-message-size` when it is not the 64 KiB default (`None`: 65536).
    pub max_message_size: Option<u32>,
    /// UDP candidates, best first, at most [`MAX_CANDIDATES`].
    pub candidates: Vec<Candidate>,
}

/// Value of an ice-char (`ALPHA / DIGIT / "+" / "/"`), in base64 order.
fn ice_char_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// The ice-char for a 6-bit value.
fn ice_char(v: u8) -> char {
    const CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    CHARS[usize::from(v & 63)] as char
}

fn bad_sdp(msg: impl Into<String>) -> InviteError {
    InviteError::BadSdp(msg.into())
}

fn corrupt(msg: &str) -> InviteError {
    InviteError::Corrupt(msg.to_string())
}

/// Parses `XX:XX:...` (32 hex pairs) into raw bytes.
fn parse_fingerprint_hex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut parts = s.trim().split(':');
    for byte in out.iter_mut() {
        hex::decode_to_slice(parts.next()?, std::slice::from_mut(byte)).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `XX:XX:...` in upper case, as WebRTC stacks write it.
pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    let digits = hex::encode_upper(fp);
    let pairs: Vec<&str> = (0..fp.len()).map(|i| &digits[2 * i..2 * i + 2]).collect();
    pairs.join(":")
}

/// Parses the part of an `a=candidate:` line after the colon. `None` for candidates a compact
/// code does not carry (TCP, mDNS `.local` names, relay, prflx, RTCP component, malformed).
fn parse_candidate(value: &str) -> Option<(u64, Candidate)> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    if f.len() < 8 || f[1] != "1" || !f[2].eq_ignore_ascii_case("udp") || f[6] != "typ" {
        return None;
    }
    let priority: u64 = f[3].parse().ok()?;
    let ip: IpAddr = f[4].parse().ok()?;
    let port: u16 = f[5].parse().ok()?;
    if ip.is_unspecified() || port == 0 {
        return None;
    }
    let kind = match f[7] {
        "host" => CandidateType::Host,
        "srflx" => CandidateType::ServerReflexive,
        _ => return None,
    };
    Some((
        priority,
        Candidate {
            addr: SocketAddr::new(ip, port),
            kind,
        },
    ))
}

/// Sets `slot` to `value`, or fails if an earlier line set a different value.
fn set_once(slot: &mut Option<String>, value: &str, what: &str) -> Result<(), InviteError> {
    match slot {
        Some(old) if old != value => Err(bad_sdp(format!("it has two different {what} values"))),
        _ => {
            *slot = Some(value.to_string());
            Ok(())
        }
    }
}

fn check_ice_chars(s: &str, what: &str, min: usize, max: usize) -> Result<(), InviteError> {
    if s.len() < min || s.len() > max {
        return Err(bad_sdp(format!(
            "{what} is {} characters; a compact code needs {min}–{max}",
            s.len()
        )));
    }
    if !s.bytes().all(|b| ice_char_value(b).is_some()) {
        return Err(bad_sdp(format!(
            "{what} has characters outside A–Z a–z 0–9 + /"
        )));
    }
    Ok(())
}

impl SdpEssentials {
    /// Extracts the essentials from a data-channel-only SDP (as `webrtc` 0.21 or a browser writes
    /// it, with its candidates). Fails if the SDP has anything a compact code cannot rebuild
    /// (media sections, another mid or SCTP port, no SHA-256 fingerprint, no usable candidate).
    pub fn from_sdp(sdp: &str) -> Result<Self, InviteError> {
        let essentials = Self::from_description(sdp)?;
        if essentials.candidates.is_empty() {
            return Err(InviteError::NoCandidates);
        }
        Ok(essentials)
    }

    /// Like [`from_sdp`](Self::from_sdp), but an SDP without a candidate a code can carry is
    /// accepted with an empty list (a browser's mDNS-only candidates: the transport then meets
    /// the peer through its connectivity checks, as a peer-reflexive candidate).
    pub fn from_description(sdp: &str) -> Result<Self, InviteError> {
        let mut lines = sdp.lines().map(|l| l.trim_end_matches('\r'));
        if lines.next().map(str::trim) != Some("v=0") {
            return Err(bad_sdp("it does not start with v=0"));
        }
        let mut ufrag = None;
        let mut pwd = None;
        let mut fingerprint: Option<[u8; 32]> = None;
        let mut setup = None;
        let mut max_message_size = None;
        let mut app_sections = 0;
        let mut candidates: Vec<(u64, Candidate)> = Vec::new();
        for line in lines {
            if let Some(m) = line.strip_prefix("m=") {
                let f: Vec<&str> = m.split_ascii_whitespace().collect();
                if f.first() != Some(&"application") || !f.contains(&"webrtc-datachannel") {
                    return Err(bad_sdp(
                        "it has a media section other than data channels; use the lz form",
                    ));
                }
                app_sections += 1;
                if app_sections > 1 {
                    return Err(bad_sdp("it has more than one data channel section"));
                }
                continue;
            }
            let Some(attr) = line.strip_prefix("a=") else {
                continue;
            };
            let (key, value) = attr.split_once(':').unwrap_or((attr, ""));
            match key {
                "ice-ufrag" => set_once(&mut ufrag, value.trim(), "a=ice-ufrag")?,
                "ice-pwd" => set_once(&mut pwd, value.trim(), "a=ice-pwd")?,
                "fingerprint" => {
                    let (algo, hex) = value.trim().split_once(' ').unwrap_or(("", ""));
                    if algo.eq_ignore_ascii_case("sha-256") {
                        let fp = parse_fingerprint_hex(hex)
                            .ok_or_else(|| bad_sdp("its sha-256 fingerprint is malformed"))?;
                        if fingerprint.is_some_and(|old| old != fp) {
                            return Err(bad_sdp("it has two different sha-256 fingerprints"));
                        }
                        fingerprint = Some(fp);
                    }
                }
                "setup" => {
                    let role = SetupRole::parse(value)
                        .ok_or_else(|| bad_sdp(format!("unknown a=setup:{}", value.trim())))?;
                    if setup.is_some_and(|old| old != role) {
                        return Err(bad_sdp("it has two different a=setup roles"));
                    }
                    setup = Some(role);
                }
                "mid" if value.trim() != "0" => {
                    return Err(bad_sdp(
                        "its data channel section has a mid other than 0; use the lz form",
                    ));
                }
                "sctp-port" if value.trim() != SCTP_PORT => {
                    return Err(bad_sdp("it uses an SCTP port other than 5000"));
                }
                "max-message-size" => {
                    let n: u32 = value
                        .trim()
                        .parse()
                        .map_err(|_| bad_sdp("its a=max-message-size is not a number"))?;
                    max_message_size = Some(n);
                }
                "candidate" => {
                    if let Some(c) = parse_candidate(value) {
                        if !candidates.iter().any(|(_, old)| old.addr == c.1.addr) {
                            candidates.push(c);
                        }
                    }
                }
                _ => {}
            }
        }
        if app_sections == 0 {
            return Err(bad_sdp("it has no data channel section (m=application)"));
        }
        let ufrag = ufrag.ok_or_else(|| bad_sdp("it has no a=ice-ufrag"))?;
        let pwd = pwd.ok_or_else(|| bad_sdp("it has no a=ice-pwd"))?;
        check_ice_chars(&ufrag, "a=ice-ufrag", MIN_UFRAG, MAX_UFRAG)?;
        check_ice_chars(&pwd, "a=ice-pwd", MIN_PWD, MAX_PWD)?;
        let fingerprint = fingerprint.ok_or_else(|| bad_sdp("it has no sha-256 fingerprint"))?;
        let setup = setup.ok_or_else(|| bad_sdp("it has no a=setup"))?;
        // Best first: a stable sort keeps SDP order among equal priorities.
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
        let candidates: Vec<Candidate> = candidates
            .into_iter()
            .take(MAX_CANDIDATES)
            .map(|(_, c)| c)
            .collect();
        Ok(SdpEssentials {
            ufrag,
            pwd,
            fingerprint,
            setup,
            max_message_size: max_message_size.filter(|&n| n != DEFAULT_MAX_MESSAGE_SIZE),
            candidates,
        })
    }

    /// Rebuilds an SDP that `webrtc` 0.21 (and browsers) accept as a remote description for a
    /// data-channel-only session.
    pub fn to_sdp(&self) -> String {
        // A stable session id derived from the certificate, so the same code gives the same SDP.
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.fingerprint[..8]);
        let session_id = u64::from_be_bytes(id) >> 1;
        let fp = fingerprint_hex(&self.fingerprint);
        let mut s = String::with_capacity(700);
        let _ = write!(
            s,
            "v=0\r\n\
             o=- {session_id} 1 IN IP4 0.0.0.0\r\n\
             s=-\r\n\
             t=0 0\r\n\
             a=fingerprint:sha-256 {fp}\r\n\
             a=group:BUNDLE 0\r\n\
             m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
             c=IN IP4 0.0.0.0\r\n\
             a=setup:{setup}\r\n\
             a=mid:0\r\n\
             a=sendrecv\r\n\
             a=sctp-port:{SCTP_PORT}\r\n\
             a=max-message-size:{mms}\r\n\
             a=ice-ufrag:{ufrag}\r\n\
             a=ice-pwd:{pwd}\r\n\
             a=fingerprint:sha-256 {fp}\r\n",
            setup = self.setup.as_str(),
            mms = self.max_message_size.unwrap_or(DEFAULT_MAX_MESSAGE_SIZE),
            ufrag = self.ufrag,
            pwd = self.pwd,
        );
        for (i, c) in self.candidates.iter().enumerate() {
            // RFC 8445 §5.1.2.1 priority with the local preference falling with position, so
            // the order in the code is the order of preference; component 1.
            let local_pref = 65535 - i as u32;
            let priority = c.kind.type_preference() << 24 | local_pref << 8 | 255;
            let (typ, related) = match c.kind {
                CandidateType::Host => ("host", ""),
                CandidateType::ServerReflexive => ("srflx", " raddr 0.0.0.0 rport 0"),
            };
            let _ = write!(
                s,
                "a=candidate:{foundation} 1 udp {priority} {ip} {port} typ {typ}{related}\r\n",
                foundation = i + 1,
                ip = c.addr.ip(),
                port = c.addr.port(),
            );
        }
        s.push_str("a=end-of-candidates\r\n");
        s
    }
}
