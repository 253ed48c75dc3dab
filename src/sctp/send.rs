//! The outbound half of an association: what the application queued, what is in flight, and
//! when it may go out.
//!
//! (Skeleton: the API the association drives. Bodies are being written.)

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::chunk::{Data, Sack};

/// Settings of the outbound half (filled from [`super::Config`]).
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Largest SCTP packet, bytes (common header and chunks, before DTLS).
    pub mtu: usize,
    /// Floor of the retransmission timeout.
    pub rto_min: Duration,
    /// Ceiling of the retransmission timeout.
    pub rto_max: Duration,
    /// Retransmission timeout before any round trip was measured.
    pub rto_initial: Duration,
    /// Streams whose messages go ahead of every other stream's (the `control` channel).
    pub priority_streams: Vec<u16>,
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Empty messages are sent by the caller with the "empty" PPIDs and one zero byte
    /// (RFC 8831 §6.6); the queue refuses zero-length payloads.
    #[error("empty payload")]
    Empty,
}

/// The outbound half.
#[derive(Debug)]
pub struct Sender {}

impl Sender {
    /// A sender whose first TSN is `initial_tsn`, towards a peer advertising `peer_rwnd`.
    pub fn new(_cfg: SendConfig, _initial_tsn: u32, _peer_rwnd: u32, _now: Instant) -> Self {
        todo!()
    }

    /// Queues one message. Fragmentation to the MTU happens here or when chunks are taken.
    pub fn queue(
        &mut self,
        _stream: u16,
        _ppid: u32,
        _payload: Bytes,
        _unordered: bool,
    ) -> Result<(), SendError> {
        todo!()
    }

    /// Bytes of `stream` queued or in flight and not yet acknowledged.
    pub fn buffered(&self, _stream: u16) -> usize {
        todo!()
    }

    /// Bytes queued or in flight on every stream.
    pub fn buffered_total(&self) -> usize {
        todo!()
    }

    /// Applies a SACK from the peer.
    pub fn on_sack(&mut self, _sack: &Sack, _now: Instant) {
        todo!()
    }

    /// The next DATA chunk to put in the packet being built, if one may go now and fits in
    /// `room` bytes of chunk (header included): retransmissions first, then priority streams,
    /// then the rest — within the congestion window, the peer's window and the pacing budget.
    pub fn poll_data(&mut self, _now: Instant, _room: usize) -> Option<Data> {
        todo!()
    }

    /// Timers: retransmission, loss probe, pacing.
    pub fn handle_timeout(&mut self, _now: Instant) {
        todo!()
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// The peer's verified path allows packets this large now (path MTU probe succeeded).
    pub fn set_mtu(&mut self, _mtu: usize) {
        todo!()
    }

    /// Smoothed round trip, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        todo!()
    }

    /// Consecutive retransmission timeouts with no acknowledgement in between (the association
    /// gives up past a limit).
    pub fn consecutive_timeouts(&self) -> u32 {
        todo!()
    }

    /// Every TSN assigned so far up to this one (for SHUTDOWN / RE-CONFIG `last_tsn`).
    pub fn last_assigned_tsn(&self) -> u32 {
        todo!()
    }
}
