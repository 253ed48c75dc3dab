//! The receiving side of a transfer (a participant), sans-IO.
//!
//! The driver passes control messages from the host to [`Receiver::handle_control`] (with the
//! envelope's `sender_id`), binary messages to [`Receiver::handle_chunk`], and drains
//! [`Receiver::poll_output`]:
//! - `Control(msg)`: send on the control channel;
//! - `Write { file, offset, bytes }`: write into the file's *temporary* file at `offset`
//!   (writes of one file come in order, so appending works; name the temporary file after the
//!   manifest's SHA-256 so it survives a manifest update);
//! - `Commit { file, name }`: the whole file hashed to its SHA-256: flush, then rename the
//!   temporary file to `name`;
//! - `Discard { file, sha256 }`: delete the temporary file (bad content, hash mismatch, or a
//!   partial file the new manifest no longer lists — then `file` is its index in the old one);
//! - `Event(e)`: tell the app.
//!
//! Chunk problems that break the stream (gap, out of range, wrong size, lying magic bytes, hash
//! mismatch) end the round with a `TRANSFER_ABORT`; committed files and the held prefix of the
//! current file stay, and the next offer resumes from there.

use super::media::check_media;
use super::progress::{Meter, Progress};
use super::{
    authorize_upload, decode_chunk, Limits, Manifest, TransferError, TransferEvent,
    MAX_CHUNK_PAYLOAD,
};
use crate::protocol::{FileWant, Message, TransferAbort, TransferDone, TransferRequest};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;

/// Receiver settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Device id of the session host: the only sender whose offers are accepted.
    pub host_id: String,
    /// Limits applied to offered manifests.
    pub limits: Limits,
}

impl ReceiverConfig {
    /// Default limits, accepting offers from `host_id`.
    pub fn new(host_id: impl Into<String>) -> ReceiverConfig {
        ReceiverConfig {
            host_id: host_id.into(),
            limits: Limits::default(),
        }
    }
}

/// What the receiver asks of its driver.
// Outputs live only between `poll_output` calls; boxing the message would cost an allocation
// per control message for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverOutput {
    /// Send on the control channel.
    Control(Message),
    /// Write `bytes` at `offset` of file `file`'s temporary file.
    Write {
        /// File index in the manifest.
        file: u32,
        /// Byte offset.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The file is complete and its SHA-256 matches: rename its temporary file to `name`.
    Commit {
        /// File index.
        file: u32,
        /// Final file name (validated: no path separators, no `..`).
        name: String,
        /// Its verified SHA-256 (hex).
        sha256: String,
    },
    /// Delete the file's temporary file: its content was refused.
    Discard {
        /// File index (in the manifest that listed it).
        file: u32,
        /// The file's SHA-256 from that manifest: what the temporary file is named after.
        sha256: String,
    },
    /// Tell the application.
    Event(TransferEvent),
}

/// What the receiver holds of one file, for the app and for persistence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HeldFile {
    /// Nothing.
    Missing,
    /// This many bytes, in the temporary file, not yet verified.
    Partial {
        /// Bytes held (a multiple of the chunk payload size).
        bytes: u64,
    },
    /// Complete, verified and committed.
    Verified,
}

#[derive(Debug, Clone)]
enum FileState {
    Missing,
    Partial { received: u64, hasher: Sha256 },
    Verified,
}

#[derive(Debug, Clone)]
struct Round {
    transfer: u32,
    total_chunks: u32,
    /// Files still expected, in order, the first being received now.
    want: VecDeque<u32>,
}

/// The participant side of file transfer.
#[derive(Debug)]
pub struct Receiver {
    config: ReceiverConfig,
    manifest: Option<Manifest>,
    hash: String,
    bases: Vec<u32>,
    files: Vec<FileState>,
    round: Option<Round>,
    meter: Meter,
    written_total: u64,
    out: VecDeque<ReceiverOutput>,
}

impl Receiver {
    /// Every file is verified: tell the host (TRANSFER_DONE) and the app.
    fn finish(&mut self, transfer: u32) {
        let hash = self.hash.clone();
        self.out
            .push_back(ReceiverOutput::Control(Message::TransferDone(
                TransferDone {
                    transfer,
                    hash: hash.clone(),
                },
            )));
        self.out
            .push_back(ReceiverOutput::Event(TransferEvent::Done {
                transfer,
                hash,
            }));
    }

    /// A receiver holding nothing yet.
    pub fn new(config: ReceiverConfig) -> Receiver {
        Receiver {
            config,
            manifest: None,
            hash: String::new(),
            bases: Vec::new(),
            files: Vec::new(),
            round: None,
            meter: Meter::default(),
            written_total: 0,
            out: VecDeque::new(),
        }
    }

    /// The manifest of the last accepted offer.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Its pack hash (empty before any offer).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Whether every file of the manifest is verified.
    pub fn is_complete(&self) -> bool {
        self.manifest.is_some() && self.files.iter().all(|f| matches!(f, FileState::Verified))
    }

    /// What is held of each file, in manifest order.
    pub fn held(&self) -> Vec<HeldFile> {
        self.files
            .iter()
            .map(|f| match f {
                FileState::Missing => HeldFile::Missing,
                FileState::Partial { received, .. } => HeldFile::Partial { bytes: *received },
                FileState::Verified => HeldFile::Verified,
            })
            .collect()
    }

    /// Payload bytes written over this receiver's whole life (all rounds).
    pub fn payload_bytes_written(&self) -> u64 {
        self.written_total
    }

    /// Progress of the current round.
    pub fn progress(&self, now: Time) -> Progress {
        self.meter.progress(now)
    }

    /// Restores state after a restart: `manifest` is the one held before, and each file held in
    /// full or in part must then be fed back with [`feed_existing`](Receiver::feed_existing)
    /// (so its hash state is rebuilt; nothing is trusted unread).
    pub fn restore(&mut self, mut manifest: Manifest) -> Result<(), TransferError> {
        manifest.validate(&self.config.limits)?;
        self.adopt(manifest);
        Ok(())
    }

    /// Bytes already on disk for `file`, in order from where the held prefix ends (0 at first):
    /// from its temporary file, or its final file when it was committed before the restart.
    /// When the file completes and matches it is marked verified (with a `Commit`, a no-op for
    /// a file already at its final name); a mismatch discards it.
    pub fn feed_existing(&mut self, file: u32, bytes: &[u8]) -> Result<(), TransferError> {
        if self.round.is_some() {
            return Err(TransferError::UnexpectedMessage(
                "feed_existing during a round",
            ));
        }
        let m = self
            .manifest
            .as_ref()
            .ok_or(TransferError::SessionMediaNotFound)?;
        let f = m
            .files
            .get(file as usize)
            .ok_or(TransferError::SessionMediaFileNotFound(file))?;
        let (size, name, sha, mime) = (f.size, f.name.clone(), f.sha256.clone(), f.mime.clone());
        let state = &mut self.files[file as usize];
        if let FileState::Missing = state {
            if let Err(e) = check_media(&name, &mime, bytes) {
                self.out
                    .push_back(ReceiverOutput::Discard { file, sha256: sha });
                return Err(e);
            }
            *state = FileState::Partial {
                received: 0,
                hasher: Sha256::new(),
            };
        }
        let FileState::Partial { received, hasher } = state else {
            return Err(TransferError::UnexpectedData { file, offset: size });
        };
        if *received + bytes.len() as u64 > size {
            return Err(TransferError::OversizeChunk { len: bytes.len() });
        }
        hasher.update(bytes);
        *received += bytes.len() as u64;
        if *received == size {
            self.finish_file(file, &name, &sha).map(|_| ())
        } else {
            Ok(())
        }
    }

    /// The link went down: the round ends; what is held stays for the next offer.
    pub fn link_down(&mut self) {
        if let Some(r) = self.round.take() {
            self.out
                .push_back(ReceiverOutput::Event(TransferEvent::Failed {
                    transfer: r.transfer,
                    code: TransferError::LinkLost.code().into(),
                    message: TransferError::LinkLost.to_string(),
                }));
        }
    }

    /// A control message (decoded and validated) from `from`, the envelope's `sender_id`.
    pub fn handle_control(
        &mut self,
        now: Time,
        from: &str,
        msg: &Message,
    ) -> Result<(), TransferError> {
        match msg {
            Message::TransferOffer(offer) => {
                if let Err(e) = authorize_upload(from, &self.config.host_id) {
                    return self.refuse(offer.transfer, e);
                }
                let mut manifest = offer.manifest.clone();
                if let Err(e) = manifest.validate(&self.config.limits) {
                    return self.refuse(offer.transfer, e);
                }
                if manifest.uploaded_by != self.config.host_id {
                    return self.refuse(offer.transfer, TransferError::ForbiddenNotHost);
                }
                self.adopt(manifest);
                self.start_round(now, offer.transfer);
                Ok(())
            }
            Message::TransferAbort(a) => {
                let Some(r) = &self.round else {
                    return Err(TransferError::UnknownTransfer(a.transfer));
                };
                if r.transfer != a.transfer {
                    return Err(TransferError::UnknownTransfer(a.transfer));
                }
                self.round = None;
                let err = TransferError::Aborted(a.code.clone());
                self.out
                    .push_back(ReceiverOutput::Event(TransferEvent::Failed {
                        transfer: a.transfer,
                        code: a.code.clone(),
                        message: err.to_string(),
                    }));
                Err(err)
            }
            _ => Err(TransferError::UnexpectedMessage(
                "not a transfer message for a receiver",
            )),
        }
    }

    /// Refuses an offer for a reason of the driver's (its storage quota, free disk space, a
    /// link that is not the host's): TRANSFER_ABORT with the code; nothing held changes.
    pub fn refuse_offer(&mut self, transfer: u32, err: TransferError) {
        let _ = self.refuse(transfer, err);
    }

    /// The driver could not keep file `file` (its bytes did not reach a safe place): it counts
    /// as missing again, so the next round asks for it, and the current round ends with `err`.
    /// Outputs already queued that claim the file or the round done are withdrawn.
    pub fn storage_failed(&mut self, file: u32, err: TransferError) {
        if let Some(st) = self.files.get_mut(file as usize) {
            *st = FileState::Missing;
        }
        // A round that just finished has queued its DONE: take it back.
        let mut finished = None;
        self.out.retain(|o| match o {
            ReceiverOutput::Control(Message::TransferDone(d)) => {
                finished = Some(d.transfer);
                false
            }
            ReceiverOutput::Event(TransferEvent::Done { .. }) => false,
            ReceiverOutput::Commit { file: f, .. }
            | ReceiverOutput::Event(TransferEvent::FileDone { file: f, .. }) => *f != file,
            _ => true,
        });
        let transfer = self.round.take().map(|r| r.transfer).or(finished);
        match transfer {
            Some(t) => self.send_abort(t, &err, Some(file)),
            None => self
                .out
                .push_back(ReceiverOutput::Event(TransferEvent::Failed {
                    transfer: 0,
                    code: err.code().into(),
                    message: err.to_string(),
                })),
        }
    }

    /// Refuses an offer without touching what is held.
    fn refuse(&mut self, transfer: u32, err: TransferError) -> Result<(), TransferError> {
        self.send_abort(transfer, &err, None);
        Err(err)
    }

    fn send_abort(&mut self, transfer: u32, err: &TransferError, file: Option<u32>) {
        self.out
            .push_back(ReceiverOutput::Control(Message::TransferAbort(
                TransferAbort {
                    transfer,
                    code: err.code().into(),
                    file,
                    message: String::new(),
                },
            )));
        self.out
            .push_back(ReceiverOutput::Event(TransferEvent::Failed {
                transfer,
                code: err.code().into(),
                message: err.to_string(),
            }));
    }

    /// Takes `manifest` as the one to hold, keeping the state of files that are the same
    /// (name, size and SHA-256) in the previous one and discarding partial files that are not.
    fn adopt(&mut self, manifest: Manifest) {
        let hash = manifest.hash();
        if hash == self.hash {
            return;
        }
        let mut old: Vec<Option<FileState>> = self.files.drain(..).map(Some).collect();
        let old_manifest = self.manifest.take();
        let mut files = Vec::with_capacity(manifest.files.len());
        for f in &manifest.files {
            let kept = old_manifest.as_ref().and_then(|om| {
                om.files
                    .iter()
                    .position(|o| o.sha256 == f.sha256 && o.size == f.size && o.name == f.name)
            });
            files.push(
                kept.and_then(|i| old[i].take())
                    .unwrap_or(FileState::Missing),
            );
        }
        for (i, st) in old.into_iter().enumerate() {
            if let (Some(FileState::Partial { .. }), Some(om)) = (st, &old_manifest) {
                self.out.push_back(ReceiverOutput::Discard {
                    file: i as u32,
                    sha256: om.files[i].sha256.clone(),
                });
            }
        }
        self.bases = manifest.chunk_bases();
        self.files = files;
        self.hash = hash;
        self.manifest = Some(manifest);
        self.round = None;
    }

    /// Requests whatever is not verified (or says DONE when nothing is missing).
    fn start_round(&mut self, now: Time, transfer: u32) {
        let Some(m) = &self.manifest else { return };
        let mut want = Vec::new();
        let (mut bytes, mut files) = (0u64, 0u32);
        for (i, st) in self.files.iter().enumerate() {
            let from = match st {
                FileState::Verified => continue,
                FileState::Missing => 0,
                FileState::Partial { received, .. } => *received,
            };
            want.push(FileWant {
                file: i as u32,
                from,
            });
            bytes += m.files[i].size - from;
            files += 1;
        }
        self.meter = Meter::start(now, bytes, files);
        if want.is_empty() {
            self.finish(transfer);
            return;
        }
        self.round = Some(Round {
            transfer,
            total_chunks: m.total_chunks().unwrap_or(0),
            want: want.iter().map(|w| w.file).collect(),
        });
        self.out
            .push_back(ReceiverOutput::Control(Message::TransferRequest(
                TransferRequest {
                    transfer,
                    hash: self.hash.clone(),
                    want,
                },
            )));
    }

    /// One binary message. Never panics; returns what was wrong with it. Stale rounds
    /// (`unknown-transfer`) and duplicates (`duplicate-chunk`) are dropped without ending the
    /// round; anything else that breaks the stream aborts it.
    pub fn handle_chunk(&mut self, _now: Time, bytes: &[u8]) -> Result<(), TransferError> {
        let chunk = decode_chunk(bytes)?;
        let Some(round) = &self.round else {
            return Err(TransferError::UnknownTransfer(chunk.transfer));
        };
        if chunk.transfer != round.transfer {
            return Err(TransferError::UnknownTransfer(chunk.transfer));
        }
        let transfer = round.transfer;
        if let Err(e) = chunk.check_range(transfer, round.total_chunks) {
            return self.abort_round(e, None);
        }
        let Some(&file) = round.want.front() else {
            return self.abort_round(TransferError::UnexpectedChunk(chunk.index), None);
        };
        let Some(m) = &self.manifest else {
            return Err(TransferError::UnknownTransfer(chunk.transfer));
        };
        let entry = &m.files[file as usize];
        let (size, name, mime, sha) = (
            entry.size,
            entry.name.clone(),
            entry.mime.clone(),
            entry.sha256.clone(),
        );
        let received = match &self.files[file as usize] {
            FileState::Partial { received, .. } => *received,
            _ => 0,
        };
        let expected = self.bases[file as usize] + (received / MAX_CHUNK_PAYLOAD as u64) as u32;
        if chunk.index < expected {
            return Err(TransferError::DuplicateChunk(chunk.index));
        }
        if chunk.index > expected {
            return self.abort_round(
                TransferError::MissingChunk {
                    expected,
                    got: chunk.index,
                },
                Some(file),
            );
        }
        let want_len = (size - received).min(MAX_CHUNK_PAYLOAD as u64) as usize;
        if chunk.payload.len() < want_len {
            return self.abort_round(
                TransferError::TruncatedChunk { len: bytes.len() },
                Some(file),
            );
        }
        if chunk.payload.len() > want_len {
            return self.abort_round(
                TransferError::OversizeChunk { len: bytes.len() },
                Some(file),
            );
        }
        if received == 0 {
            // The first bytes must be what the name and MIME type claim.
            if let Err(e) = check_media(&name, &mime, chunk.payload) {
                self.files[file as usize] = FileState::Missing;
                self.out
                    .push_back(ReceiverOutput::Discard { file, sha256: sha });
                return self.abort_round(e, Some(file));
            }
            self.files[file as usize] = FileState::Partial {
                received: 0,
                hasher: Sha256::new(),
            };
        }
        let FileState::Partial {
            received: r,
            hasher,
        } = &mut self.files[file as usize]
        else {
            return self.abort_round(TransferError::UnexpectedChunk(chunk.index), Some(file));
        };
        hasher.update(chunk.payload);
        *r += chunk.payload.len() as u64;
        let done = *r == size;
        self.out.push_back(ReceiverOutput::Write {
            file,
            offset: received,
            bytes: chunk.payload.to_vec(),
        });
        self.meter.bytes_done += chunk.payload.len() as u64;
        self.written_total += chunk.payload.len() as u64;
        if done {
            if let Err(e) = self.finish_file(file, &name, &sha) {
                return self.abort_round(e, Some(file));
            }
            self.meter.files_done += 1;
            self.out
                .push_back(ReceiverOutput::Event(TransferEvent::FileDone {
                    transfer,
                    file,
                }));
            if let Some(r) = &mut self.round {
                r.want.pop_front();
                if r.want.is_empty() {
                    self.round = None;
                    self.finish(transfer);
                }
            }
        }
        Ok(())
    }

    /// Compares the finished hash: `Commit` on a match, `Discard` (file back to missing) and
    /// `hash-mismatch` otherwise.
    fn finish_file(&mut self, file: u32, name: &str, sha: &str) -> Result<(), TransferError> {
        let state = std::mem::replace(&mut self.files[file as usize], FileState::Missing);
        let FileState::Partial { hasher, .. } = state else {
            self.files[file as usize] = state;
            return Ok(());
        };
        let got = crate::auth::hex(&hasher.finalize());
        if got != sha {
            self.out.push_back(ReceiverOutput::Discard {
                file,
                sha256: sha.to_string(),
            });
            return Err(TransferError::HashMismatch { file });
        }
        self.files[file as usize] = FileState::Verified;
        self.out.push_back(ReceiverOutput::Commit {
            file,
            name: name.to_string(),
            sha256: got,
        });
        Ok(())
    }

    fn abort_round(&mut self, err: TransferError, file: Option<u32>) -> Result<(), TransferError> {
        if let Some(r) = self.round.take() {
            self.send_abort(r.transfer, &err, file);
        }
        Err(err)
    }

    /// Next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<ReceiverOutput> {
        self.out.pop_front()
    }
}
