//! The session's files in the page's memory: lansync's transfer [`Receiver`] (PROTOCOL.md §11)
//! for each set the master offers on its link, with byte buffers where the native file service
//! has temporary files. Only a verified file (its whole SHA-256 checked by the receiver) is ever
//! handed to the page.

use lansync::protocol::{Envelope, Message};
use lansync::session::Time;
use lansync::transfer::{
    HeldFile, Limits, ManifestKind, Receiver, ReceiverConfig, ReceiverOutput, TransferError,
    TransferEvent,
};
use serde::Serialize;
use std::collections::HashMap;

/// A phone keeps the session's files in memory: far below the native defaults.
pub const LIMITS: Limits = Limits {
    max_file_bytes: 64 << 20,
    max_total_bytes: 192 << 20,
    max_files: 200,
};

/// Most bytes held over every set of the session.
pub const QUOTA: u64 = 256 << 20;

/// Rounds remembered per link (one per kind is live; older ones only while chunks drain).
const MAX_ROUNDS: usize = 8;

/// One file as the page lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileView {
    /// Which set.
    pub kind: ManifestKind,
    /// Its name in the manifest.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MIME type from the manifest (checked against the content by the receiver).
    pub mime: String,
    /// SHA-256 (hex): what `take` names it by.
    pub sha256: String,
    /// Whole and hash-checked.
    pub verified: bool,
}

/// What the page hears of files.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FilesNote {
    /// A file is verified: its bytes can be taken.
    FileReceived {
        /// Which set.
        kind: ManifestKind,
        /// File name.
        name: String,
        /// SHA-256 (hex).
        sha256: String,
    },
    /// A whole set is held and verified.
    FilesDone {
        /// Which set.
        kind: ManifestKind,
        /// Its pack hash.
        hash: String,
    },
    /// A round stopped; verified files stay, the next link resumes.
    FilesFailed {
        /// Which set.
        kind: ManifestKind,
        /// Stable code (PROTOCOL.md §11.6).
        code: String,
    },
}

/// Receivers per set, their buffers and the verified bytes not yet taken by the page.
#[derive(Debug, Default)]
pub struct Files {
    host_id: String,
    receivers: Vec<(ManifestKind, Receiver)>,
    /// Transfer index → set, for the rounds offered on the current link.
    rounds: Vec<(u32, ManifestKind)>,
    /// Bytes received so far per file (by SHA-256), not yet verified.
    partial: HashMap<String, Vec<u8>>,
    /// Verified bytes the page has not taken yet.
    verified: HashMap<String, Vec<u8>>,
    /// Envelope counter of transfer messages: their own, as natively (they never reach the
    /// session machine's order checks).
    seq: u64,
}

impl Files {
    /// The master's device id: the only sender whose sets are accepted.
    pub fn set_host(&mut self, host_id: &str) {
        if self.host_id != host_id {
            *self = Files {
                host_id: host_id.to_string(),
                seq: self.seq,
                ..Files::default()
            };
        }
    }

    /// The link is gone: rounds end, verified files and held prefixes stay.
    pub fn link_down(&mut self) {
        self.rounds.clear();
        for (_, r) in &mut self.receivers {
            r.link_down();
        }
    }

    /// A `TRANSFER_*` message from the master's link. Returns the replies to send.
    pub fn control(
        &mut self,
        now: Time,
        env: &Envelope,
        notes: &mut Vec<FilesNote>,
    ) -> Vec<Message> {
        if self.host_id.is_empty() {
            return Vec::new();
        }
        let host = self.host_id.clone();
        let kind = match &env.msg {
            Message::TransferOffer(offer) => {
                let kind = offer.manifest.kind;
                let room = QUOTA.saturating_sub(self.held_except(kind));
                let needed = offer.manifest.total_bytes();
                let receiver = self.receiver(kind);
                if needed > room {
                    receiver.refuse_offer(
                        offer.transfer,
                        TransferError::QuotaExceeded {
                            needed,
                            quota: QUOTA,
                        },
                    );
                } else {
                    // The link is the master's: its offers are the host's, whatever the envelope
                    // says (PROTOCOL.md §11.5).
                    let _ = receiver.handle_control(now, &host, &env.msg);
                    self.rounds.retain(|(_, k)| *k != kind);
                    self.rounds.push((offer.transfer, kind));
                    if self.rounds.len() > MAX_ROUNDS {
                        self.rounds.remove(0);
                    }
                }
                kind
            }
            Message::TransferAbort(a) => {
                let Some(kind) = self.round_kind(a.transfer) else {
                    return Vec::new();
                };
                let _ = self.receiver(kind).handle_control(now, &host, &env.msg);
                kind
            }
            _ => return Vec::new(),
        };
        self.drain(kind, notes)
    }

    /// A binary message (a chunk). Returns the replies to send.
    pub fn chunk(&mut self, now: Time, bytes: &[u8], notes: &mut Vec<FilesNote>) -> Vec<Message> {
        let Some(head) = bytes.get(..4) else {
            return Vec::new();
        };
        let transfer = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let Some(kind) = self.round_kind(transfer) else {
            return Vec::new();
        };
        let _ = self.receiver(kind).handle_chunk(now, bytes);
        self.drain(kind, notes)
    }

    /// The next envelope counter value for a transfer message.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Every file of every set offered, verified or not.
    pub fn list(&self) -> Vec<FileView> {
        let mut out = Vec::new();
        for (kind, r) in &self.receivers {
            let Some(m) = r.manifest() else { continue };
            let held = r.held();
            for (i, f) in m.files.iter().enumerate() {
                out.push(FileView {
                    kind: *kind,
                    name: f.name.clone(),
                    size: f.size,
                    mime: f.mime.clone(),
                    sha256: f.sha256.clone(),
                    verified: matches!(held.get(i), Some(HeldFile::Verified)),
                });
            }
        }
        out
    }

    /// Hands the verified bytes of the file with this SHA-256 to the page (once).
    pub fn take(&mut self, sha256: &str) -> Option<Vec<u8>> {
        self.verified.remove(sha256)
    }

    fn round_kind(&self, transfer: u32) -> Option<ManifestKind> {
        self.rounds
            .iter()
            .find(|(t, _)| *t == transfer)
            .map(|(_, k)| *k)
    }

    fn receiver(&mut self, kind: ManifestKind) -> &mut Receiver {
        let i = match self.receivers.iter().position(|(k, _)| *k == kind) {
            Some(i) => i,
            None => {
                let mut cfg = ReceiverConfig::new(self.host_id.clone());
                cfg.limits = LIMITS;
                self.receivers.push((kind, Receiver::new(cfg)));
                self.receivers.len() - 1
            }
        };
        &mut self.receivers[i].1
    }

    fn held_except(&self, kind: ManifestKind) -> u64 {
        self.receivers
            .iter()
            .filter(|(k, _)| *k != kind)
            .filter_map(|(_, r)| r.manifest())
            .map(|m| m.total_bytes())
            .fold(0, u64::saturating_add)
    }

    /// Carries out a receiver's outputs on the buffers; returns the messages to send.
    fn drain(&mut self, kind: ManifestKind, notes: &mut Vec<FilesNote>) -> Vec<Message> {
        let mut send = Vec::new();
        let Some(i) = self.receivers.iter().position(|(k, _)| *k == kind) else {
            return send;
        };
        while let Some(out) = self.receivers[i].1.poll_output() {
            match out {
                ReceiverOutput::Control(m) => send.push(m),
                ReceiverOutput::Write {
                    file,
                    offset,
                    bytes,
                } => {
                    let r = &mut self.receivers[i].1;
                    let Some(sha) = r
                        .manifest()
                        .and_then(|m| m.files.get(file as usize))
                        .map(|f| f.sha256.clone())
                    else {
                        continue;
                    };
                    let buf = self.partial.entry(sha).or_default();
                    // Writes of one file come in order; a resumed round starts at what is held.
                    if offset > buf.len() as u64 {
                        r.storage_failed(file, TransferError::LinkLost);
                        continue;
                    }
                    buf.truncate(offset as usize);
                    buf.extend_from_slice(&bytes);
                }
                ReceiverOutput::Commit { name, sha256, .. } => {
                    let bytes = self.partial.remove(&sha256).unwrap_or_default();
                    self.verified.insert(sha256.clone(), bytes);
                    notes.push(FilesNote::FileReceived { kind, name, sha256 });
                }
                ReceiverOutput::Discard { sha256, .. } => {
                    self.partial.remove(&sha256);
                }
                ReceiverOutput::Event(TransferEvent::Done { hash, .. }) => {
                    notes.push(FilesNote::FilesDone { kind, hash });
                }
                ReceiverOutput::Event(TransferEvent::Failed { code, .. }) => {
                    notes.push(FilesNote::FilesFailed { kind, code });
                }
                ReceiverOutput::Event(_) => {}
            }
        }
        send
    }
}
