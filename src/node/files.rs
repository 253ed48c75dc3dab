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

mod disk;
mod publish;
mod serve;
mod store;

use crate::node::Clock;
use crate::protocol::{Envelope, Message, SessionFiles, StreamInfo, TransferAbort};
use crate::session::{PeerId, SessionRole, Time};
use crate::transfer::{
    start_gate_fingerprint, start_gate_open, Limits, ManifestKind, Progress, SenderConfig,
    TransferError, TransferEvent,
};
use crate::transport::LinkSender;
use publish::Published;
use serde::Serialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::{Done, Room, Store};
use tokio::sync::{mpsc, oneshot, watch};

/// Default of [`FilesOptions::quota_bytes`].
pub const DEFAULT_QUOTA: u64 = 4 << 30;

/// How often progress is reported per round.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

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
    fn progress(kind: ManifestKind, peer: Option<PeerId>, p: &Progress) -> FilesEvent {
        FilesEvent::FilesProgress {
            kind,
            peer,
            progress: p.into(),
        }
    }

    fn failed(kind: ManifestKind, peer: Option<PeerId>, e: &TransferError) -> FilesEvent {
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
struct ProgressThrottle {
    last: Option<Time>,
}

impl ProgressThrottle {
    fn due(&mut self, now: Time) -> bool {
        let due = self.last.is_none_or(|t| now.since(t) >= PROGRESS_EVERY);
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// A link as the files side uses it: its sender and the envelope fields transfer messages
/// carry. Transfer messages have their own `seq` counter (PROTOCOL.md §2): the machine routes
/// them out before any role logic, so the roles' per-link order checks never see them.
#[derive(Clone)]
pub(crate) struct LinkOut {
    sender: LinkSender,
    session_id: Arc<str>,
    device_id: Arc<str>,
    seq: Arc<AtomicU64>,
    clock: Clock,
}

impl LinkOut {
    fn now(&self) -> Time {
        self.clock.now()
    }

    async fn send(&self, msg: Message) -> Result<(), String> {
        let env = Envelope {
            session_id: self.session_id.to_string(),
            sender_id: self.device_id.to_string(),
            ts: self.now().as_millis(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            msg,
        };
        let text = env.encode().map_err(|e| e.to_string())?;
        self.sender
            .send_control(&text)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The role the file service acts in.
enum Role {
    /// No session yet: accepts nothing.
    Unknown,
    /// Master, or the sending side of a solo pair: accepts nothing.
    Host,
    /// Accepts sets only on `link` (`None` while that link is gone), labelled `host_id` (a
    /// solo partner's: the `uploadedBy` of what it offers on that link).
    Participant {
        link: Option<PeerId>,
        host_id: Option<String>,
    },
}

/// What the node driver and the app ask of the actor.
pub(crate) enum Req {
    /// The session this device is in, and its role in it.
    Session {
        session_id: String,
        session_code: String,
        role: SessionRole,
    },
    /// A solo pair is connected on the last link reported connected: the side that publishes
    /// sends, the other receives on that link.
    Paired,
    /// The host's published files changed (from a snapshot).
    HostFiles(SessionFiles),
    /// A link is open: transfer replies may go out on it.
    LinkUp(PeerId, LinkSender),
    /// The peer on this link is admitted to the session: serve it what is published.
    Serve(PeerId),
    /// A link is gone.
    LinkGone(PeerId),
    /// A `TRANSFER_*` message arrived.
    Control(PeerId, Box<Envelope>),
    /// A binary message arrived.
    Chunk(PeerId, bytes::Bytes),
    /// Publish (or with `None`, withdraw) a set.
    Publish(
        ManifestKind,
        Option<Vec<PathBuf>>,
        oneshot::Sender<Result<PublishedFiles, TransferError>>,
    ),
    /// A streamed score was announced (its file follows as a `stream` round).
    StreamPrepared(String),
    /// The streamed score was cleared or the session ended: remove the streamed file.
    StreamCleared,
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

struct Actor {
    opts: FilesOptions,
    clock: Clock,
    events: mpsc::UnboundedSender<FilesEvent>,
    // Session facts.
    session_id: Arc<str>,
    session_code: String,
    role: Role,
    /// The last link the session reported connected (admitted).
    last_connected: Option<PeerId>,
    host_files: SessionFiles,
    // Host side.
    published: HashMap<ManifestKind, Arc<Published>>,
    sets: watch::Sender<Vec<Arc<Published>>>,
    peers: HashMap<PeerId, mpsc::UnboundedSender<Message>>,
    // Participant side.
    links: HashMap<PeerId, LinkOut>,
    stores: HashMap<ManifestKind, Store>,
    /// Transfer index → kind of the rounds offered on each link.
    rounds: HashMap<(PeerId, u32), ManifestKind>,
    stream_id: String,
    throttle: HashMap<ManifestKind, ProgressThrottle>,
    gate: Option<bool>,
    /// Random private directories made when none was configured.
    temp_download: Option<PathBuf>,
    temp_stream: Option<PathBuf>,
}

impl Actor {
    fn new(opts: FilesOptions, events: mpsc::UnboundedSender<FilesEvent>) -> Actor {
        Actor {
            opts,
            clock: Clock::new(),
            events,
            session_id: Arc::from(""),
            session_code: String::new(),
            role: Role::Unknown,
            last_connected: None,
            host_files: SessionFiles::default(),
            published: HashMap::new(),
            sets: watch::channel(Vec::new()).0,
            peers: HashMap::new(),
            links: HashMap::new(),
            stores: HashMap::new(),
            rounds: HashMap::new(),
            stream_id: String::new(),
            throttle: HashMap::new(),
            gate: None,
            temp_download: None,
            temp_stream: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Req>) {
        while let Some(req) = rx.recv().await {
            match req {
                Req::Session {
                    session_id,
                    session_code,
                    role,
                } => {
                    self.session_id = Arc::from(session_id.as_str());
                    self.session_code = session_code;
                    self.role = match role {
                        SessionRole::Host => Role::Host,
                        SessionRole::Follower { host_id } => {
                            // Stores are bound to their host; a new host's are opened afresh.
                            self.stores.retain(|_, s| s.host == host_id);
                            Role::Participant {
                                link: self.last_connected,
                                host_id: Some(host_id),
                            }
                        }
                    };
                    self.update_gate();
                }
                Req::Paired => {
                    self.role = if self.published.is_empty() {
                        Role::Participant {
                            link: self.last_connected,
                            host_id: None,
                        }
                    } else {
                        Role::Host
                    };
                }
                Req::HostFiles(files) => {
                    self.host_files = files;
                    self.update_gate();
                }
                Req::LinkUp(peer, sender) => {
                    let out = self.link_out(sender);
                    self.links.insert(peer, out);
                }
                Req::Serve(peer) => {
                    self.last_connected = Some(peer);
                    self.serve(peer)
                }
                Req::LinkGone(peer) => self.link_gone(peer),
                Req::Control(peer, env) => self.on_control(peer, env).await,
                Req::Chunk(peer, bytes) => self.on_chunk(peer, &bytes).await,
                Req::Publish(kind, paths, reply) => {
                    let result = self.publish(kind, paths).await;
                    let _ = reply.send(result);
                }
                Req::StreamPrepared(id) => self.stream_id = id,
                Req::StreamCleared => {
                    if let Some(mut s) = self.stores.remove(&ManifestKind::Stream) {
                        s.remove_all();
                        self.temp_stream = None;
                        self.emit(FilesEvent::StreamRemoved);
                    }
                    self.stream_id.clear();
                }
            }
        }
        if let Some(mut s) = self.stores.remove(&ManifestKind::Stream) {
            s.remove_all();
        }
    }

    fn emit(&self, e: FilesEvent) {
        let _ = self.events.send(e);
    }

    fn link_out(&self, sender: LinkSender) -> LinkOut {
        LinkOut {
            sender,
            session_id: self.session_id.clone(),
            device_id: Arc::from(self.opts.device_id.as_str()),
            seq: Arc::new(AtomicU64::new(0)),
            clock: self.clock,
        }
    }

    fn serve(&mut self, peer: PeerId) {
        let Some(out) = self.links.get(&peer).cloned() else {
            return;
        };
        if self.peers.contains_key(&peer) {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.peers.insert(peer, tx);
        let ctx = serve::ServeCtx {
            peer,
            link: out,
            config: SenderConfig {
                max_in_flight: self.opts.max_in_flight,
                first_transfer: 1,
                limits: self.opts.limits,
            },
            events: self.events.clone(),
        };
        tokio::spawn(serve::serve(ctx, self.sets.subscribe(), rx));
    }

    fn link_gone(&mut self, peer: PeerId) {
        self.peers.remove(&peer);
        self.links.remove(&peer);
        if self.last_connected == Some(peer) {
            self.last_connected = None;
        }
        if let Role::Participant { link, .. } = &mut self.role {
            if *link == Some(peer) {
                *link = None;
            }
        }
        let kinds: Vec<ManifestKind> = self
            .rounds
            .iter()
            .filter(|((p, _), _)| *p == peer)
            .map(|(_, k)| *k)
            .collect();
        self.rounds.retain(|(p, _), _| *p != peer);
        for kind in kinds {
            if let Some(s) = self.stores.get_mut(&kind) {
                s.receiver.link_down();
            }
            self.drain(peer, kind);
        }
    }

    async fn publish(
        &mut self,
        kind: ManifestKind,
        paths: Option<Vec<PathBuf>>,
    ) -> Result<PublishedFiles, TransferError> {
        match paths {
            None => {
                self.published.remove(&kind);
            }
            Some(paths) => {
                let (device, limits) = (self.opts.device_id.clone(), self.opts.limits);
                let now_ms = self.clock.now().as_millis();
                let set = tokio::task::spawn_blocking(move || {
                    publish::build(kind, paths, &device, now_ms, &limits)
                })
                .await
                .map_err(|e| TransferError::InvalidSessionPack(e.to_string()))??;
                self.published.insert(kind, set);
            }
        }
        let order = [
            ManifestKind::Stream,
            ManifestKind::Pack,
            ManifestKind::Media,
        ];
        let sets: Vec<Arc<Published>> = order
            .iter()
            .filter_map(|k| self.published.get(k).cloned())
            .collect();
        self.sets.send_replace(sets);
        Ok(self.published_files())
    }

    fn published_files(&self) -> PublishedFiles {
        let pack = self.published.get(&ManifestKind::Pack);
        let media = self.published.get(&ManifestKind::Media);
        let stream = self.published.get(&ManifestKind::Stream).and_then(|s| {
            let f = s.manifest.files.first()?;
            Some(StreamInfo {
                stream_id: format!("s{}", &s.hash[..12]),
                song_epoch: 0, // set by the master to the current song
                name: f.name.clone(),
                mime: f.mime.clone(),
                size: f.size,
                sha256: f.sha256.clone(),
            })
        });
        PublishedFiles {
            files: SessionFiles {
                pack: pack.map(|p| p.manifest.pack_meta()),
                media: media.map(|m| m.manifest.media_meta()),
            },
            stream,
        }
    }

    async fn on_control(&mut self, peer: PeerId, env: Box<Envelope>) {
        match &env.msg {
            Message::TransferOffer(offer) => {
                // The link decides who offers, never the envelope's `sender_id`.
                let Some(host) = self.host_on(peer, &offer.manifest.uploaded_by) else {
                    tracing::info!(peer, "offer refused: not the host's link");
                    self.refuse(peer, offer.transfer).await;
                    return;
                };
                let kind = offer.manifest.kind;
                // One round per kind and link: a new offer supersedes the last (bounded map).
                self.rounds.retain(|(p, _), k| !(*p == peer && *k == kind));
                self.rounds.insert((peer, offer.transfer), kind);
                let now = self.clock.now();
                let room = Room {
                    held_elsewhere: self.held_except(kind),
                    quota: self.opts.quota_bytes,
                };
                let store = self.store(kind, &host);
                if let Err(e) = store.offer(now, &host, &env.msg, room) {
                    tracing::info!(peer, %e, "offer refused");
                }
                self.flush(peer, kind).await;
            }
            Message::TransferAbort(a) if self.rounds.contains_key(&(peer, a.transfer)) => {
                let kind = self.rounds[&(peer, a.transfer)];
                let now = self.clock.now();
                if let Some(s) = self.stores.get_mut(&kind) {
                    let host = s.host.clone();
                    let _ = s.receiver.handle_control(now, &host, &env.msg);
                }
                self.flush(peer, kind).await;
            }
            // Requests, confirmations and aborts of rounds this device offered.
            _ => {
                if let Some(tx) = self.peers.get(&peer) {
                    let _ = tx.send(env.msg);
                }
            }
        }
    }

    /// The identity sets are accepted from on `peer`'s link, or `None` when this device
    /// accepts nothing there: a host never does, a participant only on the link its session
    /// admitted as the host's (a solo partner is named by what it offers on that link).
    fn host_on(&self, peer: PeerId, uploaded_by: &str) -> Option<String> {
        match &self.role {
            Role::Participant {
                link: Some(link),
                host_id,
            } if *link == peer && self.published.is_empty() => {
                Some(host_id.clone().unwrap_or_else(|| uploaded_by.to_string()))
            }
            _ => None,
        }
    }

    /// Answers an offer this device does not accept: TRANSFER_ABORT `forbidden-not-host`,
    /// nothing stored.
    async fn refuse(&self, peer: PeerId, transfer: u32) {
        let Some(link) = self.links.get(&peer) else {
            return;
        };
        let err = TransferError::ForbiddenNotHost;
        let abort = Message::TransferAbort(TransferAbort {
            transfer,
            code: err.code().into(),
            file: None,
            message: String::new(),
        });
        if let Err(e) = link.send(abort).await {
            tracing::debug!(peer, %e, "refusal not sent");
        }
    }

    /// Bytes the session's sets other than `kind` hold (their manifests' sizes).
    fn held_except(&self, kind: ManifestKind) -> u64 {
        self.stores
            .iter()
            .filter(|(k, _)| **k != kind)
            .filter_map(|(_, s)| s.receiver.manifest())
            .map(|m| m.total_bytes())
            .fold(0, u64::saturating_add)
    }

    /// The store for `kind`, opened on first use for sets from `host`.
    fn store(&mut self, kind: ManifestKind, host: &str) -> &mut Store {
        if self.stores.get(&kind).is_some_and(|s| s.host != host) {
            // A solo partner that offers under another name gets a fresh store.
            self.stores.remove(&kind);
        }
        let dir = match kind {
            ManifestKind::Stream => match &self.opts.stream_dir {
                Some(d) => d.clone(),
                None => self
                    .temp_stream
                    .get_or_insert_with(|| disk::random_temp_dir("lansync-stream"))
                    .clone(),
            },
            ManifestKind::Pack => self.download_dir(),
            ManifestKind::Media => self.download_dir().join("media"),
        };
        let limits = self.opts.limits;
        self.stores
            .entry(kind)
            .or_insert_with(|| Store::open(kind, dir, host, limits))
    }

    fn download_dir(&mut self) -> PathBuf {
        match &self.opts.download_dir {
            Some(d) => d.clone(),
            None => self
                .temp_download
                .get_or_insert_with(|| disk::random_temp_dir("lansync-files"))
                .clone(),
        }
    }

    async fn on_chunk(&mut self, peer: PeerId, bytes: &[u8]) {
        let Some(head) = bytes.get(..4) else {
            return;
        };
        let transfer = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        // Rounds exist only for offers accepted on the host's link.
        let Some(&kind) = self.rounds.get(&(peer, transfer)) else {
            tracing::debug!(peer, transfer, "chunk of no known round");
            return;
        };
        let now = self.clock.now();
        if let Some(s) = self.stores.get_mut(&kind) {
            if let Err(e) = s.receiver.handle_chunk(now, bytes) {
                tracing::debug!(peer, %e, "chunk refused");
            }
        }
        self.flush(peer, kind).await;
        if self.throttle.entry(kind).or_default().due(now) {
            if let Some(s) = self.stores.get(&kind) {
                let p = s.receiver.progress(now);
                if p.bytes_total > 0 {
                    self.emit(FilesEvent::progress(kind, None, &p));
                }
            }
        }
    }

    /// Carries out the store's outputs, sending control messages on `peer`'s link.
    /// Replies go out before the app hears of the result: an app that quits on `files_done`
    /// must not take the TRANSFER_DONE down with it.
    async fn flush(&mut self, peer: PeerId, kind: ManifestKind) {
        let (to_send, events) = self.drain_outputs(kind);
        if let Some(link) = self.links.get(&peer) {
            for m in to_send {
                if let Err(e) = link.send(m).await {
                    tracing::debug!(peer, %e, "transfer reply not sent");
                }
            }
        }
        self.report(events);
    }

    /// Like [`flush`](Self::flush) when the link is gone (nothing can be sent).
    fn drain(&mut self, _peer: PeerId, kind: ManifestKind) {
        let (_, events) = self.drain_outputs(kind);
        self.report(events);
    }

    fn report(&mut self, events: Vec<FilesEvent>) {
        let finished = events.iter().any(|e| matches!(e, FilesEvent::Done { .. }));
        for e in events {
            self.emit(e);
        }
        if finished {
            self.update_gate();
        }
    }

    /// Carries out the store's outputs on disk; returns the messages to send and the events.
    fn drain_outputs(&mut self, kind: ManifestKind) -> (Vec<Message>, Vec<FilesEvent>) {
        let (mut to_send, mut events) = (Vec::new(), Vec::new());
        let Some(store) = self.stores.get_mut(&kind) else {
            return (to_send, events);
        };
        let now = self.clock.now();
        while let Some(out) = store.receiver.poll_output() {
            let done = store.apply(out);
            // Bytes that could not be kept safely: the receiver forgets them and ends the round
            // with the code (withdrawing a DONE it queued), reported like any failure.
            for (file, e) in store.take_failures() {
                store.receiver.storage_failed(file, e);
            }
            match done {
                Done::Nothing => {}
                Done::Send(m) => to_send.push(*m),
                Done::Committed(path) if kind == ManifestKind::Stream => {
                    events.push(FilesEvent::StreamReady {
                        stream_id: self.stream_id.clone(),
                        path,
                    })
                }
                Done::Committed(path) => events.push(FilesEvent::FileReceived { kind, path }),
                Done::Event(TransferEvent::Done { hash, .. }) => {
                    events.push(FilesEvent::progress(
                        kind,
                        None,
                        &store.receiver.progress(now),
                    ));
                    events.push(FilesEvent::Done {
                        kind,
                        peer: None,
                        hash,
                    });
                }
                Done::Event(TransferEvent::Failed { code, message, .. }) => {
                    events.push(FilesEvent::Failed {
                        kind,
                        peer: None,
                        code,
                        message,
                    })
                }
                Done::Event(TransferEvent::FileDone { .. }) => {}
            }
        }
        (to_send, events)
    }

    /// Re-evaluates the start gate and reports it when it changes.
    fn update_gate(&mut self) {
        if !matches!(
            self.role,
            Role::Participant {
                host_id: Some(_),
                ..
            }
        ) {
            return;
        }
        let host = &self.host_files;
        let fingerprint =
            start_gate_fingerprint(&self.session_code, host.pack.as_ref(), host.media.as_ref());
        let held = |kind| {
            self.stores
                .get(&kind)
                .filter(|s| s.receiver.is_complete())
                .and_then(|s| s.receiver.manifest())
        };
        let pack = held(ManifestKind::Pack).map(|m| m.pack_meta());
        let media = held(ManifestKind::Media).map(|m| m.media_meta());
        let validated = start_gate_fingerprint(
            &self.session_code,
            pack.as_ref().filter(|_| host.pack.is_some()),
            media.as_ref().filter(|_| host.media.is_some()),
        );
        let open = start_gate_open(host.pack.as_ref(), &fingerprint, Some(&validated));
        if self.gate != Some(open) {
            self.gate = Some(open);
            self.emit(FilesEvent::StartGate { open, fingerprint });
        }
    }
}

/// The files `publish_pack` would publish from `dir`: its regular, visible files, by name.
pub fn list_files(
    dir: &std::path::Path,
    kind: ManifestKind,
) -> Result<Vec<PathBuf>, TransferError> {
    publish::list_dir(dir, kind)
}
