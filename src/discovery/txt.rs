//! The TXT record of a session advert (PROTOCOL.md §10.1) and its instance name: what a master
//! publishes, and the checks of what a browser reads. Pure: no mdns-sd type here, so every rule
//! is unit-tested without a network; the actor (`actor.rs`) carries it to and from the daemon.

use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::DiscoveryError;
use crate::protocol::{clamp_name, PROTOCOL_VERSION};
use crate::session::SessionCode;

/// The DNS-SD service type of a lansync master's signaling endpoint.
pub const SERVICE_TYPE: &str = "_lansync._tcp.local.";
/// TXT key: the session code, `XXXX-XXXX`.
pub const TXT_CODE: &str = "code";
/// TXT key: the session name (display string, at most 48 bytes).
pub const TXT_NAME: &str = "name";
/// TXT key: the protocol version, decimal.
pub const TXT_VERSION: &str = "v";
/// TXT key: the fingerprint hash, 16 lower-case hex digits.
pub const TXT_FINGERPRINT: &str = "fp";
/// TXT key: the signaling port, decimal (the SRV port is authoritative).
pub const TXT_PORT: &str = "port";
/// Length of a fingerprint hash in hex digits (the first 8 bytes of a SHA-256).
pub const FINGERPRINT_HASH_LEN: usize = 16;
/// Longest TXT value read from the network; a longer one makes the advert malformed (the name
/// alone is clamped, since a long name is harmless).
const MAX_TXT_VALUE: usize = 64;
/// Longest session name read before clamping; beyond it the advert is treated as garbage.
const MAX_TXT_NAME: usize = 250;
/// Most addresses kept for one session.
const MAX_ADDRS: usize = 16;
/// Longest instance full name accepted (a DNS name is at most 255 bytes).
const MAX_INSTANCE_LEN: usize = 255;

/// TXT key/value pairs as published.
pub(super) type TxtProps = Vec<(&'static str, String)>;

/// What a master publishes about its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAdvert {
    /// The human session code, `XXXX-XXXX` (any spelling [`SessionCode::parse`] accepts).
    pub session_code: String,
    /// The session's display name; clamped to 48 bytes.
    pub session_name: String,
    /// The protocol version the master speaks, normally [`PROTOCOL_VERSION`].
    pub protocol_version: u64,
    /// [`fingerprint_hash`] of the master's DTLS fingerprint: 16 hex digits.
    pub fingerprint_hash: String,
    /// The TCP port of the master's signaling endpoint.
    pub port: u16,
}

impl SessionAdvert {
    /// A version-1 advert for this build's protocol version.
    pub fn new(session_code: &str, session_name: &str, fingerprint: &str, port: u16) -> Self {
        SessionAdvert {
            session_code: session_code.into(),
            session_name: session_name.into(),
            protocol_version: PROTOCOL_VERSION,
            fingerprint_hash: fingerprint_hash(fingerprint),
            port,
        }
    }

    /// The normalised code and the TXT properties, or why the advert cannot be published.
    pub(super) fn to_txt(&self) -> Result<(SessionCode, TxtProps), DiscoveryError> {
        let code = SessionCode::parse(&self.session_code)
            .ok_or_else(|| DiscoveryError::InvalidAdvert("session code is not XXXX-XXXX".into()))?;
        let fp = self.fingerprint_hash.to_ascii_lowercase();
        if !is_fingerprint_hash(&fp) {
            return Err(DiscoveryError::InvalidAdvert(
                "fingerprint hash is not 16 hex digits".into(),
            ));
        }
        if self.port == 0 {
            return Err(DiscoveryError::InvalidAdvert("port 0".into()));
        }
        let mut name = self.session_name.clone();
        clamp_name(&mut name);
        let txt = vec![
            (TXT_VERSION, self.protocol_version.to_string()),
            (TXT_CODE, code.as_str().to_string()),
            (TXT_NAME, name),
            (TXT_FINGERPRINT, fp),
            (TXT_PORT, self.port.to_string()),
        ];
        Ok((code, txt))
    }
}

/// A session seen on the LAN, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoveredSession {
    /// The DNS-SD instance full name, e.g. `lansync-ABCD-EFGH._lansync._tcp.local.`: the key
    /// that a later [`DiscoveryEvent::Lost`](super::DiscoveryEvent::Lost) names.
    pub instance: String,
    /// The session code, normalised to `XXXX-XXXX`.
    pub session_code: String,
    /// The session name, clamped (control characters removed, at most 48 bytes).
    pub session_name: String,
    /// The master's protocol version; may differ from [`PROTOCOL_VERSION`] (show "update").
    pub protocol_version: u64,
    /// First 16 hex digits (lower case) of SHA-256 of the master's DTLS fingerprint.
    pub fingerprint_hash: String,
    /// The master's addresses, never empty: IPv4 first, loopback and link-local last; at most
    /// 16. IPv6 link-local addresses are left out (they need a scope `IpAddr` cannot carry).
    pub addrs: Vec<IpAddr>,
    /// The signaling port.
    pub port: u16,
}

impl DiscoveredSession {
    /// Whether this build can join it (same protocol version).
    pub fn is_compatible(&self) -> bool {
        self.protocol_version == PROTOCOL_VERSION
    }

    /// Whether the master's DTLS fingerprint (as in SDP, `"sha-256 AB:CD:…"`) matches the hash
    /// advertised. The hash is only a hint for picking the right master: the full fingerprint
    /// from the QR/invite or the signaling answer is what authenticates the link.
    pub fn matches_fingerprint(&self, fingerprint: &str) -> bool {
        fingerprint_hash(fingerprint) == self.fingerprint_hash
    }
}

/// The fingerprint hash advertised in TXT `fp`: the first 16 hex digits (lower case) of SHA-256
/// over the ASCII bytes of the master's DTLS certificate fingerprint in canonical form: lower-case
/// hex digits, no colons, no algorithm name (the join link's `f` form). Any spelling is accepted
/// and canonicalised first: `"sha-256 AB:CD:…"` as in SDP, `"AB:CD:…"` or `"abcd…"`.
pub fn fingerprint_hash(fingerprint: &str) -> String {
    let mut fp = fingerprint.trim();
    // `get` rather than slicing: the input may have a multi-byte character at byte 8.
    if let (Some(algo), Some(rest)) = (fp.get(..8), fp.get(8..)) {
        if algo.eq_ignore_ascii_case("sha-256 ") {
            fp = rest.trim_start();
        }
    }
    let canonical: String = fp
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let digest = Sha256::digest(canonical.as_bytes());
    hex::encode(&digest[..FINGERPRINT_HASH_LEN / 2])
}

fn is_fingerprint_hash(s: &str) -> bool {
    s.len() == FINGERPRINT_HASH_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a decimal TXT number strictly: ASCII digits only, no sign, no spaces, fits in `u64`.
fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Builds a session from what was resolved for `instance`, or says why the advert is ignored.
/// `txt(key)` returns the raw value of a TXT key (`None` when absent or value-less).
/// Pure, so the rules are unit-tested without a network.
pub(super) fn parse_advert<'a>(
    instance: &str,
    srv_port: u16,
    addrs: impl IntoIterator<Item = IpAddr>,
    txt: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<DiscoveredSession, &'static str> {
    if instance.is_empty() || instance.len() > MAX_INSTANCE_LEN {
        return Err("instance name length");
    }
    let value = |key: &str| -> Result<&'a [u8], &'static str> {
        let v = txt(key).ok_or("missing TXT key")?;
        if v.len() > MAX_TXT_VALUE {
            return Err("TXT value too long");
        }
        Ok(v)
    };
    let protocol_version = parse_decimal(value(TXT_VERSION)?).ok_or("bad version")?;
    let code = std::str::from_utf8(value(TXT_CODE)?).map_err(|_| "code not UTF-8")?;
    let session_code = SessionCode::parse(code).ok_or("bad session code")?;
    let fp = std::str::from_utf8(value(TXT_FINGERPRINT)?)
        .map_err(|_| "fingerprint not UTF-8")?
        .to_ascii_lowercase();
    if !is_fingerprint_hash(&fp) {
        return Err("bad fingerprint hash");
    }
    // A missing name is harmless (shown empty); an absurdly long one is garbage.
    let raw_name = txt(TXT_NAME).unwrap_or_default();
    if raw_name.len() > MAX_TXT_NAME {
        return Err("name too long");
    }
    let mut session_name = String::from_utf8_lossy(raw_name).into_owned();
    clamp_name(&mut session_name);
    // The SRV port is authoritative; TXT `port` helps resolvers that only hand out TXT.
    let port = match srv_port {
        0 => txt(TXT_PORT)
            .and_then(parse_decimal)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or("no port")?,
        p => p,
    };
    // An IPv6 link-local address is useless without its scope (interface), which `IpAddr`
    // does not carry, so it is dropped.
    let mut addrs: Vec<IpAddr> = addrs
        .into_iter()
        .filter(|a| !a.is_unspecified() && !a.is_multicast())
        .filter(|a| !(a.is_ipv6() && is_link_local(a)))
        .collect();
    if addrs.is_empty() {
        // Not resolved yet (mdns-sd may report the link-local IPv6 address first).
        return Err("no usable address");
    }
    // Most useful first: a follower dials the first address that answers.
    addrs.sort_by_key(|a| (a.is_loopback(), is_link_local(a), a.is_ipv6(), *a));
    addrs.dedup();
    addrs.truncate(MAX_ADDRS);
    Ok(DiscoveredSession {
        instance: instance.to_string(),
        session_code: session_code.as_str().to_string(),
        session_name,
        protocol_version,
        fingerprint_hash: fp,
        addrs,
        port,
    })
}

fn is_link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The instance label of the session `code`: `lansync-XXXX-XXXX`, one per session code, so a
/// master restarted after a crash replaces its own stale records.
pub(super) fn instance_name(code: &SessionCode) -> String {
    format!("lansync-{}", code.as_str())
}

/// The host name published with the instance: its label, lower case, under `.local.`.
pub(super) fn host_name(instance: &str) -> String {
    format!("{}.local.", instance.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn txt_of<'a>(pairs: &'a [(&'a str, &'a [u8])]) -> impl Fn(&str) -> Option<&'a [u8]> {
        move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
    }

    const FP: &[u8] = b"0123456789abcdef";

    fn good() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("v", b"1"),
            ("code", b"abcd-efgh"),
            ("name", b"Choir"),
            ("fp", FP),
            ("port", b"7000"),
        ]
    }

    fn parse(pairs: &[(&str, &[u8])], port: u16) -> Result<DiscoveredSession, &'static str> {
        let addrs = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 213, 1, 2)),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ];
        parse_advert("x._lansync._tcp.local.", port, addrs, txt_of(pairs))
    }

    #[test]
    fn good_advert_is_normalised() {
        let s = parse(&good(), 7000).unwrap();
        assert_eq!(s.session_code, "ABCD-EFGH");
        assert_eq!(s.session_name, "Choir");
        assert_eq!(s.protocol_version, 1);
        assert_eq!(s.port, 7000);
        assert_eq!(s.addrs[0], IpAddr::V4(Ipv4Addr::new(10, 213, 1, 2)));
        assert_eq!(s.addrs.len(), 2, "unspecified and fe80:: dropped");
        assert!(s.is_compatible());
    }

    #[test]
    fn malformed_fields_are_ignored_or_clamped() {
        let with = |key: &'static str, val: &'static [u8]| {
            let mut p = good();
            p.retain(|(k, _)| *k != key);
            p.push((key, val));
            parse(&p, 7000)
        };
        assert!(with("v", b"one").is_err());
        assert!(with("v", b"+1").is_err());
        assert!(with("v", b"99999999999999999999999").is_err());
        assert_eq!(with("v", b"2").unwrap().protocol_version, 2);
        assert!(with("code", b"ABCD-EFG0").is_err());
        assert!(with("code", b"\xff\xfe").is_err());
        assert!(with("fp", b"0123").is_err());
        assert!(with("fp", b"0123456789abcdeg").is_err());
        assert_eq!(
            with("fp", b"0123456789ABCDEF").unwrap().fingerprint_hash,
            "0123456789abcdef"
        );
        let long = Box::leak(vec![b'n'; 200].into_boxed_slice());
        assert_eq!(with("name", long).unwrap().session_name.len(), 48);
        let huge = Box::leak(vec![b'n'; 300].into_boxed_slice());
        assert!(with("name", huge).is_err());
        assert_eq!(
            with("name", b"a\x07b\xffc").unwrap().session_name,
            "ab\u{fffd}c"
        );
        // No SRV port: TXT port is used; neither: ignored.
        assert_eq!(parse(&good(), 0).unwrap().port, 7000);
        let mut p = good();
        p.retain(|(k, _)| *k != "port");
        assert!(parse(&p, 0).is_err());
        p.retain(|(k, _)| *k != "v");
        assert!(parse(&p, 7000).is_err());
        // Only a link-local IPv6 address: not usable yet.
        let fe80 = [IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))];
        assert!(parse_advert("x", 7000, fe80, txt_of(&good())).is_err());
    }

    #[test]
    fn advert_is_validated_and_encoded() {
        let mut a = SessionAdvert::new("abcd efgh", "Choir\n of St Mary", "sha-256 AB:CD", 7000);
        let (code, txt) = a.to_txt().unwrap();
        assert_eq!(code.as_str(), "ABCD-EFGH");
        let get = |k: &str| txt.iter().find(|(key, _)| *key == k).unwrap().1.clone();
        assert_eq!(get("name"), "Choir of St Mary");
        assert_eq!(get("v"), PROTOCOL_VERSION.to_string());
        assert_eq!(get("fp"), fingerprint_hash("sha-256 AB:CD"));
        // Round trip through the reader.
        let pairs: Vec<(&str, &[u8])> = txt.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        let s = parse(&pairs, 7000).unwrap();
        assert!(s.matches_fingerprint("sha-256 AB:CD"));
        a.port = 0;
        assert!(a.to_txt().is_err());
        a.port = 1;
        a.fingerprint_hash = "xyz".into();
        assert!(a.to_txt().is_err());
        a.fingerprint_hash = "0123456789abcdef".into();
        a.session_code = "nope".into();
        assert!(a.to_txt().is_err());
    }

    fn hex8(d: &[u8]) -> String {
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn fingerprint_hash_is_16_hex() {
        let h = fingerprint_hash("sha-256 00:11");
        assert!(is_fingerprint_hash(&h));
        assert_ne!(h, fingerprint_hash("sha-256 00:12"));
        // Every spelling of one fingerprint gives one hash.
        assert_eq!(h, fingerprint_hash("SHA-256 00:11"));
        assert_eq!(h, fingerprint_hash("0011"));
        let _ = fingerprint_hash("sha-256é"); // a multi-byte character at byte 7–8
                                              // SHA-256("0011"), first 8 bytes: a fixed vector for other implementations.
        assert_eq!(h, hex8(&Sha256::digest(b"0011")));
        // The vector of PROTOCOL.md §10.1.
        let sdp: Vec<String> = (0..32).map(|i| format!("{i:02X}")).collect();
        let sdp = format!("sha-256 {}", sdp.join(":"));
        assert_eq!(fingerprint_hash(&sdp), "6c86c6aac5fb24bc");
    }
}
