//! What the file service tells the app ([`FilesEvent`]) and how often it reports progress.

use crate::session::{PeerId, Time};
use crate::transfer::{ManifestKind, Progress, TransferError};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// How often progress is reported per round.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// What the app is told about files. Serialised as `{"event":"files_…",…}` in `--json` mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FilesEvent {
    /// A round is moving: sent (host, per peer) or received (participant) so far.
    FilesProgress {
        /// Which set.
        kind: ManifestKind,
        /// The peer (host side only).
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<PeerId>,
        /// Counters, rate and ETA.
        #[serde(flatten)]
        progress: ProgressView,
    },
    /// One file is verified and in place.
    FileReceived {
        /// Which set.
        kind: ManifestKind,
        /// Where it is: `<dir>/<name>`, or `<dir>/<stem> (n).<ext>` when a file lansync did not
        /// write already has the name (PROTOCOL.md §11.5).
        path: PathBuf,
    },
    /// A whole set is held and verified (participant) or confirmed by a peer (host).
    #[serde(rename = "files_done")]
    Done {
        /// Which set.
        kind: ManifestKind,
        /// The peer that confirmed (host side only).
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<PeerId>,
        /// Pack hash of the set.
        hash: String,
    },
    /// A round stopped; verified files stay and the next link resumes the rest.
    #[serde(rename = "files_failed")]
    Failed {
        /// Which set.
        kind: ManifestKind,
        /// The peer (host side only).
        #[serde(skip_serializing_if = "Option::is_none")]
        peer: Option<PeerId>,
        /// Stable error code (PROTOCOL.md §11.6, e.g. `hash-mismatch`).
        code: String,
        /// Human message.
        message: String,
    },
    /// The participant's start gate (lot 7.7c): open when the host has no pack, or when this
    /// device holds and has verified exactly the host's current pack and media.
    StartGate {
        /// Whether the participant may start.
        open: bool,
        /// The host's fingerprint `CODE|packHash|packUpdatedAt|mediaUpdatedAt`.
        fingerprint: String,
    },
    /// A streamed score is verified and may be shown (view only) from `path`.
    StreamReady {
        /// Its stream id.
        stream_id: String,
        /// Where it is.
        path: PathBuf,
    },
    /// The streamed score was removed from disk.
    StreamRemoved,
}

/// Progress as reported to apps (durations in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProgressView {
    /// Payload bytes moved in this round.
    pub bytes_done: u64,
    /// Payload bytes the round moves (only what was missing).
    pub bytes_total: u64,
    /// Files completed.
    pub files_done: u32,
    /// Files the round moves.
    pub files_total: u32,
    /// Bytes per second so far.
    pub rate: Option<u64>,
    /// Estimated time left, ms.
    pub eta_ms: Option<u64>,
}

impl From<&Progress> for ProgressView {
    fn from(p: &Progress) -> Self {
        ProgressView {
            bytes_done: p.bytes_done,
            bytes_total: p.bytes_total,
            files_done: p.files_done,
            files_total: p.files_total,
            rate: p.rate,
            eta_ms: p.eta.map(|d| d.as_millis() as u64),
        }
    }
}

impl FilesEvent {
    pub(super) fn progress(kind: ManifestKind, peer: Option<PeerId>, p: &Progress) -> FilesEvent {
        FilesEvent::FilesProgress {
            kind,
            peer,
            progress: p.into(),
        }
    }

    pub(super) fn failed(
        kind: ManifestKind,
        peer: Option<PeerId>,
        e: &TransferError,
    ) -> FilesEvent {
        FilesEvent::Failed {
            kind,
            peer,
            code: e.code().into(),
            message: e.to_string(),
        }
    }
}

/// Rate-limits progress events.
#[derive(Default)]
pub(super) struct ProgressThrottle {
    last: Option<Time>,
}

impl ProgressThrottle {
    pub(super) fn due(&mut self, now: Time) -> bool {
        let due = self.last.is_none_or(|t| now.since(t) >= PROGRESS_EVERY);
        if due {
            self.last = Some(now);
        }
        due
    }
}
