//! Messages waiting for their TSNs, one queue per stream: the priority streams in their
//! configured order, the others round-robin by message.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

/// A message as the application queued it.
#[derive(Debug, Clone)]
pub(super) struct Message {
    pub(super) ppid: u32,
    pub(super) payload: Bytes,
    pub(super) unordered: bool,
}

#[derive(Debug, Default)]
struct Stream {
    queue: VecDeque<Message>,
    /// SSN of the next ordered message (RFC 9260 §6.5).
    next_ssn: u16,
    /// Bytes queued or sent and not yet cumulatively acknowledged.
    buffered: usize,
}

/// Every stream's queue.
#[derive(Debug)]
pub(super) struct Streams {
    streams: BTreeMap<u16, Stream>,
    priority: Vec<u16>,
    /// Non-priority streams with a message waiting.
    ready: BTreeSet<u16>,
    /// Round-robin position: the next bulk message comes from the first ready stream ≥ this.
    cursor: u16,
    queued_priority: usize,
    /// Bytes not yet acknowledged, every stream.
    total: usize,
}

impl Streams {
    pub(super) fn new(priority: Vec<u16>) -> Self {
        Self {
            streams: BTreeMap::new(),
            priority,
            ready: BTreeSet::new(),
            cursor: 0,
            queued_priority: 0,
            total: 0,
        }
    }

    pub(super) fn push(&mut self, stream: u16, msg: Message) {
        let len = msg.payload.len();
        let s = self.streams.entry(stream).or_default();
        s.queue.push_back(msg);
        s.buffered += len;
        self.total += len;
        if self.priority.contains(&stream) {
            self.queued_priority += 1;
        } else {
            self.ready.insert(stream);
        }
    }

    pub(super) fn has_priority(&self) -> bool {
        self.queued_priority > 0
    }

    pub(super) fn has_bulk(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Size of the next priority message, without taking it.
    pub(super) fn peek_priority(&self) -> Option<usize> {
        if self.queued_priority == 0 {
            return None;
        }
        self.priority.iter().find_map(|id| {
            let s = self.streams.get(id)?;
            s.queue.front().map(|m| m.payload.len())
        })
    }

    /// Takes the next priority message with its stream and SSN.
    pub(super) fn pop_priority(&mut self) -> Option<(u16, u16, Message)> {
        if self.queued_priority == 0 {
            return None;
        }
        let id = *self
            .priority
            .iter()
            .find(|id| self.streams.get(id).is_some_and(|s| !s.queue.is_empty()))?;
        self.queued_priority -= 1;
        self.take(id)
    }

    fn next_bulk_stream(&self) -> Option<u16> {
        self.ready
            .range(self.cursor..)
            .next()
            .or_else(|| self.ready.iter().next())
            .copied()
    }

    /// Size of the next bulk message, without taking it.
    pub(super) fn peek_bulk(&self) -> Option<usize> {
        let id = self.next_bulk_stream()?;
        self.streams[&id].queue.front().map(|m| m.payload.len())
    }

    /// Takes the next bulk message (round-robin over streams) with its stream and SSN.
    pub(super) fn pop_bulk(&mut self) -> Option<(u16, u16, Message)> {
        let id = self.next_bulk_stream()?;
        self.cursor = id.wrapping_add(1);
        let out = self.take(id);
        if self.streams.get(&id).is_none_or(|s| s.queue.is_empty()) {
            self.ready.remove(&id);
        }
        out
    }

    fn take(&mut self, id: u16) -> Option<(u16, u16, Message)> {
        let s = self.streams.get_mut(&id)?;
        let msg = s.queue.pop_front()?;
        let ssn = s.next_ssn;
        if !msg.unordered {
            // Unordered messages carry no SSN of their own (RFC 9260 §6.6).
            s.next_ssn = s.next_ssn.wrapping_add(1);
        }
        Some((id, ssn, msg))
    }

    /// `bytes` of `stream` were cumulatively acknowledged.
    pub(super) fn acked(&mut self, stream: u16, bytes: usize) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.buffered = s.buffered.saturating_sub(bytes);
        }
        self.total = self.total.saturating_sub(bytes);
    }

    pub(super) fn buffered(&self, stream: u16) -> usize {
        self.streams.get(&stream).map_or(0, |s| s.buffered)
    }

    pub(super) fn total(&self) -> usize {
        self.total
    }

    /// Outgoing SSNs start again from 0 (RFC 6525 §5.2.2: after an outgoing stream reset).
    pub(super) fn reset_ssn(&mut self, streams: &[u16]) {
        for (id, s) in self.streams.iter_mut() {
            if streams.is_empty() || streams.contains(id) {
                s.next_ssn = 0;
            }
        }
    }
}
