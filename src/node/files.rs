//! Files on disk over the `binary` channel: the IO side of [`crate::transfer`].
//!
//! One small actor per node with a cloneable [`Files`] handle (as iroh does for discovery). The
//! node's driver hands it every `TRANSFER_*` control message, every binary message and the
//! session facts it needs (who the host is, what the host publishes); the actor
//! - as a **host** (or the sending side of a solo pair) serves its published sets — the session
//!   pack, the session media and the streamed score — to each admitted peer from a task of its
//!   own ([`serve`]), in that order: stream, pack, media;
//! - as a **participant** keeps one [`store::Store`] per kind: temporary files, verified
//!   renames, resume from disk after a restart — accepting sets only on the one link the
//!   session admitted as its host's (a host accepts none), PROTOCOL.md §11.5;
//! - tells the app what happens as [`FilesEvent`]s: progress, files received, the start gate.
//!
//! ```text
//!  node driver ──Req──▶ actor ──▶ serve task per peer ──▶ LinkSender::send_binary (waits)
//!                        │  └──▶ Store per kind ──▶ <dir>/.lansync/<sha>.part → <dir>/<name>
//!                        └──▶ FilesEvent (progress, received, gate) ──▶ app
//! ```
//!
//! What lives where: this file is the handle ([`Files`], its options and requests); `actor` the
//! actor's state, its loop and the host side (session facts, links, publishing); `link_out` a
//! link as it sends on it; `receive` the
//! participant side (offers, chunks, stores, the start gate); `events` what the app is told;
//! `serve` the per-peer sending task; `publish`, `store` and `disk` the files themselves.

mod actor;
mod disk;
mod events;
mod link_out;
mod publish;
mod receive;
mod serve;
mod store;

pub use events::{FilesEvent, ProgressView};

use crate::protocol::{SessionFiles, StreamInfo};
use crate::session::{FileCue, PeerId};
use crate::transfer::{Limits, ManifestKind, SenderConfig, TransferError};
use crate::transport::LinkSender;
use actor::Actor;
use std::path::PathBuf;
use tokio::sync::{mpsc, oneshot};

/// Default of [`FilesOptions::quota_bytes`].
pub const DEFAULT_QUOTA: u64 = 4 << 30;

/// How a node's files are kept.
#[derive(Debug, Clone)]
pub struct FilesOptions {
    /// This device's id: `uploadedBy` of what it publishes.
    pub device_id: String,
    /// Where received pack files land (media in `media/` under it). `None`: a new private
    /// directory with a random name under the system's temporary directory (nothing resumes
    /// across restarts then).
    pub download_dir: Option<PathBuf>,
    /// Where a streamed score is kept while shown; removed on STREAM_CLEAR and SESSION_END.
    /// Default: a new private directory with a random name under the system's temporary
    /// directory.
    pub stream_dir: Option<PathBuf>,
    /// Size limits for what is published and accepted (per manifest).
    pub limits: Limits,
    /// Most bytes this device holds for one session over every set it received (pack, media,
    /// streamed score); an offer that would go over is refused with `quota-exceeded`.
    /// Default 4 GiB.
    pub quota_bytes: u64,
    /// Bytes a sender may have outstanding per peer (default 2 MiB).
    pub max_in_flight: u64,
}

impl FilesOptions {
    /// Defaults for `device_id`: no download directory, default limits, 2 MiB in flight.
    pub fn new(device_id: impl Into<String>) -> FilesOptions {
        FilesOptions {
            device_id: device_id.into(),
            download_dir: None,
            stream_dir: None,
            limits: Limits::default(),
            quota_bytes: DEFAULT_QUOTA,
            max_in_flight: SenderConfig::default().max_in_flight,
        }
    }
}

/// What the node driver and the app ask of the actor.
pub(crate) enum Req {
    /// What the session machine tells the file service (PROTOCOL.md §11): the session and role,
    /// admitted links, `TRANSFER_*` messages, the streamed score.
    Cue(FileCue),
    /// A link is open: transfer replies may go out on it.
    LinkUp(PeerId, LinkSender),
    /// A link is gone.
    LinkGone(PeerId),
    /// A binary message arrived.
    Chunk(PeerId, bytes::Bytes),
    /// Publish (or with `None`, withdraw) a set.
    Publish(
        ManifestKind,
        Option<Vec<PathBuf>>,
        oneshot::Sender<Result<PublishedFiles, TransferError>>,
    ),
}

/// What a host publishes after a change: the snapshot metadata and, for a streamed score, the
/// `STREAM_PREPARE` description.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PublishedFiles {
    /// Metadata for snapshots (pack and media).
    pub files: SessionFiles,
    /// The streamed score, when one is published.
    pub stream: Option<StreamInfo>,
}

/// Handle to a node's file actor. Cloneable; the actor stops when every handle is dropped.
#[derive(Clone)]
pub struct Files {
    tx: mpsc::UnboundedSender<Req>,
}

impl Files {
    /// Starts the actor. Returns its handle and its events.
    pub fn spawn(opts: FilesOptions) -> (Files, mpsc::UnboundedReceiver<FilesEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        tokio::spawn(Actor::new(opts, events_tx).run(rx));
        (Files { tx }, events_rx)
    }

    pub(crate) fn tell(&self, req: Req) {
        let _ = self.tx.send(req);
    }

    /// Publishes the regular files of `dir` as the session pack (host only). Each file is
    /// type-checked (extension and magic bytes) and hashed; every admitted peer gets it.
    pub async fn publish_pack(&self, dir: PathBuf) -> Result<PublishedFiles, TransferError> {
        let paths = publish::list_dir(&dir, ManifestKind::Pack)?;
        self.publish(ManifestKind::Pack, Some(paths)).await
    }

    /// Publishes the regular files of `dir` as the session media.
    pub async fn publish_media(&self, dir: PathBuf) -> Result<PublishedFiles, TransferError> {
        let paths = publish::list_dir(&dir, ManifestKind::Media)?;
        self.publish(ManifestKind::Media, Some(paths)).await
    }

    /// Publishes these files as a set of `kind`, or withdraws the set with `None` (a media
    /// reset, a cleared stream).
    pub async fn publish(
        &self,
        kind: ManifestKind,
        paths: Option<Vec<PathBuf>>,
    ) -> Result<PublishedFiles, TransferError> {
        let (tx, rx) = oneshot::channel();
        self.tell(Req::Publish(kind, paths, tx));
        rx.await
            .map_err(|_| TransferError::InvalidSessionPack("the file service stopped".into()))?
    }
}

/// The files `publish_pack` would publish from `dir`: its regular, visible files, by name.
pub fn list_files(
    dir: &std::path::Path,
    kind: ManifestKind,
) -> Result<Vec<PathBuf>, TransferError> {
    publish::list_dir(dir, kind)
}
