//! Reassembly of fragments into messages and their delivery per stream (RFC 9260 §6.5, §6.9).
//!
//! The fragments of one message carry consecutive TSNs, from the one with the B bit to the one
//! with the E bit. Fragments are kept as runs of consecutive TSNs, so a message's size is known
//! at every fragment (and refused the moment it passes the cap) without walking the run.
//! Ordered messages are delivered in SSN order *per stream*: a hole in one stream never holds
//! back another.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::sctp::chunk::Data;

/// What the inbound half hands to the application, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A whole message.
    Message {
        /// Stream it arrived on.
        stream: u16,
        /// Its payload protocol identifier.
        ppid: u32,
        /// The message.
        payload: Bytes,
    },
    /// The peer reset these incoming streams (RFC 6525); every message sent on them before
    /// the reset was delivered ahead of this.
    StreamsReset(Vec<u16>),
}

/// A message whose fragments passed the size cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    /// Stream of the message.
    pub stream: u16,
    /// Bytes seen so far.
    pub size: usize,
}

/// A run of consecutive fragments of one message (keyed by its first TSN).
#[derive(Debug, Clone, Copy)]
struct Run {
    last: u64,
    bytes: usize,
}

/// A complete ordered message waiting for an earlier SSN of its stream.
#[derive(Debug)]
struct Waiting {
    ppid: u32,
    payload: Bytes,
}

/// Fragments, per-stream order and the delivery queue. Every byte held here counts against
/// the receive window until the application takes it.
#[derive(Debug, Default)]
pub(super) struct Reassembly {
    /// Fragments of messages not yet complete, by unwrapped TSN.
    fragments: BTreeMap<u64, Data>,
    /// Runs of consecutive fragments, by first TSN.
    runs: BTreeMap<u64, Run>,
    /// Bytes of fragments per ordered (stream, SSN) message, across holes.
    partial: HashMap<(u16, u16), usize>,
    /// Next SSN to deliver per stream (absent: 0).
    next_ssn: HashMap<u16, u16>,
    /// Complete ordered messages waiting for an earlier SSN.
    waiting: HashMap<(u16, u16), Waiting>,
    /// Ready for the application.
    ready: VecDeque<Delivery>,
    /// Messages in `ready`.
    ready_messages: usize,
    /// Payload bytes held (fragments, waiting and ready messages).
    held: usize,
}

fn same_message(a: &Data, b: &Data) -> bool {
    a.stream == b.stream && a.unordered == b.unordered && (a.unordered || a.ssn == b.ssn)
}

impl Reassembly {
    /// Payload bytes held.
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// True when a message waits for the application (it can free room by reading).
    pub(super) fn has_ready_message(&self) -> bool {
        self.ready_messages > 0
    }

    /// Takes the next delivery.
    pub(super) fn pop(&mut self) -> Option<Delivery> {
        let d = self.ready.pop_front()?;
        if let Delivery::Message { payload, .. } = &d {
            self.held -= payload.len();
            self.ready_messages -= 1;
        }
        Some(d)
    }

    /// Adds a new (never seen) fragment at unwrapped TSN `tsn`; `max` caps a message's size.
    pub(super) fn insert(&mut self, tsn: u64, d: Data, max: usize) -> Result<(), TooLarge> {
        let len = d.payload.len();
        if d.begin && d.end {
            if len > max {
                return Err(TooLarge {
                    stream: d.stream,
                    size: len,
                });
            }
            self.held += len;
            self.complete(d.stream, d.ssn, d.unordered, d.ppid, d.payload);
            return Ok(());
        }
        if !d.unordered {
            let bytes = self.partial.entry((d.stream, d.ssn)).or_insert(0);
            *bytes += len;
            if *bytes > max {
                return Err(TooLarge {
                    stream: d.stream,
                    size: *bytes,
                });
            }
        }
        let joins_left = !d.begin
            && tsn > 0
            && self
                .fragments
                .get(&(tsn - 1))
                .is_some_and(|p| !p.end && same_message(p, &d));
        let joins_right = !d.end
            && self
                .fragments
                .get(&(tsn + 1))
                .is_some_and(|n| !n.begin && same_message(n, &d));
        let (mut first, mut run) = (
            tsn,
            Run {
                last: tsn,
                bytes: len,
            },
        );
        if joins_left {
            if let Some((&start, left)) = self.runs.range(..tsn).next_back() {
                if left.last == tsn - 1 {
                    first = start;
                    run.bytes += left.bytes;
                }
            }
        }
        if joins_right {
            if let Some(right) = self.runs.remove(&(tsn + 1)) {
                run.last = right.last;
                run.bytes += right.bytes;
            }
        }
        let stream = d.stream;
        self.fragments.insert(tsn, d);
        self.held += len;
        self.runs.insert(first, run);
        if run.bytes > max {
            return Err(TooLarge {
                stream,
                size: run.bytes,
            });
        }
        let whole = self.fragments.get(&first).is_some_and(|f| f.begin)
            && self.fragments.get(&run.last).is_some_and(|l| l.end);
        if whole {
            self.runs.remove(&first);
            let mut buf = BytesMut::with_capacity(run.bytes);
            let mut head = None;
            for t in first..=run.last {
                if let Some(f) = self.fragments.remove(&t) {
                    buf.extend_from_slice(&f.payload);
                    head.get_or_insert(f);
                }
            }
            if let Some(h) = head {
                if !h.unordered {
                    self.partial.remove(&(h.stream, h.ssn));
                }
                self.complete(h.stream, h.ssn, h.unordered, h.ppid, buf.freeze());
            }
        }
        Ok(())
    }

    /// A whole message (its bytes already counted in `held`): ready now, or waiting for its
    /// turn in the stream.
    fn complete(&mut self, stream: u16, ssn: u16, unordered: bool, ppid: u32, payload: Bytes) {
        if unordered {
            self.push_ready(stream, ppid, payload);
            return;
        }
        let next = self.next_ssn.get(&stream).copied().unwrap_or(0);
        if ssn != next {
            let old = self
                .waiting
                .insert((stream, ssn), Waiting { ppid, payload });
            if let Some(old) = old {
                // A second message with the same SSN: the peer is confused; keep the newer.
                self.held -= old.payload.len();
            }
            return;
        }
        self.push_ready(stream, ppid, payload);
        self.advance(stream, next.wrapping_add(1));
    }

    /// Delivers the stream's waiting messages from `next` on.
    fn advance(&mut self, stream: u16, mut next: u16) {
        while let Some(w) = self.waiting.remove(&(stream, next)) {
            self.push_ready(stream, w.ppid, w.payload);
            next = next.wrapping_add(1);
        }
        self.next_ssn.insert(stream, next);
    }

    fn push_ready(&mut self, stream: u16, ppid: u32, payload: Bytes) {
        self.ready_messages += 1;
        self.ready.push_back(Delivery::Message {
            stream,
            ppid,
            payload,
        });
    }

    /// Resets the expected SSN of `streams` (all when empty: then the streams seen so far are
    /// reported) to 0 and tells the application, after the messages already delivered. Messages sent after the reset that arrived early
    /// wait under their new SSNs and are delivered now.
    pub(super) fn reset_streams(&mut self, streams: &[u16]) {
        let list: Vec<u16> = if streams.is_empty() {
            let mut all: Vec<u16> = self.next_ssn.keys().copied().collect();
            all.sort_unstable();
            all
        } else {
            streams.to_vec()
        };
        self.ready.push_back(Delivery::StreamsReset(list.clone()));
        if streams.is_empty() {
            self.next_ssn.clear();
        }
        for s in list {
            self.advance(s, 0);
        }
    }
}
