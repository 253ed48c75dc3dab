//! Base45 (RFC 9285): bytes as characters of the QR code alphanumeric set, so a QR code can hold
//! them in alphanumeric mode (5.5 bits per character instead of 8 in byte mode).
//!
//! Two bytes `[a, b]` make `n = a * 256 + b`, written as three characters `c, d, e` with
//! `n = c + d * 45 + e * 45²`; a last odd byte makes two characters. Characters are written low
//! digit first.

/// The 45 characters, in value order.
pub const ALPHABET: &[u8; 45] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

/// Why a base45 string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base45Error {
    /// A character outside the alphabet, with its char position.
    BadCharacter {
        /// The offending character.
        ch: char,
        /// Its position, counted in characters from 0.
        position: usize,
    },
    /// A lone character at the end, or a final pair too big for one byte: the text was cut
    /// short.
    Truncated,
    /// A three-character group worth more than 65535 (not produced by any encoder).
    BadGroup {
        /// Char position of the group's first character.
        position: usize,
    },
}

/// Encodes bytes as base45.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(2) * 3);
    let mut chunks = bytes.chunks_exact(2);
    for pair in &mut chunks {
        let n = usize::from(pair[0]) * 256 + usize::from(pair[1]);
        out.push(ALPHABET[n % 45] as char);
        out.push(ALPHABET[n / 45 % 45] as char);
        out.push(ALPHABET[n / 2025] as char);
    }
    if let [last] = chunks.remainder() {
        let n = usize::from(*last);
        out.push(ALPHABET[n % 45] as char);
        out.push(ALPHABET[n / 45] as char);
    }
    out
}

/// Value of one base45 character.
pub fn value(ch: char) -> Option<u32> {
    let v = match ch {
        '0'..='9' => ch as u32 - '0' as u32,
        'A'..='Z' => ch as u32 - 'A' as u32 + 10,
        ' ' => 36,
        '$' => 37,
        '%' => 38,
        '*' => 39,
        '+' => 40,
        '-' => 41,
        '.' => 42,
        '/' => 43,
        ':' => 44,
        _ => return None,
    };
    Some(v)
}

/// Decodes base45. Strict: only upper-case letters (callers upper-case first if they accept
/// lower case), and every group must be in range.
pub fn decode(text: &str) -> Result<Vec<u8>, Base45Error> {
    let mut values = Vec::with_capacity(text.len());
    for (position, ch) in text.chars().enumerate() {
        values.push(value(ch).ok_or(Base45Error::BadCharacter { ch, position })?);
    }
    let mut out = Vec::with_capacity(values.len() / 3 * 2 + 1);
    let mut groups = values.chunks_exact(3);
    for (i, g) in (&mut groups).enumerate() {
        let n = g[0] + g[1] * 45 + g[2] * 2025;
        if n > 0xFFFF {
            return Err(Base45Error::BadGroup { position: i * 3 });
        }
        out.push((n >> 8) as u8);
        out.push(n as u8);
    }
    match groups.remainder() {
        [] => {}
        [a, b] => {
            let n = a + b * 45;
            // Too big for one byte: most likely the first two characters of a group whose third
            // was cut off.
            if n > 0xFF {
                return Err(Base45Error::Truncated);
            }
            out.push(n as u8);
        }
        _ => return Err(Base45Error::Truncated),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9285_examples() {
        assert_eq!(encode(b"AB"), "BB8");
        assert_eq!(encode(b"Hello!!"), "%69 VD92EX0");
        assert_eq!(encode(b"base-45"), "UJCLQE7W581");
        assert_eq!(decode("QED8WEX0").unwrap(), b"ietf!");
        assert_eq!(encode(b""), "");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            decode("ab"),
            Err(Base45Error::BadCharacter {
                ch: 'a',
                position: 0
            })
        );
        assert_eq!(decode("BB8B"), Err(Base45Error::Truncated));
        // "::" = 44 + 44*45 = 2024 > 255: a cut-off group.
        assert_eq!(decode("::"), Err(Base45Error::Truncated));
        // ":::" = 91124 > 65535
        assert_eq!(decode(":::"), Err(Base45Error::BadGroup { position: 0 }));
    }

    #[test]
    fn round_trips_edges() {
        for bytes in [&[0u8, 0][..], &[255, 255], &[255], &[0], &[1, 2, 3, 4, 5]] {
            assert_eq!(decode(&encode(bytes)).unwrap(), bytes);
        }
    }
}
