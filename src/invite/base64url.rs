//! Unpadded base64url (RFC 4648 §5), used for the URL form of compact codes (PROTOCOL.md §7.1.2):
//! every character is unreserved in URLs, and it is shorter than base45 (6 bits per character
//! instead of 5.33). The `base64` crate does the work; this module fixes its strictness and turns
//! its errors into ones a person can act on.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{DecodeError, Engine};

/// Strict: no `=` written or accepted, and non-zero bits after the last byte rejected, so a code
/// has exactly one spelling.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

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
    ENGINE.encode(bytes)
}

/// Decodes unpadded base64url, strictly (no padding characters, zero trailing bits).
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    // The first bad character as a person counts it (in chars, from the start): the crate
    // reports byte offsets, and a bad last byte before earlier ones.
    let bad = text
        .chars()
        .enumerate()
        .find(|(_, ch)| !(ch.is_ascii_alphanumeric() || *ch == '-' || *ch == '_'));
    if let Some((position, ch)) = bad {
        return Err(Base64Error::BadCharacter { ch, position });
    }
    ENGINE.decode(text).map_err(|e| match e {
        DecodeError::InvalidLength(_) => Base64Error::Truncated,
        // Only alphabet characters are left, so the one other failure is stray trailing bits
        // (`InvalidLastSymbol`).
        _ => Base64Error::BadPadding,
    })
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

    /// The first bad character in reading order, counted in chars, wherever the crate would
    /// have stopped (it checks a dangling last byte first, and counts bytes).
    #[test]
    fn bad_character_is_the_first_one_in_chars() {
        assert_eq!(
            decode("a!bc!"),
            Err(Base64Error::BadCharacter {
                ch: '!',
                position: 1
            })
        );
        assert_eq!(
            decode("abé"),
            Err(Base64Error::BadCharacter {
                ch: 'é',
                position: 2
            })
        );
        assert_eq!(
            decode("ééab+"),
            Err(Base64Error::BadCharacter {
                ch: 'é',
                position: 0
            })
        );
        assert_eq!(
            decode("Zm9vYg=="),
            Err(Base64Error::BadCharacter {
                ch: '=',
                position: 6
            })
        );
    }

    /// Every string of 1 to 3 alphabet characters after a full group decodes exactly when it
    /// re-encodes to itself (the one spelling of its bytes); the rest are `Truncated` (one
    /// character) or `BadPadding` (stray bits).
    #[test]
    fn canonical_spellings_only() {
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut tails: Vec<String> = vec![String::new()];
        for len in 1..=3 {
            tails = tails
                .iter()
                .flat_map(|t| ALPHABET.chars().map(move |c| format!("{t}{c}")))
                .collect();
            let (mut ok, mut stray, mut cut) = (0, 0, 0);
            for tail in &tails {
                let text = format!("Zm9v{tail}");
                match decode(&text) {
                    Ok(bytes) => {
                        assert_eq!(encode(&bytes), text);
                        ok += 1;
                    }
                    Err(Base64Error::Truncated) => cut += 1,
                    Err(e) => {
                        assert_eq!(e, Base64Error::BadPadding, "{text}");
                        stray += 1;
                    }
                }
            }
            // One character is cut short; 2 and 3 characters spell 1 and 2 bytes once each.
            let expected = match len {
                1 => (0, 0, 64),
                2 => (1 << 8, (1 << 12) - (1 << 8), 0),
                _ => (1 << 16, (1 << 18) - (1 << 16), 0),
            };
            assert_eq!((ok, stray, cut), expected, "length {len}");
        }
    }
}
