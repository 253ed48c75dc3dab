//! The one error type of file transfer, with the stable codes of PROTOCOL.md §11.6 (kebab-case).

/// Why a transfer input was refused. Every variant has a stable [`code`](TransferError::code)
/// shown to apps and sent in `TRANSFER_ABORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The session pack manifest breaks a schema rule.
    #[error("invalid session pack: {0}")]
    InvalidSessionPack(String),
    /// The session pack (one file or the whole) is over the limit.
    #[error("session pack too large: {size} bytes, limit {limit}")]
    SessionPackTooLarge {
        /// Bytes declared.
        size: u64,
        /// The limit exceeded.
        limit: u64,
    },
    /// The host has no pack published.
    #[error("no session pack is published for this session")]
    SessionPackNotFound,
    /// The session media manifest breaks a schema rule.
    #[error("invalid session media: {0}")]
    InvalidSessionMedia(String),
    /// One media file or the whole media set is over the limit.
    #[error("session media too large: {size} bytes, limit {limit}")]
    SessionMediaTooLarge {
        /// Bytes declared.
        size: u64,
        /// The limit exceeded.
        limit: u64,
    },
    /// The host has no media published ("no media" is a valid state, not a failure).
    #[error("no session media is published for this session")]
    SessionMediaNotFound,
    /// A file index that the manifest does not have.
    #[error("file {0} is not in the manifest")]
    SessionMediaFileNotFound(u32),
    /// Extension, MIME type or content (magic bytes) not on the whitelist, or not agreeing.
    #[error("unsupported media type for {name:?}: {reason}")]
    SessionMediaUnsupportedType {
        /// File name.
        name: String,
        /// What did not match.
        reason: String,
    },
    /// Only the host may publish a pack or media.
    #[error("only the host may publish files in this session")]
    ForbiddenNotHost,
    /// A file's bytes do not hash to the manifest's SHA-256; it was discarded.
    #[error("file {file} does not match its SHA-256; discarded")]
    HashMismatch {
        /// File index.
        file: u32,
    },
    /// A binary message shorter than its header, or a chunk shorter than it must be.
    #[error("chunk of {len} bytes is truncated")]
    TruncatedChunk {
        /// Bytes received.
        len: usize,
    },
    /// A binary message over 16 384 bytes, or a chunk longer than its file allows.
    #[error("chunk of {len} bytes is over the limit")]
    OversizeChunk {
        /// Bytes received.
        len: usize,
    },
    /// A chunk index past the end of the transfer.
    #[error("chunk {index} is out of range for transfer {transfer}")]
    ChunkOutOfRange {
        /// Transfer index.
        transfer: u32,
        /// Chunk index.
        index: u32,
    },
    /// A chunk or control message for a transfer index that is not the active one (stale).
    #[error("transfer {0} is not active")]
    UnknownTransfer(u32),
    /// A chunk that was already received (ignored).
    #[error("chunk {0} was already received")]
    DuplicateChunk(u32),
    /// A chunk arrived ahead of one that never came.
    #[error("chunk {expected} is missing (got {got})")]
    MissingChunk {
        /// The chunk index expected next.
        expected: u32,
        /// The chunk index received.
        got: u32,
    },
    /// A chunk that was not requested (the file is verified, or not wanted).
    #[error("chunk {0} was not requested")]
    UnexpectedChunk(u32),
    /// The driver fed bytes that do not answer the read asked for (a driver bug or a file
    /// that changed on disk).
    #[error("data for file {file} at {offset} does not answer the pending read")]
    UnexpectedData {
        /// File index fed.
        file: u32,
        /// Offset fed.
        offset: u64,
    },
    /// A control message that does not fit the machine's state.
    #[error("unexpected message: {0}")]
    UnexpectedMessage(&'static str),
    /// The peer aborted the transfer with this code.
    #[error("the peer aborted the transfer: {0}")]
    Aborted(String),
    /// The link went down mid-transfer; a new offer resumes.
    #[error("the link went down; the transfer will resume on reconnect")]
    LinkLost,
    /// Accepting the offer would take what this device holds for the session over its quota.
    #[error("over the session's storage quota: {needed} bytes, quota {quota}")]
    QuotaExceeded {
        /// Bytes the session would hold.
        needed: u64,
        /// The quota.
        quota: u64,
    },
    /// The disk has less free space than the offer still needs.
    #[error("not enough free disk space: {needed} bytes needed, {available} available")]
    InsufficientStorage {
        /// Bytes the offer still needs.
        needed: u64,
        /// Bytes free for this user.
        available: u64,
    },
    /// A temporary or working path is not the private regular file or directory it must be
    /// (e.g. a planted symbolic link); it was not followed.
    #[error("unsafe path refused: {0}")]
    UnsafePath(String),
}

impl TransferError {
    /// The stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            TransferError::InvalidSessionPack(_) => "invalid-session-pack",
            TransferError::SessionPackTooLarge { .. } => "session-pack-too-large",
            TransferError::SessionPackNotFound => "session-pack-not-found",
            TransferError::InvalidSessionMedia(_) => "invalid-session-media",
            TransferError::SessionMediaTooLarge { .. } => "session-media-too-large",
            TransferError::SessionMediaNotFound => "session-media-not-found",
            TransferError::SessionMediaFileNotFound(_) => "session-media-file-not-found",
            TransferError::SessionMediaUnsupportedType { .. } => "session-media-unsupported-type",
            TransferError::ForbiddenNotHost => "forbidden-not-host",
            TransferError::HashMismatch { .. } => "hash-mismatch",
            TransferError::TruncatedChunk { .. } => "truncated-chunk",
            TransferError::OversizeChunk { .. } => "oversize-chunk",
            TransferError::ChunkOutOfRange { .. } => "chunk-out-of-range",
            TransferError::UnknownTransfer(_) => "unknown-transfer",
            TransferError::DuplicateChunk(_) => "duplicate-chunk",
            TransferError::MissingChunk { .. } => "missing-chunk",
            TransferError::UnexpectedChunk(_) => "unexpected-chunk",
            TransferError::UnexpectedData { .. } => "unexpected-data",
            TransferError::UnexpectedMessage(_) => "unexpected-message",
            TransferError::Aborted(_) => "transfer-aborted",
            TransferError::LinkLost => "link-lost",
            TransferError::QuotaExceeded { .. } => "quota-exceeded",
            TransferError::InsufficientStorage { .. } => "insufficient-storage",
            TransferError::UnsafePath(_) => "unsafe-path",
        }
    }

    /// Every code, for documentation and tests.
    pub const CODES: &'static [&'static str] = &[
        "invalid-session-pack",
        "session-pack-too-large",
        "session-pack-not-found",
        "invalid-session-media",
        "session-media-too-large",
        "session-media-not-found",
        "session-media-file-not-found",
        "session-media-unsupported-type",
        "forbidden-not-host",
        "hash-mismatch",
        "truncated-chunk",
        "oversize-chunk",
        "chunk-out-of-range",
        "unknown-transfer",
        "duplicate-chunk",
        "missing-chunk",
        "unexpected-chunk",
        "unexpected-data",
        "unexpected-message",
        "transfer-aborted",
        "link-lost",
        "quota-exceeded",
        "insufficient-storage",
        "unsafe-path",
    ];
}
