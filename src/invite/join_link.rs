//! The choir join link: what a master's QR code carries so a follower can join over the LAN with
//! no typing — where the master's join endpoint listens, the session code, the join token, and
//! the master's DTLS fingerprint (so the follower can tell the real master from an impostor).
//!
//! ```text
//! lansync://join?h=192.168.1.5:47321&c=ABCD-EFGH&t=<32 hex>&f=<64 hex>
//! ```
//!
//! Pure (no IO); [`JoinLink::parse`] never panics. PROTOCOL.md §9.5 is the normative description.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::compact::fingerprint_hex;
use crate::protocol::SessionCode;

/// Scheme and path of a join link.
pub const JOIN_URL_BASE: &str = "lansync://join?";
/// Longest text [`JoinLink::parse`] looks at, in bytes (a real link is about 150).
pub const MAX_JOIN_LINK_LEN: usize = 1024;

/// Everything a follower needs to join a choir session over the LAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JoinLink {
    /// The master's LAN address (its join endpoint).
    pub addr: IpAddr,
    /// The join endpoint's TCP port (never 0).
    pub port: u16,
    /// The human session code, normalised (`XXXX-XXXX`).
    pub session_code: String,
    /// The session token: 32 lower-case hex digits.
    pub token: String,
    /// The master's DTLS certificate fingerprint as SDP writes it: `"sha-256 AB:CD:…"`
    /// (upper-case hex pairs).
    pub fingerprint: String,
}

/// Why a text is not a usable join link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinLinkError {
    /// Nothing but whitespace.
    #[error("the join link is empty")]
    Empty,
    /// Longer than [`MAX_JOIN_LINK_LEN`].
    #[error("the text is too long to be a join link")]
    TooLong,
    /// Not a `lansync://join?…` link.
    #[error("not a lansync join link (expected lansync://join?…)")]
    NotAJoinLink,
    /// A required field (`h`, `c`, `t` or `f`) is absent.
    #[error("the join link has no '{0}' field")]
    Missing(&'static str),
    /// A field appears twice.
    #[error("the join link has the '{0}' field twice")]
    Duplicate(&'static str),
    /// A field is present but malformed.
    #[error("the join link's '{field}' field is invalid: {reason}")]
    Invalid {
        /// The field (`h`, `c`, `t` or `f`).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl JoinLink {
    /// The endpoint's socket address.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// The link text: `lansync://join?h=<addr>:<port>&c=<code>&t=<token>&f=<64 hex>`. IPv6
    /// addresses are in brackets. The fingerprint is written as bare hex (no algorithm, no
    /// colons) to keep the QR code small; it is SHA-256 by definition.
    pub fn to_url(&self) -> String {
        format!("{JOIN_URL_BASE}{}", self.query())
    }

    /// The phones' URL (PROTOCOL.md §9.7): the follower page served at the join endpoint's
    /// own address, `http://<addr>:<port>/#<the link's query>`. The secrets ride in the
    /// fragment, which a browser never sends in a request.
    pub fn to_page_url(&self) -> String {
        format!("http://{}/#{}", self.socket_addr(), self.query())
    }

    /// Reads the fragment of a phones' URL (the part after `#`, with or without the `#`) as a
    /// link: the same rules as [`parse`](Self::parse).
    pub fn parse_fragment(fragment: &str) -> Result<JoinLink, JoinLinkError> {
        let fragment = fragment.trim();
        let fragment = fragment.strip_prefix('#').unwrap_or(fragment);
        if fragment.is_empty() {
            return Err(JoinLinkError::Empty);
        }
        if fragment.len() + JOIN_URL_BASE.len() > MAX_JOIN_LINK_LEN {
            return Err(JoinLinkError::TooLong);
        }
        JoinLink::parse(&format!("{JOIN_URL_BASE}{fragment}"))
    }

    /// Whether every `a=fingerprint` line of an answer SDP (there must be one) names this
    /// link's master, ignoring case and colons (PROTOCOL.md §9.4): a line with another hash
    /// function fails.
    pub fn matches_answer(&self, sdp: &str) -> bool {
        crate::auth::sdp_names_fingerprint(sdp, &self.fingerprint)
    }

    /// `h=…&c=…&t=…&f=…`: the fingerprint as bare lower-case hex (no algorithm, no colons) to
    /// keep the QR code small; it is SHA-256 by definition.
    fn query(&self) -> String {
        format!(
            "h={}&c={}&t={}&f={}",
            self.socket_addr(),
            self.session_code,
            self.token,
            fingerprint_digits(&self.fingerprint)
        )
    }

    /// Reads a link written by [`to_url`](Self::to_url). Surrounding whitespace is ignored, the
    /// scheme and path in any letter case, fields in any order, unknown fields skipped (later
    /// versions may add some), values may be percent-encoded. The session code is normalised,
    /// the token lower-cased, the fingerprint rebuilt as `"sha-256 AB:CD:…"`.
    pub fn parse(text: &str) -> Result<JoinLink, JoinLinkError> {
        if text.len() > MAX_JOIN_LINK_LEN {
            return Err(JoinLinkError::TooLong);
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(JoinLinkError::Empty);
        }
        // The phones' URL (PROTOCOL.md §9.7) carries the same link in its fragment: one QR
        // code serves a phone's camera and a lansync device alike.
        if is_page_url(text) {
            return match text.split_once('#') {
                Some((_, fragment)) => JoinLink::parse_fragment(fragment),
                None => Err(JoinLinkError::NotAJoinLink),
            };
        }
        let base_len = JOIN_URL_BASE.len();
        let query = match text.get(..base_len) {
            Some(head) if head.eq_ignore_ascii_case(JOIN_URL_BASE) => &text[base_len..],
            _ => return Err(JoinLinkError::NotAJoinLink),
        };
        // A fragment is not part of the link.
        let query = query.split('#').next().unwrap_or("");

        let (mut h, mut c, mut t, mut f) = (None, None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (name, slot) = match key {
                "h" => ("h", &mut h),
                "c" => ("c", &mut c),
                "t" => ("t", &mut t),
                "f" => ("f", &mut f),
                _ => continue,
            };
            if slot.is_some() {
                return Err(JoinLinkError::Duplicate(name));
            }
            let value = percent_decode(value).ok_or(JoinLinkError::Invalid {
                field: name,
                reason: "broken percent-encoding",
            })?;
            *slot = Some(value);
        }
        let h = h.ok_or(JoinLinkError::Missing("h"))?;
        let c = c.ok_or(JoinLinkError::Missing("c"))?;
        let t = t.ok_or(JoinLinkError::Missing("t"))?;
        let f = f.ok_or(JoinLinkError::Missing("f"))?;

        let sock: SocketAddr = h.parse().map_err(|_| JoinLinkError::Invalid {
            field: "h",
            reason: "expected address:port (IPv6 in brackets)",
        })?;
        if sock.port() == 0 {
            return Err(JoinLinkError::Invalid {
                field: "h",
                reason: "port 0",
            });
        }
        let code = SessionCode::parse(&c).ok_or(JoinLinkError::Invalid {
            field: "c",
            reason: "not a session code (XXXX-XXXX)",
        })?;
        if t.len() != 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JoinLinkError::Invalid {
                field: "t",
                reason: "expected 32 hex digits",
            });
        }
        let fingerprint = fingerprint_from_hex(&f).ok_or(JoinLinkError::Invalid {
            field: "f",
            reason: "expected 64 hex digits (SHA-256)",
        })?;
        Ok(JoinLink {
            addr: sock.ip(),
            port: sock.port(),
            session_code: code.as_str().to_string(),
            token: t.to_ascii_lowercase(),
            fingerprint,
        })
    }
}

impl fmt::Display for JoinLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_url())
    }
}

impl std::str::FromStr for JoinLink {
    type Err = JoinLinkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JoinLink::parse(s)
    }
}

/// The hex digits of a fingerprint (`"sha-256 AB:CD:…"` or bare), lower case, no colons.
fn fingerprint_digits(fp: &str) -> String {
    fp.split_whitespace()
        .last()
        .unwrap_or("")
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// `"sha-256 AB:CD:…"` from 64 hex digits (either case; colons tolerated).
fn fingerprint_from_hex(hex: &str) -> Option<String> {
    let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
    let mut fingerprint = [0u8; 32];
    hex::decode_to_slice(digits, &mut fingerprint).ok()?;
    Some(format!("sha-256 {}", fingerprint_hex(&fingerprint)))
}

/// Percent-decodes a query value (`+` stays `+`: none of our fields has spaces). `None` for a
/// broken escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let mut byte = [0u8];
            hex::decode_to_slice(bytes.get(i + 1..i + 3)?, &mut byte).ok()?;
            out.push(byte[0]);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `text` starts like a phones' URL (`http://` or `https://`, any letter case).
pub fn is_page_url(text: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        text.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FP: &str = "sha-256 0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9:0A:1B:2C:3D:4E:5F:60:71:82:93:A4:B5:C6:D7:E8:F9";

    fn sample(addr: IpAddr) -> JoinLink {
        JoinLink {
            addr,
            port: 47321,
            session_code: "ABCD-EFGH".into(),
            token: "0123456789abcdef0123456789abcdef".into(),
            fingerprint: FP.into(),
        }
    }

    #[test]
    fn url_form_ipv4() {
        let link = sample("192.168.1.5".parse().unwrap());
        let url = link.to_url();
        assert_eq!(
            url,
            "lansync://join?h=192.168.1.5:47321&c=ABCD-EFGH&t=0123456789abcdef0123456789abcdef\
             &f=0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
        );
        assert!(url.len() < 160, "{} chars", url.len());
        assert_eq!(JoinLink::parse(&format!("  \n{url}\t ")).unwrap(), link);
    }

    #[test]
    fn url_form_ipv6_in_brackets() {
        let link = sample("fd00::1:5".parse().unwrap());
        let url = link.to_url();
        assert!(
            url.starts_with("lansync://join?h=[fd00::1:5]:47321&"),
            "{url}"
        );
        assert_eq!(JoinLink::parse(&url).unwrap(), link);
        // Brackets percent-encoded by some URL handler.
        let escaped = url.replace('[', "%5B").replace(']', "%5D");
        assert_eq!(JoinLink::parse(&escaped).unwrap(), link);
    }

    #[test]
    fn page_url_carries_the_link_in_its_fragment() {
        let v4 = sample("192.168.1.5".parse().unwrap());
        let url = v4.to_page_url();
        assert_eq!(
            url,
            "http://192.168.1.5:47321/#h=192.168.1.5:47321&c=ABCD-EFGH\
             &t=0123456789abcdef0123456789abcdef\
             &f=0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
        );
        let (_, fragment) = url.split_once('#').unwrap();
        assert_eq!(JoinLink::parse_fragment(fragment).unwrap(), v4);
        // a lansync device reads the phones' URL (the one QR code) as the link itself
        assert_eq!(JoinLink::parse(&url).unwrap(), v4);
        assert_eq!(
            JoinLink::parse(&url.replace("http:", "HTTPS:")).unwrap(),
            v4
        );
        assert_eq!(
            JoinLink::parse("http://192.168.1.5:47321/"),
            Err(JoinLinkError::NotAJoinLink)
        );
        assert_eq!(
            JoinLink::parse("http://192.168.1.5:47321/#"),
            Err(JoinLinkError::Empty)
        );
        assert_eq!(
            JoinLink::parse_fragment(&format!("#{fragment}")).unwrap(),
            v4
        );
        let v6 = sample("fd00::5".parse().unwrap());
        let url = v6.to_page_url();
        assert!(
            url.starts_with("http://[fd00::5]:47321/#h=[fd00::5]:47321&"),
            "{url}"
        );
        let (_, fragment) = url.split_once('#').unwrap();
        assert_eq!(JoinLink::parse_fragment(fragment).unwrap(), v6);
        assert_eq!(JoinLink::parse_fragment(" # "), Err(JoinLinkError::Empty));
        assert_eq!(
            JoinLink::parse_fragment("h=192.168.1.5:47321&c=ABCD-EFGH"),
            Err(JoinLinkError::Missing("t"))
        );
        assert_eq!(
            JoinLink::parse_fragment(&"h".repeat(MAX_JOIN_LINK_LEN)),
            Err(JoinLinkError::TooLong)
        );
    }

    #[test]
    fn answers_are_checked_against_the_links_fingerprint() {
        let link = sample("10.0.0.2".parse().unwrap());
        let line = |fp: &str| format!("v=0\r\na=fingerprint:{fp}\r\nm=application 9\r\n");
        assert!(link.matches_answer(&line(FP)));
        assert!(link.matches_answer(&line(&FP.to_ascii_lowercase())));
        assert!(!link.matches_answer(&line(&FP.replace("F9", "F8"))));
        assert!(!link.matches_answer(&line(&FP.replace("sha-256", "sha-1"))));
        assert!(!link.matches_answer("v=0\r\nm=application 9\r\n"));
        // One other line spoils it: a DTLS stack may accept a certificate by any line.
        let two = format!("{}a=fingerprint:sha-256 00:11\r\n", line(FP));
        assert!(!link.matches_answer(&two));
    }

    #[test]
    fn lenient_where_harmless() {
        let url = "LANSYNC://JOIN?f=0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8F9\
                   &x=later&t=0123456789ABCDEF0123456789ABCDEF&c=abcd efgh&h=192.168.1.5:47321#frag";
        let link = JoinLink::parse(url).unwrap();
        assert_eq!(link, sample("192.168.1.5".parse().unwrap()));
    }

    #[test]
    fn specific_errors() {
        let good = sample("10.0.0.2".parse().unwrap()).to_url();
        assert_eq!(JoinLink::parse("  "), Err(JoinLinkError::Empty));
        assert_eq!(
            JoinLink::parse("https://example.org/"),
            Err(JoinLinkError::NotAJoinLink)
        );
        assert_eq!(
            JoinLink::parse(&"x".repeat(MAX_JOIN_LINK_LEN + 1)),
            Err(JoinLinkError::TooLong)
        );
        for field in ["h", "c", "t", "f"] {
            let without: Vec<&str> = good
                .trim_start_matches(JOIN_URL_BASE)
                .split('&')
                .filter(|p| !p.starts_with(&format!("{field}=")))
                .collect();
            let url = format!("{JOIN_URL_BASE}{}", without.join("&"));
            assert_eq!(JoinLink::parse(&url), Err(JoinLinkError::Missing(field)));
        }
        assert_eq!(
            JoinLink::parse(&format!("{good}&c=ABCD-EFGH")),
            Err(JoinLinkError::Duplicate("c"))
        );
        let bad = |from: &str, to: &str| JoinLink::parse(&good.replace(from, to));
        assert!(matches!(
            bad("h=10.0.0.2:47321", "h=10.0.0.2"),
            Err(JoinLinkError::Invalid { field: "h", .. })
        ));
        assert!(matches!(
            bad(":47321", ":0"),
            Err(JoinLinkError::Invalid { field: "h", .. })
        ));
        assert!(matches!(
            bad("ABCD-EFGH", "ABCD-EFG0"),
            Err(JoinLinkError::Invalid { field: "c", .. })
        ));
        assert!(matches!(
            bad("t=0123", "t=x123"),
            Err(JoinLinkError::Invalid { field: "t", .. })
        ));
        assert!(matches!(
            bad("f=0a1b", "f=0a1"),
            Err(JoinLinkError::Invalid { field: "f", .. })
        ));
        assert!(matches!(
            bad("c=ABCD", "c=%zzABCD"),
            Err(JoinLinkError::Invalid { field: "c", .. })
        ));
    }

    fn arb_link() -> impl Strategy<Value = JoinLink> {
        (
            any::<IpAddr>(),
            1u16..,
            "[ABCDEFGHJKLMNPQRSTUVWXYZ2-9]{8}",
            "[0-9a-f]{32}",
            proptest::collection::vec(any::<u8>(), 32),
        )
            .prop_map(|(addr, port, code, token, fp)| {
                let hex: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
                JoinLink {
                    addr,
                    port,
                    session_code: format!("{}-{}", &code[..4], &code[4..]),
                    token,
                    fingerprint: format!("sha-256 {}", hex.join(":")),
                }
            })
    }

    proptest! {
        #[test]
        fn round_trip(link in arb_link()) {
            prop_assert_eq!(JoinLink::parse(&link.to_url()), Ok(link));
        }

        #[test]
        fn garbage_never_panics(text in "\\PC{0,300}") {
            let _ = JoinLink::parse(&text);
            let _ = JoinLink::parse(&format!("{JOIN_URL_BASE}{text}"));
        }

        #[test]
        fn mangled_links_never_panic(link in arb_link(), cut in 0usize..200, junk in "\\PC{0,8}") {
            let url = link.to_url();
            let mut at = cut.min(url.len());
            while !url.is_char_boundary(at) {
                at -= 1;
            }
            let _ = JoinLink::parse(&format!("{}{junk}{}", &url[..at], &url[at..]));
            let _ = JoinLink::parse(&url[..at]);
        }
    }
}
