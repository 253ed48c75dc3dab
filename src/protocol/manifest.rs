//! The file manifest as the wire carries it (PROTOCOL.md §11.1): in a `TRANSFER_OFFER` and, as
//! its metadata, in room snapshots. Only the data and the wire's own checks live here; parsing
//! against limits, the pack hash and the metadata a manifest yields are inherent methods
//! written in `crate::transfer` (one crate may `impl` its type anywhere), which re-exports
//! these types, so the wire never imports the transfer machinery.

use serde::{Deserialize, Serialize};

/// The manifest schema this build reads and writes.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// What a manifest describes; decides which error codes its failures get (PROTOCOL.md §11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestKind {
    /// The session pack: scores and the images they use, with media references.
    Pack,
    /// The session media set: audio, video and images.
    Media,
    /// A streamed score (STREAM_PREPARE): one temporary, view-only file for the current song.
    /// Refused with the media error codes.
    Stream,
}

/// One file of a manifest. Its index in [`Manifest::files`] is its file index on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// Stable identity of the file (identifier alphabet, 1–64 bytes); media refs name it.
    pub id: String,
    /// File name to store it under, safe on every OS (PROTOCOL.md §11.1).
    pub name: String,
    /// Size in bytes (at least 1).
    pub size: u64,
    /// MIME type; must agree with the extension (PROTOCOL.md §11.2).
    pub mime: String,
    /// Lower-case hex SHA-256 of the content (64 characters).
    pub sha256: String,
    /// Ids of media files this file uses (e.g. a score's backing track); at most 64.
    #[serde(default)]
    pub media_refs: Vec<String>,
}

/// A pack or media manifest. Serialised as camelCase JSON; its canonical form (this struct
/// written by `serde_json` with no whitespace, fields in declaration order) is what the pack
/// hash covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Schema version, [`MANIFEST_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Pack or media.
    pub kind: ManifestKind,
    /// The files, in wire order.
    pub files: Vec<FileEntry>,
    /// When the host published it, ms since the Unix epoch.
    pub updated_at: u64,
    /// Device id of the host that published it.
    pub uploaded_by: String,
}

/// `sessionPackMeta` (PROTOCOL.md §11.1): what a room snapshot says about the published pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionPackMeta {
    /// Pack hash (SHA-256 hex of the canonical manifest JSON).
    pub hash: String,
    /// Sum of the pack's file sizes, bytes.
    pub size: u64,
    /// Publication time, ms since the Unix epoch.
    pub updated_at: u64,
    /// Host device id.
    pub uploaded_by: String,
    /// Files that are images.
    pub images_count: u32,
    /// Distinct media ids referenced by the pack's files.
    pub media_refs_count: u32,
}

/// `sessionMediaMeta` (PROTOCOL.md §11.1): what a room snapshot says about the published media.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionMediaMeta {
    /// Number of media files.
    pub files_count: u32,
    /// Sum of their sizes, bytes.
    pub total_bytes: u64,
    /// Publication time, ms since the Unix epoch.
    pub updated_at: u64,
    /// Host device id.
    pub uploaded_by: String,
}

/// Whether `s` is a SHA-256 in lower-case hex (64 digits).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
