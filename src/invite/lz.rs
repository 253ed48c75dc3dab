//! `lz-string` (the JavaScript package, v1.5.0) `compressToEncodedURIComponent` and
//! `decompressFromEncodedURIComponent`, written from the public description of the format.
//!
//! The format is an LZW variant over UTF-16 code units. Codes are written least-significant bit
//! first into a bit stream whose width starts at 2 bits and grows by one each time the dictionary
//! would outgrow it. Codes 0 and 1 introduce a literal of 8 or 16 bits that also enters the
//! dictionary, code 2 ends the stream. The bit stream is cut into 6-bit groups, most significant
//! bit first, each written as one character of `A–Z a–z 0–9 + -`.
//!
//! Decoding is hardened for hostile input: the output is capped (so memory is bounded, even though
//! LZW output can grow quadratically with input length), dictionary entries are stored as ranges
//! into the output rather than as copies, every code is range-checked, and every step consumes
//! input bits, so it always ends.
//!
//! Why not the `lz-str` crate: its decoder has no output cap, so a small hostile code could make
//! it allocate without bound; a code pasted by anyone must not (PROTOCOL.md §7.2.2).

use std::collections::HashMap;

/// The 64 characters the encoder writes, in value order (the JS alphabet also has `$` at 64).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-";

/// Largest decompressed size, in UTF-16 code units, that [`decompress_from_encoded_uri_component`]
/// produces before giving up. An SDP with a few candidates is 1–3 KiB.
pub const MAX_DECOMPRESSED_UNITS: usize = 64 * 1024;

/// Why an lz-string input could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LzError {
    /// The input is empty.
    Empty,
    /// A character outside `A–Z a–z 0–9 + - $` (and space, read as `+`), with its char position.
    BadCharacter {
        /// The offending character.
        ch: char,
        /// Its position, counted in characters from 0.
        position: usize,
    },
    /// The stream ended before its end marker.
    Truncated,
    /// A back-reference to a dictionary entry that does not exist yet.
    BadCode,
    /// The output would exceed the cap.
    TooLarge,
    /// The output is not valid UTF-16 (an unpaired surrogate).
    BadUtf16,
}

/// Writes codes LSB-first into 6-bit characters, MSB-first, as the JS package does.
struct BitWriter {
    out: String,
    acc: u8,
    filled: u8,
}

impl BitWriter {
    fn push_bit(&mut self, bit: u32) {
        self.acc = (self.acc << 1) | (bit & 1) as u8;
        self.filled += 1;
        if self.filled == 6 {
            self.out.push(ALPHABET[usize::from(self.acc)] as char);
            self.acc = 0;
            self.filled = 0;
        }
    }

    fn write(&mut self, mut value: u32, bits: u32) {
        for _ in 0..bits {
            self.push_bit(value & 1);
            value >>= 1;
        }
    }

    /// The JS encoder pads the last character with zero bits; when the stream already ends on a
    /// character boundary it still emits one more, all-zero character.
    fn finish(mut self) -> String {
        loop {
            self.acc <<= 1;
            if self.filled == 5 {
                self.out.push(ALPHABET[usize::from(self.acc & 63)] as char);
                break;
            }
            self.filled += 1;
        }
        self.out
    }
}

/// Compressor state kept between characters.
struct Compressor {
    writer: BitWriter,
    /// Single code units seen so far: code, and whether its literal has not been written yet.
    singles: HashMap<u16, (u32, bool)>,
    /// Longer phrases, as (code of the prefix, next unit) -> code.
    phrases: HashMap<(u32, u16), u32>,
    next_code: u32,
    bits: u32,
    enlarge_in: u32,
}

impl Compressor {
    fn bump(&mut self) {
        self.enlarge_in -= 1;
        if self.enlarge_in == 0 {
            self.enlarge_in = 1u32.checked_shl(self.bits).unwrap_or(u32::MAX);
            self.bits += 1;
        }
    }

    /// Writes the current phrase `w` (its code, and its unit if it is one unit long).
    fn emit(&mut self, code: u32, single: Option<u16>) {
        let pending = single.and_then(|u| {
            self.singles
                .get_mut(&u)
                .filter(|(_, pending)| *pending)
                .map(|entry| {
                    entry.1 = false;
                    u
                })
        });
        match pending {
            Some(unit) => {
                if unit < 256 {
                    self.writer.write(0, self.bits);
                    self.writer.write(u32::from(unit), 8);
                } else {
                    self.writer.write(1, self.bits);
                    self.writer.write(u32::from(unit), 16);
                }
                // A new literal costs one extra width step, as in the JS encoder.
                self.bump();
            }
            None => self.writer.write(code, self.bits),
        }
        self.bump();
    }
}

/// `LZString.compressToEncodedURIComponent(input)`: the same output, character for character.
pub fn compress_to_encoded_uri_component(input: &str) -> String {
    let mut c = Compressor {
        writer: BitWriter {
            out: String::new(),
            acc: 0,
            filled: 0,
        },
        singles: HashMap::new(),
        phrases: HashMap::new(),
        next_code: 3,
        bits: 2,
        enlarge_in: 2,
    };
    // The current phrase: its code, and its unit when it is a single unit.
    let mut w: Option<(u32, Option<u16>)> = None;
    for unit in input.encode_utf16() {
        let unit_code = match c.singles.get(&unit) {
            Some(&(code, _)) => code,
            None => {
                let code = c.next_code;
                c.next_code += 1;
                c.singles.insert(unit, (code, true));
                code
            }
        };
        w = Some(match w {
            None => (unit_code, Some(unit)),
            Some((w_code, w_single)) => match c.phrases.get(&(w_code, unit)) {
                Some(&code) => (code, None),
                None => {
                    c.emit(w_code, w_single);
                    let code = c.next_code;
                    c.next_code += 1;
                    c.phrases.insert((w_code, unit), code);
                    (unit_code, Some(unit))
                }
            },
        });
    }
    if let Some((w_code, w_single)) = w {
        c.emit(w_code, w_single);
    }
    let bits = c.bits;
    c.writer.write(2, bits);
    c.writer.finish()
}

/// Reads bits MSB-first from 6-bit characters; past the end it reads zeros, as the JS decoder.
struct BitReader<'a> {
    values: &'a [u8],
    index: usize,
    mask: u8,
    /// Set once a read went past the last character (a sign of a cut-off code).
    overran: bool,
}

impl BitReader<'_> {
    fn read(&mut self, bits: u32) -> u32 {
        let mut out = 0u32;
        for i in 0..bits {
            let value = match self.values.get(self.index) {
                Some(&v) => v,
                None => {
                    self.overran = true;
                    0
                }
            };
            if value & self.mask != 0 {
                out |= 1 << i;
            }
            self.mask >>= 1;
            if self.mask == 0 {
                self.mask = 32;
                self.index += 1;
            }
        }
        out
    }
}

/// Maps one input character to its value. A space stands for `+` (a `+` that went through form
/// decoding), as in the JS decoder. `$` is in the JS alphabet at value 64: the encoder never
/// writes it and its six low bits read as zeros, which the reader reproduces by testing bits
/// 32..1 only.
fn char_value(ch: char) -> Option<u8> {
    match ch {
        'A'..='Z' => Some(ch as u8 - b'A'),
        'a'..='z' => Some(ch as u8 - b'a' + 26),
        '0'..='9' => Some(ch as u8 - b'0' + 52),
        '+' | ' ' => Some(62),
        '-' => Some(63),
        '$' => Some(64),
        _ => None,
    }
}

/// `LZString.decompressFromEncodedURIComponent(input)`, returning the text, or why it failed
/// where the JS function returns `null` or `""`. Output is capped at `max_units` UTF-16 units.
pub fn decompress_from_encoded_uri_component_capped(
    input: &str,
    max_units: usize,
) -> Result<String, LzError> {
    if input.is_empty() {
        return Err(LzError::Empty);
    }
    let mut values = Vec::with_capacity(input.len());
    for (position, ch) in input.chars().enumerate() {
        match char_value(ch) {
            Some(v) => values.push(v),
            None => return Err(LzError::BadCharacter { ch, position }),
        }
    }
    let mut r = BitReader {
        values: &values,
        index: 0,
        mask: 32,
        overran: false,
    };
    let units = decode_units(&mut r, max_units).map_err(|e| match e {
        // A bad code read from past the end is a cut-off code, not a damaged one.
        LzError::BadCode if r.overran => LzError::Truncated,
        e => e,
    })?;
    char::decode_utf16(units.iter().copied())
        .collect::<Result<String, _>>()
        .map_err(|_| LzError::BadUtf16)
}

/// [`decompress_from_encoded_uri_component_capped`] with [`MAX_DECOMPRESSED_UNITS`].
pub fn decompress_from_encoded_uri_component(input: &str) -> Result<String, LzError> {
    decompress_from_encoded_uri_component_capped(input, MAX_DECOMPRESSED_UNITS)
}

/// The LZW decoding loop. Dictionary entries are (start, length) ranges into `out`: every phrase
/// the format defines is a substring of what has been output, because each new phrase is the
/// previous output entry plus the first unit of the entry written right after it.
fn decode_units(r: &mut BitReader<'_>, max_units: usize) -> Result<Vec<u16>, LzError> {
    let mut out: Vec<u16> = Vec::new();
    // Codes 0..=2 are control codes; entries start at 3.
    let mut dict: Vec<(usize, usize)> = vec![(0, 0); 3];
    let mut bits = 3u32;
    let mut enlarge_in = 4u32;

    let first = match r.read(2) {
        0 => r.read(8),
        1 => r.read(16),
        2 => return Ok(out),
        _ => return Err(LzError::BadCode),
    };
    if max_units == 0 {
        return Err(LzError::TooLarge);
    }
    out.push(first as u16);
    dict.push((0, 1));
    let mut w = (0usize, 1usize);

    loop {
        // The JS decoder checks for running off the end only here, once per code; a code that
        // starts inside the input but runs past it reads zero bits.
        if r.index >= r.values.len() {
            return Err(LzError::Truncated);
        }
        // Widths past 31 bits would need more than 2^31 dictionary entries: never legitimate.
        if bits > 31 {
            return Err(LzError::TooLarge);
        }
        let code = r.read(bits) as usize;
        let entry = match code {
            0 | 1 => {
                let unit = r.read(if code == 0 { 8 } else { 16 }) as u16;
                if out.len() >= max_units {
                    return Err(LzError::TooLarge);
                }
                let start = out.len();
                out.push(unit);
                dict.push((start, 1));
                enlarge_in -= 1;
                (start, 1)
            }
            2 => return Ok(out),
            c if c < dict.len() => {
                let (start, len) = dict[c];
                if out.len() + len > max_units {
                    return Err(LzError::TooLarge);
                }
                let at = out.len();
                out.extend_from_within(start..start + len);
                (at, len)
            }
            c if c == dict.len() => {
                // The phrase being defined right now: w followed by its own first unit.
                let (start, len) = w;
                if out.len() + len + 1 > max_units {
                    return Err(LzError::TooLarge);
                }
                let at = out.len();
                out.extend_from_within(start..start + len);
                out.push(out[start]);
                (at, len + 1)
            }
            _ => return Err(LzError::BadCode),
        };
        if enlarge_in == 0 {
            enlarge_in = 1 << bits;
            bits += 1;
        }
        // w + first unit of entry: w sits right before entry in the output.
        dict.push((w.0, w.1 + 1));
        enlarge_in -= 1;
        w = entry;
        if enlarge_in == 0 {
            enlarge_in = 1 << bits;
            bits += 1;
        }
    }
}
