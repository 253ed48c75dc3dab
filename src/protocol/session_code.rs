//! The human session code (PROTOCOL.md §6.2): `XXXX-XXXX` over an alphabet with no look-alikes,
//! normalised before any comparison. A wire format: the master makes it, and JOIN_ACCEPT, the
//! join endpoint (§9.1), the join link (§9.5) and the mDNS advert (§10.1) carry it.

use serde::{Deserialize, Serialize};

/// A human session code `XXXX-XXXX` over an alphabet with no look-alikes (no I, O, 0, 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCode(String);

const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

impl SessionCode {
    /// Normalises what a person typed: case, spaces and dashes do not matter. `None` when it
    /// cannot be a session code.
    pub fn parse(input: &str) -> Option<SessionCode> {
        let chars: Vec<u8> = input
            .bytes()
            .filter(|b| !matches!(b, b' ' | b'-' | b'\t'))
            .map(|b| b.to_ascii_uppercase())
            .collect();
        if chars.len() != 8 || !chars.iter().all(|c| CODE_ALPHABET.contains(c)) {
            return None;
        }
        let s = String::from_utf8(chars).ok()?;
        Some(SessionCode(format!("{}-{}", &s[..4], &s[4..])))
    }

    /// The code the first 8 of `bytes` (secure random) make. Panics on fewer than 8 bytes.
    pub(crate) fn from_bytes(bytes: &[u8]) -> SessionCode {
        let s: String = bytes[..8]
            .iter()
            .map(|b| CODE_ALPHABET[usize::from(b % 32)] as char)
            .collect();
        SessionCode(format!("{}-{}", &s[..4], &s[4..]))
    }

    /// The code, `XXXX-XXXX`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
