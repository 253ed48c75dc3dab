//! Unpadded base64url (RFC 4648 §5), used for the URL form of compact codes: every character is
//! unreserved in URLs, and it is shorter than base45 (6 bits per character instead of 5.33).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Why a base64url string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base64Error {
    /// A character outside `A–Z a–z 0–9 - _`, with its char position.
    BadCharacter {
        /// The offending character.
        ch: char,
        /// Its position, counted in characters from 0.
        position: usize,
    },
    /// A length no encoder produces (one character past a 3-byte group): cut short.
    Truncated,
    /// Non-zero bits after the last byte: not written by an encoder.
    BadPadding,
}

/// Encodes without `=` padding.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn value(ch: char) -> Option<u32> {
    match ch {
        'A'..='Z' => Some(ch as u32 - 'A' as u32),
        'a'..='z' => Some(ch as u32 - 'a' as u32 + 26),
        '0'..='9' => Some(ch as u32 - '0' as u32 + 52),
        '-' => Some(62),
        '_' => Some(63),
        _ => None,
    }
}

/// Decodes unpadded base64url, strictly (no padding characters, zero trailing bits).
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut nbits = 0;
    let mut count = 0;
    for (position, ch) in text.chars().enumerate() {
        let v = value(ch).ok_or(Base64Error::BadCharacter { ch, position })?;
        acc = (acc << 6 | v) & 0xFFFF;
        nbits += 6;
        count += 1;
        if nbits >= 8 {
            nbits -= 8;
            out.push((acc >> nbits) as u8);
        }
    }
    if count % 4 == 1 {
        return Err(Base64Error::Truncated);
    }
    if acc & ((1 << nbits) - 1) != 0 {
        return Err(Base64Error::BadPadding);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(raw.as_bytes()), enc);
            assert_eq!(decode(enc).unwrap(), raw.as_bytes());
        }
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(decode("Zm9vY"), Err(Base64Error::Truncated));
        assert_eq!(decode("Zh"), Err(Base64Error::BadPadding));
        assert_eq!(
            decode("Zm=="),
            Err(Base64Error::BadCharacter {
                ch: '=',
                position: 2
            })
        );
    }
}
