//! QR codes of invite and answer codes: for a terminal (Unicode half blocks), as SVG, as PNG.
//!
//! Compact codes (`LS:` + base45) are encoded in one alphanumeric segment, which is what base45
//! is for: 5.5 bits per character, so a 99-character code fits a version 5 symbol (37×37) at
//! error correction level M. Other codes (lz-string, URLs) use the crate's automatic segmentation.

use std::io;
use std::path::Path;

use qrcode::bits::Bits;
use qrcode::types::QrError;
use qrcode::{Color, EcLevel, QrCode, Version};

/// Quiet zone around the symbol, in modules (the QR specification asks for 4).
const QUIET: usize = 4;
/// Quiet zone of the compact terminal rendering: its explicit white background already sets the
/// symbol apart from the terminal, and phone readers find a 2-module margin on a screen.
const COMPACT_QUIET: usize = 2;
/// Pixels per module in PNG output.
const PNG_SCALE: usize = 8;

/// True if every character is in the QR alphanumeric set (`0–9 A–Z space $ % * + - . / :`).
fn is_alphanumeric(code: &str) -> bool {
    code.bytes().all(|b| {
        matches!(b, b'0'..=b'9' | b'A'..=b'Z' | b' ' | b'$' | b'%' | b'*' | b'+' | b'-' | b'.' | b'/' | b':')
    })
}

/// The smallest symbol holding `code` in a single alphanumeric segment.
fn alphanumeric_symbol(code: &str, ec: EcLevel) -> Result<QrCode, QrError> {
    for v in 1..=40 {
        let mut bits = Bits::new(Version::Normal(v));
        if bits.push_alphanumeric_data(code.as_bytes()).is_err()
            || bits.push_terminator(ec).is_err()
        {
            continue;
        }
        return QrCode::with_bits(bits, ec);
    }
    Err(QrError::DataTooLong)
}

/// Builds the symbol: alphanumeric mode for base45 codes, automatic otherwise; level M, or L when
/// M cannot hold the code.
pub fn qr_symbol(code: &str) -> Result<QrCode, QrError> {
    let code = code.trim();
    let build = |ec| {
        if is_alphanumeric(code) {
            alphanumeric_symbol(code, ec)
        } else {
            QrCode::with_error_correction_level(code.as_bytes(), ec)
        }
    };
    build(EcLevel::M).or_else(|_| build(EcLevel::L))
}

/// Dark modules with the quiet zone added, row by row (`true` = dark), and the side length.
fn modules(code: &QrCode) -> (usize, Vec<bool>) {
    modules_with(code, QUIET)
}

fn modules_with(code: &QrCode, quiet: usize) -> (usize, Vec<bool>) {
    let w = code.width();
    let size = w + 2 * quiet;
    let colors = code.to_colors();
    let mut out = vec![false; size * size];
    for y in 0..w {
        for x in 0..w {
            out[(y + quiet) * size + x + quiet] = colors[y * w + x] == Color::Dark;
        }
    }
    (size, out)
}

/// The QR code as text for a terminal: two module rows per line in half blocks (`▀ ▄ █`), with a
/// quiet zone. Colours are explicit (black on bright white, ANSI SGR `30;107`), so the symbol
/// reads the right way round on dark and light terminals alike. If the code is too long for any
/// QR symbol, returns a one-line message instead.
pub fn qr_terminal(code: &str) -> String {
    render_text(code, true)
}

/// [`qr_terminal`] without colour escapes, for files and pipes: dark modules are blocks, so it is
/// right on light backgrounds and inverted on dark terminals.
pub fn qr_text(code: &str) -> String {
    render_text(code, false)
}

/// The QR code as small as a terminal can show it, for a screen that also has to show the
/// session code and link (a 24-row terminal): error correction level L (a screen does not get
/// dirty; the smallest symbol), a 2-module quiet zone, two module rows per line, black on bright
/// white. A join link (about 160 characters) takes 25 lines instead of 29.
pub fn qr_terminal_compact(code: &str) -> String {
    match QrCode::with_error_correction_level(code.trim().as_bytes(), EcLevel::L) {
        Ok(symbol) => half_blocks(&symbol, COMPACT_QUIET, true),
        Err(e) => format!("(no QR code: {e})\n"),
    }
}

fn render_text(code: &str, ansi: bool) -> String {
    match qr_symbol(code) {
        Ok(symbol) => half_blocks(&symbol, QUIET, ansi),
        Err(e) => format!("(no QR code: {e})\n"),
    }
}

/// Two module rows per text line: `▀` top dark, `▄` bottom dark, `█` both.
fn half_blocks(symbol: &QrCode, quiet: usize, ansi: bool) -> String {
    let (size, dark) = modules_with(symbol, quiet);
    let mut out = String::with_capacity(size * (size / 2 + 1) * 4);
    for y in (0..size).step_by(2) {
        if ansi {
            out.push_str("\x1b[30;107m");
        }
        for x in 0..size {
            let top = dark[y * size + x];
            let bottom = y + 1 < size && dark[(y + 1) * size + x];
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        if ansi {
            out.push_str("\x1b[0m");
        }
        out.push('\n');
    }
    out
}

/// The QR code as a standalone SVG document (black on white, quiet zone included). If the code
/// is too long for any QR symbol, returns an SVG holding a text message instead.
pub fn qr_svg(code: &str) -> String {
    match qr_symbol(code) {
        Ok(symbol) => symbol
            .render::<qrcode::render::svg::Color<'_>>()
            .quiet_zone(true)
            .min_dimensions(256, 256)
            .build(),
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"400\" height=\"40\">\
             <text x=\"4\" y=\"24\">no QR code: {e}</text></svg>"
        ),
    }
}

/// Writes the QR code as an 8-bit grayscale PNG, 8 pixels per module, quiet zone included.
pub fn write_qr_png(code: &str, path: &Path) -> io::Result<()> {
    let symbol =
        qr_symbol(code).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let (size, dark) = modules(&symbol);
    let px = size * PNG_SCALE;
    let mut pixels = vec![255u8; px * px];
    for (i, row) in pixels.chunks_exact_mut(px).enumerate() {
        let y = i / PNG_SCALE;
        for (j, p) in row.iter_mut().enumerate() {
            if dark[y * size + j / PNG_SCALE] {
                *p = 0;
            }
        }
    }
    let side = u32::try_from(px).map_err(|_| io::Error::other("QR code too large"))?;
    let file = io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(io::Error::other)?;
    writer.write_image_data(&pixels).map_err(io::Error::other)?;
    writer.finish().map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_code_fits_version_5_in_alphanumeric_mode() {
        let code = format!("LS:{}", "A1 $%*+-./:".repeat(9));
        assert_eq!(code.len(), 102);
        let symbol = qr_symbol(&code).unwrap();
        assert_eq!(symbol.version(), Version::Normal(5));
        // Automatic segmentation does no better.
        let auto = QrCode::new(code.as_bytes()).unwrap();
        assert!(auto.width() >= symbol.width());
    }

    #[test]
    fn terminal_rendering_has_quiet_zone_and_colours() {
        let text = qr_terminal("LS:HELLO");
        let lines: Vec<&str> = text.lines().collect();
        // Version 1: 21 modules + 8 quiet = 29 rows, so 15 lines.
        assert_eq!(lines.len(), 15);
        assert!(lines[0].starts_with("\x1b[30;107m"));
        let plain = qr_text("LS:HELLO");
        let first = plain.lines().next().unwrap();
        assert_eq!(first.chars().count(), 29);
        assert!(first.chars().all(|c| c == ' '));
        // Text line 2 holds module rows 4–5: the finder pattern's dark left edge.
        let third: Vec<char> = plain.lines().nth(2).unwrap().chars().collect();
        assert_eq!(third[QUIET - 1], ' ');
        assert_eq!(third[QUIET], '█');
    }

    #[test]
    fn compact_rendering_of_a_join_link_fits_beside_its_code_on_24_rows() {
        // A join link as `JoinLink::to_url` writes it (token and fingerprint in hex).
        let link = format!(
            "lansync://join?h=192.168.178.23:48211&c=ABCD-EFGH&t={}&f={}",
            "0123456789abcdef".repeat(2),
            "0123456789abcdef".repeat(4)
        );
        let compact = qr_terminal_compact(&link);
        let plain = qr_terminal(&link);
        let lines = compact.lines().count();
        assert!(lines <= 25, "{lines} lines");
        assert!(lines < plain.lines().count());
        // Same symbol data: the finder pattern starts after the 2-module margin (line 1).
        let row: Vec<char> = compact
            .lines()
            .nth(1)
            .unwrap()
            .trim_start_matches("\x1b[30;107m")
            .chars()
            .collect();
        assert_eq!(row[COMPACT_QUIET - 1], ' ');
        assert_eq!(row[COMPACT_QUIET], '█');
    }

    #[test]
    fn svg_and_png_render() {
        let svg = qr_svg("LS:HELLO");
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
        let path = std::env::temp_dir().join(format!("lansync-qr-test-{}.png", std::process::id()));
        write_qr_png("LS:HELLO", &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn too_long_is_a_message_not_a_panic() {
        let huge = "A".repeat(10_000);
        assert!(qr_terminal(&huge).starts_with("(no QR code"));
        assert!(qr_svg(&huge).contains("no QR code"));
        assert!(write_qr_png(&huge, Path::new("/nonexistent/x.png")).is_err());
    }
}
