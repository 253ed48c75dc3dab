//! The participant side of the file actor: offers accepted only on the host's link
//! (PROTOCOL.md §11.5), chunks into one store per kind, replies, and the start gate.

use super::actor::{Actor, Role};
use super::disk;
use super::events::FilesEvent;
use super::store::{Done, Room, Store};
use crate::protocol::{Envelope, Message, TransferAbort};
use crate::session::PeerId;
use crate::transfer::{
    start_gate_fingerprint, start_gate_open, ManifestKind, TransferError, TransferEvent,
};
use std::path::PathBuf;

impl Actor {
    pub(super) async fn on_control(&mut self, peer: PeerId, env: Box<Envelope>) {
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

    pub(super) async fn on_chunk(&mut self, peer: PeerId, bytes: &[u8]) {
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
    pub(super) fn drain(&mut self, _peer: PeerId, kind: ManifestKind) {
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
    pub(super) fn update_gate(&mut self) {
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
