//! Payloads of the file-transfer control messages (PROTOCOL.md §11).
//!
//! Only the wire shape is checked here (identifiers, hashes, counts, order). The receiver's
//! [`crate::transfer::Receiver`] applies its configured limits and the media whitelist to an
//! offer and answers `TRANSFER_ABORT` with the exact error code, so a sender learns why.

use super::manifest::{is_sha256_hex, Manifest};
use super::{check_id, clamp_name, DecodeError, Validate};
use serde::{Deserialize, Serialize};

/// Most files a manifest on the wire may list (a receiver's own limit is usually lower).
pub const MAX_WIRE_FILES: usize = 1024;
/// Longest error code in a `TRANSFER_ABORT`, bytes.
pub const MAX_CODE_LEN: usize = 64;

fn invalid(field: &'static str, reason: &'static str) -> DecodeError {
    DecodeError::Invalid { field, reason }
}

fn check_hash(field: &'static str, h: &str) -> Result<(), DecodeError> {
    if is_sha256_hex(h) {
        Ok(())
    } else {
        Err(invalid(field, "not 64 lower-case hex digits"))
    }
}

/// `TRANSFER_OFFER`, host → participant: the files of one round and the transfer index its
/// chunks carry. A new round (after a cut) has a new index and may repeat the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferOffer {
    /// Transfer index: the first u32 of every chunk header of this round.
    pub transfer: u32,
    /// The pack or media manifest.
    pub manifest: Manifest,
}

impl Validate for TransferOffer {
    fn validate(&mut self) -> Result<(), DecodeError> {
        let m = &self.manifest;
        if m.files.len() > MAX_WIRE_FILES {
            return Err(invalid("manifest.files", "more than 1024 entries"));
        }
        check_id("manifest.uploadedBy", &m.uploaded_by, false)?;
        for f in &m.files {
            check_id("manifest.files.id", &f.id, false)?;
            check_hash("manifest.files.sha256", &f.sha256)?;
        }
        Ok(())
    }
}

/// One file wanted in a `TRANSFER_REQUEST`: its bytes from `from` to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWant {
    /// File index in the manifest.
    pub file: u32,
    /// First byte wanted: what the receiver already holds, a multiple of 16 376 (0 = all).
    #[serde(default)]
    pub from: u64,
}

/// `TRANSFER_REQUEST`, participant → host: which ranges to send for the offered round.
/// Files not listed are held and verified already; they are never sent again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// The offer's transfer index.
    pub transfer: u32,
    /// Pack hash of the offered manifest, proving both sides mean the same files.
    pub hash: String,
    /// Files wanted, ascending by file index, each at most once.
    #[serde(default)]
    pub want: Vec<FileWant>,
}

impl Validate for TransferRequest {
    fn validate(&mut self) -> Result<(), DecodeError> {
        check_hash("hash", &self.hash)?;
        if self.want.len() > MAX_WIRE_FILES {
            return Err(invalid("want", "more than 1024 entries"));
        }
        if self.want.windows(2).any(|w| w[0].file >= w[1].file) {
            return Err(invalid("want", "not strictly ascending by file"));
        }
        Ok(())
    }
}

/// `TRANSFER_DONE`, participant → host: every file of the manifest is held and verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferDone {
    /// The round's transfer index.
    pub transfer: u32,
    /// Pack hash of the manifest now held.
    pub hash: String,
}

impl Validate for TransferDone {
    fn validate(&mut self) -> Result<(), DecodeError> {
        check_hash("hash", &self.hash)
    }
}

/// `TRANSFER_ABORT`, either way: the round stops. Committed files stay valid; a new offer
/// resumes the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferAbort {
    /// The round's transfer index.
    pub transfer: u32,
    /// Stable kebab-case error code (e.g. `hash-mismatch`, `forbidden-not-host`).
    pub code: String,
    /// The file concerned, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<u32>,
    /// Human detail (clamped to 48 bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Validate for TransferAbort {
    fn validate(&mut self) -> Result<(), DecodeError> {
        if self.code.is_empty()
            || self.code.len() > MAX_CODE_LEN
            || !self
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid("code", "must be 1 to 64 bytes of a-z 0-9 -"));
        }
        clamp_name(&mut self.message);
        Ok(())
    }
}
