//! The media whitelist: a file is accepted only when its extension, its declared MIME type and
//! its first bytes (magic) all name the same type.
//!
//! SVG is deliberately absent: it is XML that can carry scripts and external references, and
//! apps often show files in a web view. Drawings travel as PNG/WebP; scores as PDF or MusicXML.

use super::TransferError;
use serde::{Deserialize, Serialize};

/// A whitelisted file type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    /// PDF score or document (`%PDF-`).
    Pdf,
    /// Uncompressed MusicXML (`.musicxml`, `.xml`): XML text with a score root.
    MusicXml,
    /// Compressed MusicXML (`.mxl`): a ZIP archive (`PK\x03\x04`).
    Mxl,
    /// PNG image.
    Png,
    /// JPEG image (`FF D8 FF`).
    Jpeg,
    /// WebP image (`RIFF….WEBP`).
    Webp,
    /// GIF image (`GIF87a`/`GIF89a`), for simple animated references.
    Gif,
    /// MP3 audio (an ID3 tag or an MPEG frame sync).
    Mp3,
    /// Ogg audio (Vorbis/Opus, `OggS`).
    Ogg,
    /// WAV audio (`RIFF….WAVE`).
    Wav,
    /// FLAC audio (`fLaC`).
    Flac,
    /// MPEG-4 video or audio (`….ftyp` at offset 4; `.mp4`, `.m4a`).
    Mp4,
    /// WebM / Matroska video or audio (EBML `1A 45 DF A3`).
    Webm,
}

impl MediaType {
    /// Every type, in documentation order.
    pub const ALL: [MediaType; 13] = [
        MediaType::Pdf,
        MediaType::MusicXml,
        MediaType::Mxl,
        MediaType::Png,
        MediaType::Jpeg,
        MediaType::Webp,
        MediaType::Gif,
        MediaType::Mp3,
        MediaType::Ogg,
        MediaType::Wav,
        MediaType::Flac,
        MediaType::Mp4,
        MediaType::Webm,
    ];

    /// The type a file extension (without the dot, any case) names.
    pub fn from_extension(ext: &str) -> Option<MediaType> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "pdf" => MediaType::Pdf,
            "musicxml" | "xml" => MediaType::MusicXml,
            "mxl" => MediaType::Mxl,
            "png" => MediaType::Png,
            "jpg" | "jpeg" => MediaType::Jpeg,
            "webp" => MediaType::Webp,
            "gif" => MediaType::Gif,
            "mp3" => MediaType::Mp3,
            "ogg" | "oga" | "opus" => MediaType::Ogg,
            "wav" => MediaType::Wav,
            "flac" => MediaType::Flac,
            "mp4" | "m4a" => MediaType::Mp4,
            "webm" => MediaType::Webm,
            _ => return None,
        })
    }

    /// MIME types accepted for this type; the first is the canonical one.
    pub fn mimes(self) -> &'static [&'static str] {
        match self {
            MediaType::Pdf => &["application/pdf"],
            MediaType::MusicXml => &[
                "application/vnd.recordare.musicxml+xml",
                "application/xml",
                "text/xml",
            ],
            MediaType::Mxl => &["application/vnd.recordare.musicxml"],
            MediaType::Png => &["image/png"],
            MediaType::Jpeg => &["image/jpeg", "image/jpg"],
            MediaType::Webp => &["image/webp"],
            MediaType::Gif => &["image/gif"],
            MediaType::Mp3 => &["audio/mpeg", "audio/mp3"],
            MediaType::Ogg => &["audio/ogg", "audio/opus", "application/ogg"],
            MediaType::Wav => &["audio/wav", "audio/x-wav", "audio/wave"],
            MediaType::Flac => &["audio/flac", "audio/x-flac"],
            MediaType::Mp4 => &["video/mp4", "audio/mp4", "audio/x-m4a"],
            MediaType::Webm => &["video/webm", "audio/webm"],
        }
    }

    /// Whether this is an image (counted in `imagesCount`).
    pub fn is_image(self) -> bool {
        matches!(
            self,
            MediaType::Png | MediaType::Jpeg | MediaType::Webp | MediaType::Gif
        )
    }

    /// Whether `head` (the first bytes of a file, at least the first chunk) starts like this type.
    pub fn matches_magic(self, head: &[u8]) -> bool {
        match self {
            MediaType::Pdf => head.starts_with(b"%PDF-"),
            MediaType::MusicXml => looks_like_musicxml(head),
            MediaType::Mxl => head.starts_with(b"PK\x03\x04"),
            MediaType::Png => head.starts_with(b"\x89PNG\r\n\x1a\n"),
            MediaType::Jpeg => head.starts_with(&[0xFF, 0xD8, 0xFF]),
            MediaType::Webp => head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP"),
            MediaType::Gif => head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a"),
            MediaType::Mp3 => {
                head.starts_with(b"ID3")
                    || matches!(head, [0xFF, b, ..] if b & 0xE0 == 0xE0 && b & 0x06 != 0)
            }
            MediaType::Ogg => head.starts_with(b"OggS"),
            MediaType::Wav => head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WAVE"),
            MediaType::Flac => head.starts_with(b"fLaC"),
            MediaType::Mp4 => head.get(4..8) == Some(b"ftyp"),
            MediaType::Webm => head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]),
        }
    }
}

/// XML text whose first markup is an XML declaration, a score DOCTYPE or a score root element.
fn looks_like_musicxml(head: &[u8]) -> bool {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let text = &head[start..];
    [
        &b"<?xml"[..],
        b"<!DOCTYPE score-",
        b"<score-partwise",
        b"<score-timewise",
    ]
    .iter()
    .any(|m| text.starts_with(m))
}

/// The whitelisted type whose magic bytes `head` carries, if any. MusicXML is only recognised
/// by its XML start, so any XML document sniffs as [`MediaType::MusicXml`].
pub fn sniff(head: &[u8]) -> Option<MediaType> {
    MediaType::ALL.into_iter().find(|t| t.matches_magic(head))
}

fn unsupported(name: &str, reason: impl Into<String>) -> TransferError {
    TransferError::SessionMediaUnsupportedType {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Checks a file's name and MIME type against the whitelist (no content needed), returning the
/// type they agree on.
pub(crate) fn check_declared(name: &str, mime: &str) -> Result<MediaType, TransferError> {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e)
        .ok_or_else(|| unsupported(name, "no file extension"))?;
    let ty = MediaType::from_extension(ext)
        .ok_or_else(|| unsupported(name, format!("extension .{ext} is not allowed")))?;
    let mime_l = mime.to_ascii_lowercase();
    if !ty.mimes().contains(&mime_l.as_str()) {
        return Err(unsupported(
            name,
            format!("MIME type {mime:?} does not match .{ext}"),
        ));
    }
    Ok(ty)
}

/// Checks name, MIME type and the first bytes of the content: all three must agree. A file whose
/// magic bytes lie about its extension is `session-media-unsupported-type`.
pub fn check_media(name: &str, mime: &str, head: &[u8]) -> Result<MediaType, TransferError> {
    let ty = check_declared(name, mime)?;
    if !ty.matches_magic(head) {
        return Err(unsupported(
            name,
            format!("content does not start like {ty:?} (magic bytes)"),
        ));
    }
    Ok(ty)
}
