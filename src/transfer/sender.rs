//! The sending side of a transfer (the host), sans-IO.
//!
//! The driver calls [`Sender::offer`] when the link is up, passes control messages from the
//! receiver to [`Sender::handle_control`], and drains [`Sender::poll_output`]:
//! - `Control(msg)`: send on the control channel (wrap it in an envelope);
//! - `Read { file, offset, len }`: read exactly those bytes of the file and hand them to
//!   [`Sender::handle_data`] (reads are answered in the order asked);
//! - `Chunk(bytes)`: send as one message on the binary channel;
//! - `Event(e)`: tell the app.
//!
//! Backpressure: every requested read and every chunk not yet drained counts against
//! [`SenderConfig::max_in_flight`]. The driver reports bytes that left the channel's send buffer
//! with [`Sender::handle_drained`] (e.g. from `bufferedAmount` going down); until then the sender
//! asks for nothing more. It never drops data.

use super::progress::{Meter, Progress};
use super::{
    chunk_count, encode_chunk, Limits, Manifest, TransferError, TransferEvent, MAX_CHUNK_PAYLOAD,
};
use crate::protocol::{Message, TransferAbort, TransferOffer};
use crate::time::Time;
use std::collections::VecDeque;

/// Sender settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderConfig {
    /// Most bytes (read requests plus chunk messages not yet drained) outstanding at once.
    /// Default 2 MiB; at least one chunk is always allowed so a tiny value still progresses.
    pub max_in_flight: u64,
    /// Transfer index of the first round; each [`Sender::offer`] uses the next one.
    pub first_transfer: u32,
    /// Limits the host's own manifest must respect.
    pub limits: Limits,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            max_in_flight: 2 << 20,
            first_transfer: 1,
            limits: Limits::default(),
        }
    }
}

/// What the sender asks of its driver.
// Outputs live only between `poll_output` calls; boxing the message would cost an allocation
// per control message for no gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum SenderOutput {
    /// Send on the control channel.
    Control(Message),
    /// Read `len` bytes of file `file` at `offset` and pass them to [`Sender::handle_data`].
    Read {
        /// File index in the manifest.
        file: u32,
        /// Byte offset.
        offset: u64,
        /// Bytes to read (at most 16 376).
        len: usize,
    },
    /// Send as one binary message.
    Chunk(Vec<u8>),
    /// Tell the application.
    Event(TransferEvent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No round: before the first offer, after a cut or an abort.
    Idle,
    /// Offer sent, waiting for the request.
    Offered,
    /// Sending the requested ranges.
    Sending,
    /// All sent; waiting for DONE (or DONE received).
    Done,
}

/// The host side of file transfer.
#[derive(Debug)]
pub struct Sender {
    config: SenderConfig,
    manifest: Manifest,
    hash: String,
    bases: Vec<u32>,
    next_transfer: u32,
    transfer: u32,
    state: State,
    /// Ranges still to read, in order: (file, next offset).
    plan: VecDeque<(u32, u64)>,
    /// Reads asked for and not yet answered.
    pending: VecDeque<(u32, u64, usize)>,
    in_flight: u64,
    meter: Meter,
    sent_total: u64,
    confirmed: bool,
    out: VecDeque<SenderOutput>,
}

impl Sender {
    /// A sender for `manifest`, checked against `config.limits` first (a host must not publish
    /// what its peers would refuse).
    pub fn new(config: SenderConfig, mut manifest: Manifest) -> Result<Sender, TransferError> {
        manifest.validate(&config.limits)?;
        Ok(Sender {
            hash: manifest.hash(),
            bases: manifest.chunk_bases(),
            next_transfer: config.first_transfer,
            transfer: config.first_transfer,
            config,
            manifest,
            state: State::Idle,
            plan: VecDeque::new(),
            pending: VecDeque::new(),
            in_flight: 0,
            meter: Meter::default(),
            sent_total: 0,
            confirmed: false,
            out: VecDeque::new(),
        })
    }

    /// The manifest being sent.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Its pack hash.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Transfer index of the current (or last) round.
    pub fn transfer(&self) -> u32 {
        self.transfer
    }

    /// Whether the receiver confirmed it holds everything (DONE).
    pub fn is_done(&self) -> bool {
        self.confirmed
    }

    /// Bytes counted against the in-flight budget.
    pub fn bytes_in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Payload bytes put into chunks over this sender's whole life (all rounds).
    pub fn payload_bytes_sent(&self) -> u64 {
        self.sent_total
    }

    /// Progress of the current round.
    pub fn progress(&self, now: Time) -> Progress {
        self.meter.progress(now)
    }

    /// Starts a round (first time, or to resume after a cut): a new transfer index and an
    /// OFFER. Anything outstanding from an earlier round is forgotten.
    pub fn offer(&mut self, now: Time) {
        self.transfer = self.next_transfer;
        self.next_transfer = self.next_transfer.wrapping_add(1);
        self.reset_round();
        self.confirmed = false;
        self.meter = Meter::start(now, 0, 0);
        self.state = State::Offered;
        self.out
            .push_back(SenderOutput::Control(Message::TransferOffer(
                TransferOffer {
                    transfer: self.transfer,
                    manifest: self.manifest.clone(),
                },
            )));
    }

    fn reset_round(&mut self) {
        self.plan.clear();
        self.pending.clear();
        self.in_flight = 0;
    }

    /// The link went down: the round is over (chunks in flight are lost with the link). Call
    /// [`offer`](Sender::offer) on the next link to resume.
    pub fn link_down(&mut self) {
        if matches!(self.state, State::Offered | State::Sending) {
            let _ = self.fail(TransferError::LinkLost, false);
        }
    }

    /// Bytes of chunk messages that have left the binary channel's send buffer.
    pub fn handle_drained(&mut self, bytes: u64) {
        self.in_flight = self.in_flight.saturating_sub(bytes);
    }

    /// A control message from the receiver (already decoded and validated). Messages of other
    /// rounds are refused with `unknown-transfer` and change nothing.
    pub fn handle_control(&mut self, now: Time, msg: &Message) -> Result<(), TransferError> {
        match msg {
            Message::TransferRequest(r) => {
                self.check_round(r.transfer)?;
                if r.hash != self.hash {
                    return self.fail(
                        TransferError::UnexpectedMessage("request for another manifest"),
                        true,
                    );
                }
                let mut plan = VecDeque::new();
                let (mut bytes, mut files) = (0u64, 0u32);
                for w in &r.want {
                    let Some(f) = self.manifest.files.get(w.file as usize) else {
                        return self.fail(TransferError::SessionMediaFileNotFound(w.file), true);
                    };
                    if w.from > f.size || w.from % MAX_CHUNK_PAYLOAD as u64 != 0 {
                        return self.fail(
                            TransferError::UnexpectedMessage("range not on a chunk boundary"),
                            true,
                        );
                    }
                    if w.from < f.size {
                        plan.push_back((w.file, w.from));
                        bytes += f.size - w.from;
                        files += 1;
                    }
                }
                self.reset_round();
                self.plan = plan;
                self.meter = Meter::start(now, bytes, files);
                self.state = if self.plan.is_empty() {
                    State::Done
                } else {
                    State::Sending
                };
                Ok(())
            }
            Message::TransferDone(d) => {
                self.check_round(d.transfer)?;
                if d.hash != self.hash {
                    return Err(TransferError::UnexpectedMessage(
                        "done for another manifest",
                    ));
                }
                self.reset_round();
                self.state = State::Done;
                self.confirmed = true;
                self.out.push_back(SenderOutput::Event(TransferEvent::Done {
                    transfer: self.transfer,
                    hash: self.hash.clone(),
                }));
                Ok(())
            }
            Message::TransferAbort(a) => {
                self.check_round(a.transfer)?;
                self.fail(TransferError::Aborted(a.code.clone()), false)
            }
            _ => Err(TransferError::UnexpectedMessage(
                "not a transfer message for a sender",
            )),
        }
    }

    fn check_round(&self, transfer: u32) -> Result<(), TransferError> {
        if transfer != self.transfer || self.state == State::Idle {
            return Err(TransferError::UnknownTransfer(transfer));
        }
        Ok(())
    }

    /// Ends the round with `err`: tells the peer (when `tell_peer`) and the app.
    fn fail(&mut self, err: TransferError, tell_peer: bool) -> Result<(), TransferError> {
        self.reset_round();
        self.state = State::Idle;
        if tell_peer {
            self.out
                .push_back(SenderOutput::Control(Message::TransferAbort(
                    TransferAbort {
                        transfer: self.transfer,
                        code: err.code().into(),
                        file: None,
                        message: String::new(),
                    },
                )));
        }
        let code = match &err {
            TransferError::Aborted(c) => c.clone(),
            e => e.code().into(),
        };
        self.out
            .push_back(SenderOutput::Event(TransferEvent::Failed {
                transfer: self.transfer,
                code,
                message: err.to_string(),
            }));
        Err(err)
    }

    /// The bytes of the oldest pending [`SenderOutput::Read`]. Anything else (another range, a
    /// short read because the file changed) aborts the round with `unexpected-data`.
    pub fn handle_data(
        &mut self,
        _now: Time,
        file: u32,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), TransferError> {
        match self.pending.front() {
            Some(&(f, o, len)) if f == file && o == offset && len == bytes.len() => {}
            _ => return self.fail(TransferError::UnexpectedData { file, offset }, true),
        }
        self.pending.pop_front();
        let index = self.bases[file as usize] + (offset / MAX_CHUNK_PAYLOAD as u64) as u32;
        let chunk = encode_chunk(self.transfer, index, bytes)?;
        // The read's reservation (len + header) now stands for the chunk until it drains.
        self.meter.bytes_done += bytes.len() as u64;
        self.sent_total += bytes.len() as u64;
        self.out.push_back(SenderOutput::Chunk(chunk));
        let size = self.manifest.files[file as usize].size;
        if offset + bytes.len() as u64 == size {
            self.meter.files_done += 1;
            self.out
                .push_back(SenderOutput::Event(TransferEvent::FileDone {
                    transfer: self.transfer,
                    file,
                }));
        }
        Ok(())
    }

    /// Asks for more reads while the budget allows.
    fn refill(&mut self) {
        if self.state != State::Sending {
            return;
        }
        while let Some(&(file, offset)) = self.plan.front() {
            let size = self.manifest.files[file as usize].size;
            let len = (size - offset).min(MAX_CHUNK_PAYLOAD as u64) as usize;
            let cost = (len + super::CHUNK_HEADER_LEN) as u64;
            if self.in_flight > 0 && self.in_flight + cost > self.config.max_in_flight {
                break;
            }
            self.in_flight += cost;
            self.pending.push_back((file, offset, len));
            self.out.push_back(SenderOutput::Read { file, offset, len });
            let next = offset + len as u64;
            if next >= size {
                self.plan.pop_front();
            } else if let Some(front) = self.plan.front_mut() {
                front.1 = next;
            }
        }
        if self.plan.is_empty() && self.pending.is_empty() {
            // Everything handed out; DONE from the receiver closes the round.
            self.state = State::Done;
        }
    }

    /// Next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<SenderOutput> {
        if self.out.is_empty() {
            self.refill();
        }
        self.out.pop_front()
    }

    /// Chunks the file `file` needs in all (for progress displays).
    pub fn file_chunks(&self, file: u32) -> u64 {
        self.manifest
            .files
            .get(file as usize)
            .map_or(0, |f| chunk_count(f.size))
    }
}
