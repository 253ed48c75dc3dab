//! What the transfer does with a manifest (PROTOCOL.md §11.1): parse it against limits, the pack
//! hash, the metadata shown in room snapshots, and the start-gate fingerprint. The manifest
//! types themselves are the wire's ([`crate::protocol::Manifest`]).

use super::media::{check_declared, MediaType};
use super::{chunk_count, TransferError};
use crate::protocol::{
    check_id, is_sha256_hex, Manifest, ManifestKind, SessionMediaMeta, SessionPackMeta,
    MANIFEST_SCHEMA_VERSION,
};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// Longest file name, in bytes of UTF-8.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Most media references one file may carry.
pub const MAX_MEDIA_REFS: usize = 64;
/// Largest manifest JSON accepted on its own (it also travels inside a 64 KiB control message).
pub const MAX_MANIFEST_JSON: usize = 60 * 1024;

/// Limits a receiver (or a host checking its own pack) applies; configurable per app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single file, bytes.
    pub max_file_bytes: u64,
    /// Largest sum of file sizes of one manifest, bytes.
    pub max_total_bytes: u64,
    /// Most files in one manifest.
    pub max_files: usize,
}

impl Default for Limits {
    /// 256 MiB per file, 1 GiB per session, 200 files.
    fn default() -> Self {
        Limits {
            max_file_bytes: 256 << 20,
            max_total_bytes: 1 << 30,
            max_files: 200,
        }
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::auth::hex(&Sha256::digest(bytes))
}

/// Device names Windows reserves in every directory, whatever the extension (PROTOCOL.md §11.1).
const WINDOWS_RESERVED: [&str; 28] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "COM¹", "COM²", "COM³", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8",
    "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Characters Windows, macOS or Android file systems refuse or treat as separators.
const INVALID_CHARS: [char; 9] = ['<', '>', ':', '"', '/', '\\', '|', '?', '*'];

/// Invisible format characters (Unicode category Cf) that can make a name read as another one
/// (bidi overrides turn `gpj.exe` into `exe.jpg` on screen).
fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{0600}'..='\u{0605}'
        | '\u{061C}'
        | '\u{06DD}'
        | '\u{070F}'
        | '\u{0890}'..='\u{0891}'
        | '\u{08E2}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}'
        | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}'
        | '\u{E0020}'..='\u{E007F}')
}

/// Whether a file name is safe to create inside a directory on any OS (PROTOCOL.md §11.1).
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_FILE_NAME_LEN {
        return Err("file name must be 1 to 255 bytes");
    }
    if name.contains(INVALID_CHARS) {
        return Err("file name contains a character invalid on some systems (< > : \" / \\ | ? *)");
    }
    if name.contains("..") {
        return Err("file name contains `..`");
    }
    if name.chars().any(char::is_control) {
        return Err("file name contains control characters");
    }
    if name.chars().any(is_format_char) {
        return Err("file name contains invisible format or bidi characters");
    }
    if name.trim() != name {
        return Err("file name starts or ends with whitespace");
    }
    if name.ends_with('.') {
        return Err("file name ends with a dot");
    }
    // `CON`, `con.pdf`, `Com1.tar.gz`: the part before the first dot names a device on Windows.
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    if WINDOWS_RESERVED
        .iter()
        .any(|r| r.eq_ignore_ascii_case(stem))
    {
        return Err("file name is a device name reserved on Windows");
    }
    Ok(())
}

/// The form two names are compared in: NFC, then lower case (an approximation of Unicode case
/// folding that covers what case-insensitive file systems merge in practice).
pub(crate) fn name_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.nfc().collect::<String>().to_lowercase()
}

// `Manifest` is the wire's (crate::protocol); what needs the transfer machinery (limits, error
// codes, the media whitelist, chunk counts) is implemented here.
impl Manifest {
    /// Parses and validates manifest JSON (at most 60 KiB).
    pub fn decode(
        json: &[u8],
        kind: ManifestKind,
        limits: &Limits,
    ) -> Result<Manifest, TransferError> {
        let invalid = |r: String| match kind {
            ManifestKind::Pack => TransferError::InvalidSessionPack(r),
            ManifestKind::Media | ManifestKind::Stream => TransferError::InvalidSessionMedia(r),
        };
        if json.len() > MAX_MANIFEST_JSON {
            return Err(invalid(format!(
                "manifest of {} bytes is over 60 KiB",
                json.len()
            )));
        }
        let mut m: Manifest = serde_json::from_slice(json).map_err(|e| invalid(e.to_string()))?;
        if m.kind != kind {
            return Err(invalid(format!("expected a {kind:?} manifest")));
        }
        m.validate(limits)?;
        Ok(m)
    }

    /// The canonical JSON the pack hash covers.
    pub fn canonical_json(&self) -> String {
        // Serialising plain strings, integers and vectors cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// SHA-256 (lower-case hex) of the canonical JSON.
    pub fn hash(&self) -> String {
        sha256_hex(self.canonical_json().as_bytes())
    }

    /// Sum of the file sizes.
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|f| f.size)
            .fold(0, u64::saturating_add)
    }

    /// Chunks of the whole transfer, or `None` when more than `u32::MAX` (refused by validate).
    pub fn total_chunks(&self) -> Option<u32> {
        let n = self
            .files
            .iter()
            .map(|f| chunk_count(f.size))
            .fold(0u64, u64::saturating_add);
        u32::try_from(n).ok()
    }

    /// Index of the first chunk of each file (files start on a fresh chunk).
    pub fn chunk_bases(&self) -> Vec<u32> {
        let mut base = 0u64;
        self.files
            .iter()
            .map(|f| {
                let b = base;
                base = base.saturating_add(chunk_count(f.size));
                u32::try_from(b).unwrap_or(u32::MAX)
            })
            .collect()
    }

    fn invalid(&self, reason: impl Into<String>) -> TransferError {
        match self.kind {
            ManifestKind::Pack => TransferError::InvalidSessionPack(reason.into()),
            ManifestKind::Media | ManifestKind::Stream => {
                TransferError::InvalidSessionMedia(reason.into())
            }
        }
    }

    fn too_large(&self, size: u64, limit: u64) -> TransferError {
        match self.kind {
            ManifestKind::Pack => TransferError::SessionPackTooLarge { size, limit },
            ManifestKind::Media | ManifestKind::Stream => {
                TransferError::SessionMediaTooLarge { size, limit }
            }
        }
    }

    /// Checks every rule, with codes by kind: schema and names → `invalid-session-pack|media`,
    /// sizes → `session-pack|media-too-large`, type → `session-media-unsupported-type`.
    /// Nothing is clamped: the pack hash covers the manifest exactly as sent.
    pub fn validate(&mut self, limits: &Limits) -> Result<(), TransferError> {
        if self.schema_version != MANIFEST_SCHEMA_VERSION {
            return Err(self.invalid(format!(
                "schema version {} is not supported (expected {MANIFEST_SCHEMA_VERSION})",
                self.schema_version
            )));
        }
        check_id("uploadedBy", &self.uploaded_by, false)
            .map_err(|e| self.invalid(e.to_string()))?;
        if self.files.len() > limits.max_files {
            return Err(self.invalid(format!(
                "{} files, at most {} allowed",
                self.files.len(),
                limits.max_files
            )));
        }
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for f in &self.files {
            check_id("id", &f.id, false).map_err(|e| self.invalid(e.to_string()))?;
            if !ids.insert(f.id.as_str()) {
                return Err(self.invalid(format!("duplicate file id {:?}", f.id)));
            }
            check_name(&f.name).map_err(|r| self.invalid(format!("{r}: {:?}", f.name)))?;
            // Normalising or case-insensitive file systems would merge these names.
            if !names.insert(name_key(&f.name)) {
                return Err(self.invalid(format!("duplicate file name {:?}", f.name)));
            }
            if !is_sha256_hex(&f.sha256) {
                return Err(self.invalid(format!(
                    "sha256 of {:?} is not 64 lower-case hex digits",
                    f.name
                )));
            }
            if f.media_refs.len() > MAX_MEDIA_REFS {
                return Err(self.invalid(format!("{:?} has more than 64 media refs", f.name)));
            }
            for r in &f.media_refs {
                check_id("mediaRefs", r, false).map_err(|e| self.invalid(e.to_string()))?;
            }
            if f.size == 0 {
                return Err(self.invalid(format!("{:?} is empty", f.name)));
            }
            if f.size > limits.max_file_bytes {
                return Err(self.too_large(f.size, limits.max_file_bytes));
            }
            check_declared(&f.name, &f.mime)?;
        }
        let total = self.total_bytes();
        if total > limits.max_total_bytes {
            return Err(self.too_large(total, limits.max_total_bytes));
        }
        if self.total_chunks().is_none() {
            return Err(
                self.too_large(total, u64::from(u32::MAX) * super::MAX_CHUNK_PAYLOAD as u64)
            );
        }
        Ok(())
    }

    /// The whitelisted type of file `i` (already checked by [`validate`](Manifest::validate)).
    pub fn media_type(&self, i: usize) -> Option<MediaType> {
        let f = self.files.get(i)?;
        check_declared(&f.name, &f.mime).ok()
    }

    /// Metadata of a pack for room snapshots (`sessionPackMeta`).
    pub fn pack_meta(&self) -> SessionPackMeta {
        let refs: HashSet<&str> = self
            .files
            .iter()
            .flat_map(|f| f.media_refs.iter().map(String::as_str))
            .collect();
        SessionPackMeta {
            hash: self.hash(),
            size: self.total_bytes(),
            updated_at: self.updated_at,
            uploaded_by: self.uploaded_by.clone(),
            images_count: (0..self.files.len())
                .filter(|&i| self.media_type(i).is_some_and(MediaType::is_image))
                .count() as u32,
            media_refs_count: refs.len() as u32,
        }
    }

    /// Metadata of a media set for room snapshots (`sessionMediaMeta`).
    pub fn media_meta(&self) -> SessionMediaMeta {
        SessionMediaMeta {
            files_count: self.files.len() as u32,
            total_bytes: self.total_bytes(),
            updated_at: self.updated_at,
            uploaded_by: self.uploaded_by.clone(),
        }
    }
}

/// SHA-256 (hex) of a manifest's canonical JSON: the pack hash.
pub fn pack_hash(manifest: &Manifest) -> String {
    manifest.hash()
}

/// Only the host publishes: `forbidden-not-host` for anyone else.
pub fn authorize_upload(sender_id: &str, host_id: &str) -> Result<(), TransferError> {
    if sender_id.is_empty() || sender_id != host_id {
        return Err(TransferError::ForbiddenNotHost);
    }
    Ok(())
}

/// A session code as compared everywhere: upper case, spaces and dashes removed.
pub fn normalize_session_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// The start-gate fingerprint of lot 7.7c: `CODE|packHash|packUpdatedAt|mediaUpdatedAt`, with an
/// empty field for an absent pack or media ("no media" is a valid state).
pub fn start_gate_fingerprint(
    session_code: &str,
    pack: Option<&SessionPackMeta>,
    media: Option<&SessionMediaMeta>,
) -> String {
    let (hash, pack_at) = pack.map_or((String::new(), String::new()), |p| {
        (p.hash.clone(), p.updated_at.to_string())
    });
    let media_at = media.map_or(String::new(), |m| m.updated_at.to_string());
    format!(
        "{}|{hash}|{pack_at}|{media_at}",
        normalize_session_code(session_code)
    )
}

/// Whether a participant may start: always when the host has no pack published, otherwise only
/// once the participant has validated exactly the host's current fingerprint.
pub fn start_gate_open(
    host_pack: Option<&SessionPackMeta>,
    host_fingerprint: &str,
    validated: Option<&str>,
) -> bool {
    host_pack.is_none() || validated == Some(host_fingerprint)
}
