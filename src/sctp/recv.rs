//! The inbound half of an association: which TSNs arrived (RFC 9260 §6.2, serial number
//! arithmetic of RFC 1982), when to send a SACK, the receive window, and (in `reassembly.rs`)
//! messages rebuilt from fragments and delivered per stream, (in `reset.rs`) incoming stream
//! resets.
//!
//! Everything here comes from the peer and is untrusted: a TSN too far ahead is dropped, a
//! message is refused the moment it passes the size cap, and what is held never exceeds the
//! advertised window by more than one chunk that unblocks delivery.

mod reassembly;
mod reset;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

pub use reassembly::{Delivery, TooLarge};
pub use reset::result as reset_result;

use super::chunk::{Data, GapBlock, Sack};
use reassembly::Reassembly;
use reset::Resets;

/// Duplicate TSNs reported in one SACK at most.
pub const MAX_DUPLICATES: usize = 16;
/// Gap blocks reported in one SACK at most (the lowest ones, those the sender must repair
/// first): 16 + 4 × 128 + 4 × 16 bytes fit any packet.
pub const MAX_GAPS: usize = 128;
/// TSNs further ahead of the cumulative ack than this are dropped: a gap block cannot
/// describe them (16-bit offsets) and no honest sender has that many chunks in flight.
pub const MAX_SPAN: u64 = 65_535;

/// Settings of the inbound half (filled from [`super::Config`]).
#[derive(Debug, Clone)]
pub struct RecvConfig {
    /// Receive window we advertise, bytes.
    pub receive_window: u32,
    /// Largest message accepted, bytes.
    pub max_message_size: usize,
    /// Longest a SACK is delayed.
    pub ack_delay: Duration,
    /// Streams the peer may send on (0..this); DATA on others is acknowledged and dropped.
    pub inbound_streams: u16,
}

/// Why the association must end because of what the peer sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// A message passed `max_message_size`.
    #[error("message too large: over {size} bytes on stream {stream}, limit {limit}")]
    MessageTooLarge {
        /// Stream of the message.
        stream: u16,
        /// Bytes seen when it was refused.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A DATA chunk without user data (RFC 9260 §6.2: a protocol violation).
    #[error("DATA chunk without user data")]
    NoUserData,
}

/// The inbound half.
#[derive(Debug)]
pub struct Receiver {
    cfg: RecvConfig,
    /// Cumulative TSN, unwrapped to 64 bits (never wraps; starts above 2^32 so that a TSN
    /// behind it stays positive).
    cum: u64,
    /// TSNs received above `cum`.
    ahead: BTreeSet<u64>,
    reassembly: Reassembly,
    resets: Resets,
    /// Duplicates since the last SACK.
    duplicates: Vec<u32>,
    /// A SACK must go out at the next chance.
    ack_now: bool,
    /// A SACK is owed by then (set when DATA arrived and none is due yet).
    ack_deadline: Option<Instant>,
    /// Packets with DATA since the last SACK.
    unacked_packets: u32,
    /// The window in the last SACK sent.
    advertised: u32,
}

impl Receiver {
    /// An inbound half expecting `peer_initial_tsn` first.
    pub fn new(cfg: RecvConfig, peer_initial_tsn: u32) -> Self {
        let advertised = cfg.receive_window;
        Self {
            cfg,
            cum: (1u64 << 32) + u64::from(peer_initial_tsn) - 1,
            ahead: BTreeSet::new(),
            reassembly: Reassembly::default(),
            resets: Resets::new(peer_initial_tsn),
            duplicates: Vec::new(),
            ack_now: false,
            ack_deadline: None,
            unacked_packets: 0,
            advertised,
        }
    }

    /// `tsn` placed on the 64-bit line nearest the cumulative ack (RFC 1982).
    fn unwrap(&self, tsn: u32) -> u64 {
        let diff = i64::from(tsn.wrapping_sub(self.cum as u32) as i32);
        (self.cum as i64 + diff) as u64
    }

    /// The cumulative TSN ack.
    pub fn cum_tsn(&self) -> u32 {
        self.cum as u32
    }

    /// Bytes held for the application (fragments and messages not yet taken).
    pub fn held(&self) -> usize {
        self.reassembly.held()
    }

    /// The window to advertise now.
    pub fn rwnd(&self) -> u32 {
        let held = u32::try_from(self.held()).unwrap_or(u32::MAX);
        self.cfg.receive_window.saturating_sub(held)
    }

    /// One DATA chunk. `Err` means the association must end (message too large, no data).
    pub fn on_data(&mut self, d: Data) -> Result<(), RecvError> {
        if d.immediate {
            self.ack_now = true;
        }
        let tsn = self.unwrap(d.tsn);
        if tsn <= self.cum || self.ahead.contains(&tsn) {
            if self.duplicates.len() < MAX_DUPLICATES {
                self.duplicates.push(d.tsn);
            }
            self.ack_now = true;
            return Ok(());
        }
        if tsn - self.cum > MAX_SPAN {
            return Ok(());
        }
        if d.payload.is_empty() {
            return Err(RecvError::NoUserData);
        }
        let after = self.held() + d.payload.len();
        let window = self.cfg.receive_window as usize;
        // Past the window, only the chunk that fills the lowest hole is taken, and only when
        // the application has nothing to read: then taking it is the only way forward. An
        // honest sender never needs more than one message beyond the window that way (a
        // message larger than the window); past that, nothing is taken.
        let unblocks = tsn == self.cum + 1
            && !self.reassembly.has_ready_message()
            && after <= window + self.cfg.max_message_size;
        if after > window && !unblocks {
            // The SACK tells the sender the window is shut.
            self.ack_now = true;
            return Ok(());
        }
        let had_gap = !self.ahead.is_empty();
        if tsn == self.cum + 1 {
            self.cum = tsn;
            while self.ahead.first() == Some(&(self.cum + 1)) {
                self.ahead.pop_first();
                self.cum += 1;
            }
        } else {
            self.ahead.insert(tsn);
        }
        if had_gap || !self.ahead.is_empty() {
            self.ack_now = true;
        }
        if d.stream < self.cfg.inbound_streams {
            let max = self.cfg.max_message_size;
            self.reassembly
                .insert(tsn, d, max)
                .map_err(|e| RecvError::MessageTooLarge {
                    stream: e.stream,
                    size: e.size,
                    limit: max,
                })?;
        }
        if !self.resets.deferred.is_empty() {
            self.perform_due_resets();
        }
        Ok(())
    }

    /// The end of a packet that carried DATA: every second one is acknowledged at once, a
    /// lone one after `ack_delay`.
    pub fn end_packet(&mut self, now: Instant) {
        self.unacked_packets += 1;
        if self.unacked_packets >= 2 {
            self.ack_now = true;
        }
        if self.ack_deadline.is_none() {
            self.ack_deadline = Some(now + self.cfg.ack_delay);
        }
    }

    /// A SACK must go out now.
    pub fn ack_due(&self, now: Instant) -> bool {
        self.ack_now || self.ack_deadline.is_some_and(|t| t <= now)
    }

    /// Something arrived that no SACK has acknowledged yet (worth piggybacking).
    pub fn ack_pending(&self) -> bool {
        self.ack_now || self.ack_deadline.is_some()
    }

    /// When the delayed SACK is owed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ack_now {
            None
        } else {
            self.ack_deadline
        }
    }

    /// The SACK describing what arrived (call [`on_sack_sent`](Self::on_sack_sent) once it
    /// is in a packet).
    pub fn sack(&self) -> Sack {
        let mut gaps = Vec::new();
        let mut run: Option<(u64, u64)> = None;
        for &t in &self.ahead {
            match run {
                Some((s, e)) if t == e + 1 => run = Some((s, t)),
                Some((s, e)) => {
                    gaps.push(self.gap(s, e));
                    if gaps.len() == MAX_GAPS {
                        run = None;
                        break;
                    }
                    run = Some((t, t));
                }
                None => run = Some((t, t)),
            }
        }
        if let Some((s, e)) = run {
            gaps.push(self.gap(s, e));
        }
        Sack {
            cum_tsn_ack: self.cum as u32,
            a_rwnd: self.rwnd(),
            gaps,
            duplicates: self.duplicates.clone(),
        }
    }

    fn gap(&self, start: u64, end: u64) -> GapBlock {
        // `ahead` only holds TSNs within MAX_SPAN of the cumulative ack.
        GapBlock {
            start: (start - self.cum) as u16,
            end: (end - self.cum) as u16,
        }
    }

    /// The SACK from [`sack`](Self::sack) went out.
    pub fn on_sack_sent(&mut self) {
        self.duplicates.clear();
        self.ack_now = false;
        self.ack_deadline = None;
        self.unacked_packets = 0;
        self.advertised = self.rwnd();
    }

    /// The next message (or stream reset) for the application. Reading opens the window;
    /// once it has grown enough since the last SACK, a window update goes out.
    pub fn pop(&mut self) -> Option<Delivery> {
        let d = self.reassembly.pop()?;
        let window = self.cfg.receive_window;
        let step = (window / 4).min(64 * 1024);
        if self.advertised < window / 2 && self.rwnd() >= self.advertised.saturating_add(step) {
            self.ack_now = true;
        }
        Some(d)
    }
}

#[cfg(test)]
mod tests;
