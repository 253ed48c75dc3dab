//! File transfer: chunking, manifests, hashing, resume and media validation (pure, sans-IO).
//!
//! A host sends files (score PDFs, MusicXML, images, audio, video) to a participant over the
//! `binary` data channel of a link; the `control` channel carries the four messages that steer
//! it (`TRANSFER_OFFER`, `TRANSFER_REQUEST`, `TRANSFER_DONE`, `TRANSFER_ABORT`, see
//! [`crate::protocol`]). Nothing here reads files, clocks or sockets:
//!
//! ```text
//!                 OFFER {transfer, kind, manifest}
//!   Sender ──────────────────────────────────────────▶ Receiver
//!          ◀──────────────────────────────────────────  REQUEST {transfer, hash, want: [{file, from}]}
//!          ── binary: [transfer u32 LE][chunk u32 LE][≤ 16 376 bytes] … ─▶
//!          ◀──────────────────────────────────────────  DONE {transfer, hash} | ABORT {transfer, code}
//! ```
//!
//! - [`Sender`] asks its driver for file ranges ([`SenderOutput::Read`]), turns the bytes into
//!   chunk messages and keeps at most [`SenderConfig::max_in_flight`] bytes outstanding: the
//!   driver reports drained bytes and the sender waits, it never drops.
//! - [`Receiver`] checks each chunk against the manifest, hashes it incrementally and tells its
//!   driver to [`ReceiverOutput::Write`] it into a temporary file; only when the SHA-256 of the
//!   whole file matches does it say [`ReceiverOutput::Commit`] (rename to the final name);
//!   otherwise [`ReceiverOutput::Discard`]. Nothing half-written is ever reported valid.
//! - Resume: after a cut the sender offers again (a new transfer index, same manifest); the
//!   receiver requests only what it lacks — per file, the suffix after the bytes it already
//!   holds; verified files are never sent again.
//!
//! `PROTOCOL.md` §11 is the normative description.

mod chunk;
mod error;
mod manifest;
mod media;
mod progress;
mod receiver;
mod sender;

pub use chunk::{
    chunk_count, decode_chunk, encode_chunk, Chunk, CHUNK_HEADER_LEN, MAX_CHUNK_MESSAGE,
    MAX_CHUNK_PAYLOAD,
};
pub use error::TransferError;
#[cfg(feature = "native")]
pub(crate) use manifest::check_name as check_file_name;
pub use manifest::{
    authorize_upload, normalize_session_code, pack_hash, sha256_hex, start_gate_fingerprint,
    start_gate_open, Limits, MAX_FILE_NAME_LEN, MAX_MEDIA_REFS,
};
// The manifest is the wire's (PROTOCOL.md §11.1); its transfer methods are in `manifest`.
pub use crate::protocol::{
    is_sha256_hex, FileEntry, Manifest, ManifestKind, SessionMediaMeta, SessionPackMeta,
    MANIFEST_SCHEMA_VERSION,
};
pub use media::{check_media, sniff, MediaType};
pub use progress::Progress;
pub use receiver::{HeldFile, Receiver, ReceiverConfig, ReceiverOutput};
pub use sender::{Sender, SenderConfig, SenderOutput};

/// Something the application should know about a transfer (both machines emit these).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TransferEvent {
    /// One file is complete: sent in full (sender) or verified and committed (receiver).
    FileDone {
        /// Transfer index of the round.
        transfer: u32,
        /// File index in the manifest.
        file: u32,
    },
    /// Every file of the manifest is held and verified by the receiver.
    Done {
        /// Transfer index of the round.
        transfer: u32,
        /// Pack hash of the manifest.
        hash: String,
    },
    /// The round stopped; the code is stable (see [`TransferError::code`]). Files already
    /// committed stay valid and a new offer resumes the rest.
    Failed {
        /// Transfer index of the round.
        transfer: u32,
        /// Stable error code.
        code: String,
        /// Human message.
        message: String,
    },
}

#[cfg(test)]
mod tests;
