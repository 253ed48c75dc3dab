//! Incoming stream resets (RFC 6525 §5.2): the peer closes a data channel by resetting its
//! outgoing stream, which is our incoming one.
//!
//! A request is carried out once every TSN up to its `last_tsn` has arrived (until then it is
//! deferred and answered "in progress"); then the stream's expected SSN goes back to 0, the
//! application hears `StreamsReset` after the stream's last messages, and a "performed" answer
//! goes out unasked. A retransmitted request gets the latest answer again.

use super::Receiver;

/// Requests deferred at once at most (a peer has one outstanding; this bounds a hostile one).
const MAX_DEFERRED: usize = 16;

/// RFC 6525 §4.4 results.
pub mod result {
    /// Success - Performed.
    pub const PERFORMED: u32 = 1;
    /// Denied.
    pub const DENIED: u32 = 2;
    /// Error - Request Already in Progress.
    pub const ALREADY_IN_PROGRESS: u32 = 4;
    /// Error - Bad Sequence Number.
    pub const BAD_SEQUENCE: u32 = 5;
    /// In progress.
    pub const IN_PROGRESS: u32 = 6;
}

/// A request waiting for its last TSN.
#[derive(Debug, Clone)]
pub(super) struct Deferred {
    request_seq: u32,
    last_tsn: u64,
    streams: Vec<u16>,
}

/// Request sequence bookkeeping (RFC 6525 §5.2.1).
#[derive(Debug, Clone)]
pub(super) struct Resets {
    /// The request sequence number we expect next (the peer's first is its initial TSN).
    expected: u32,
    /// Answer to the latest request, for its retransmissions.
    last_result: u32,
    pub(super) deferred: Vec<Deferred>,
    /// Responses (request seq, result) to send.
    pub(super) responses: Vec<(u32, u32)>,
}

impl Resets {
    pub(super) fn new(peer_initial_tsn: u32) -> Self {
        Self {
            expected: peer_initial_tsn,
            last_result: result::PERFORMED,
            deferred: Vec::new(),
            responses: Vec::new(),
        }
    }

    /// Checks a request's sequence number: `Ok(())` for the next one (then consumed),
    /// `Err(result)` to answer at once (a retransmission gets the previous answer).
    fn admit(&mut self, request_seq: u32) -> Result<(), u32> {
        if request_seq == self.expected {
            self.expected = self.expected.wrapping_add(1);
            Ok(())
        } else if request_seq == self.expected.wrapping_sub(1) {
            Err(self.last_result)
        } else {
            Err(result::BAD_SEQUENCE)
        }
    }
}

impl Receiver {
    /// An Outgoing SSN Reset Request from the peer; queues its response.
    pub fn on_outgoing_reset(&mut self, request_seq: u32, last_tsn: u32, streams: &[u16]) {
        let result = match self.resets.admit(request_seq) {
            Err(r) => r,
            Ok(()) => {
                let last = self.unwrap(last_tsn);
                if last <= self.cum {
                    self.reassembly.reset_streams(streams);
                    result::PERFORMED
                } else if self.resets.deferred.len() >= MAX_DEFERRED {
                    result::ALREADY_IN_PROGRESS
                } else {
                    self.resets.deferred.push(Deferred {
                        request_seq,
                        last_tsn: last,
                        streams: streams.to_vec(),
                    });
                    result::IN_PROGRESS
                }
            }
        };
        self.resets.last_result = result;
        self.resets.responses.push((request_seq, result));
    }

    /// Any other request (we only carry out outgoing resets): denied, in sequence.
    pub fn on_other_request(&mut self, request_seq: u32) {
        let result = match self.resets.admit(request_seq) {
            Err(r) => r,
            Ok(()) => result::DENIED,
        };
        self.resets.last_result = result;
        self.resets.responses.push((request_seq, result));
    }

    /// Responses (request seq, result) to put in a RE-CONFIG chunk.
    pub fn take_reset_responses(&mut self) -> Vec<(u32, u32)> {
        std::mem::take(&mut self.resets.responses)
    }

    /// Carries out deferred requests whose last TSN has arrived.
    pub(super) fn perform_due_resets(&mut self) {
        while let Some(i) = self
            .resets
            .deferred
            .iter()
            .position(|d| d.last_tsn <= self.cum)
        {
            let d = self.resets.deferred.remove(i);
            self.reassembly.reset_streams(&d.streams);
            if self.resets.expected.wrapping_sub(1) == d.request_seq {
                self.resets.last_result = result::PERFORMED;
            }
            self.resets
                .responses
                .push((d.request_seq, result::PERFORMED));
        }
    }
}
