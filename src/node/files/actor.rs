//! The file actor: its state, its loop over [`Req`]s, and the host side (session facts, links,
//! publishing and serving). The participant side is in `receive`.

use super::events::{FilesEvent, ProgressThrottle};
use super::link_out::LinkOut;
use super::publish::{self, Published};
use super::serve;
use super::store::Store;
use super::{FilesOptions, PublishedFiles, Req};
use crate::node::Clock;
use crate::protocol::{Message, SessionFiles, StreamInfo};
use crate::session::{FileCue, PeerId, SessionRole};
use crate::transfer::{ManifestKind, SenderConfig, TransferError};
use crate::transport::LinkSender;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The role the file service acts in.
pub(super) enum Role {
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

pub(super) struct Actor {
    pub(super) opts: FilesOptions,
    pub(super) clock: Clock,
    pub(super) events: mpsc::UnboundedSender<FilesEvent>,
    // Session facts.
    pub(super) session_id: Arc<str>,
    pub(super) session_code: String,
    pub(super) role: Role,
    /// The last link the session reported connected (admitted).
    pub(super) last_connected: Option<PeerId>,
    pub(super) host_files: SessionFiles,
    // Host side.
    pub(super) published: HashMap<ManifestKind, Arc<Published>>,
    pub(super) sets: watch::Sender<Vec<Arc<Published>>>,
    pub(super) peers: HashMap<PeerId, mpsc::UnboundedSender<Message>>,
    // Participant side.
    pub(super) links: HashMap<PeerId, LinkOut>,
    pub(super) stores: HashMap<ManifestKind, Store>,
    /// Transfer index → kind of the rounds offered on each link.
    pub(super) rounds: HashMap<(PeerId, u32), ManifestKind>,
    pub(super) stream_id: String,
    pub(super) throttle: HashMap<ManifestKind, ProgressThrottle>,
    pub(super) gate: Option<bool>,
    /// Random private directories made when none was configured.
    pub(super) temp_download: Option<PathBuf>,
    pub(super) temp_stream: Option<PathBuf>,
}

impl Actor {
    pub(super) fn new(opts: FilesOptions, events: mpsc::UnboundedSender<FilesEvent>) -> Actor {
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

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Req>) {
        while let Some(req) = rx.recv().await {
            match req {
                Req::Cue(cue) => self.on_cue(cue).await,
                Req::LinkUp(peer, sender) => {
                    let out = self.link_out(sender);
                    self.links.insert(peer, out);
                }
                Req::LinkGone(peer) => self.link_gone(peer),
                Req::Chunk(peer, bytes) => self.on_chunk(peer, &bytes).await,
                Req::Publish(kind, paths, reply) => {
                    let result = self.publish(kind, paths).await;
                    let _ = reply.send(result);
                }
            }
        }
        if let Some(mut s) = self.stores.remove(&ManifestKind::Stream) {
            s.remove_all();
        }
    }

    /// Carries out what the session machine told the file service.
    async fn on_cue(&mut self, cue: FileCue) {
        match cue {
            FileCue::Session {
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
            FileCue::Paired => {
                self.role = if self.published.is_empty() {
                    Role::Participant {
                        link: self.last_connected,
                        host_id: None,
                    }
                } else {
                    Role::Host
                };
            }
            FileCue::HostFiles(files) => {
                self.host_files = files;
                self.update_gate();
            }
            FileCue::Serve(peer) => {
                self.last_connected = Some(peer);
                self.serve(peer)
            }
            FileCue::Transfer(peer, env) => self.on_control(peer, env).await,
            FileCue::StreamPrepared(id) => self.stream_id = id,
            FileCue::StreamCleared => {
                if let Some(mut s) = self.stores.remove(&ManifestKind::Stream) {
                    s.remove_all();
                    self.temp_stream = None;
                    self.emit(FilesEvent::StreamRemoved);
                }
                self.stream_id.clear();
            }
            FileCue::WithdrawStream => {
                // A streamed score belongs to its song: withdrawn, no newcomer is sent it.
                let _ = self.publish(ManifestKind::Stream, None).await;
            }
        }
    }

    pub(super) fn emit(&self, e: FilesEvent) {
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
}
