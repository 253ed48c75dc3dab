//! The association state machine and the API the transport drives.
//!
//! (Skeleton: the API the transport drives. Bodies are being written.)

use std::time::{Duration, Instant};

use bytes::Bytes;

/// Settings of an association.
#[derive(Debug, Clone)]
pub struct Config {
    /// SCTP port on both sides (`a=sctp-port`, 5000 in WebRTC).
    pub port: u16,
    /// Largest SCTP packet sent before a probe proves more (RFC 8261 §5: fits a 1500-byte
    /// path inside DTLS, UDP and IPv6).
    pub mtu: usize,
    /// A larger packet size to probe for once established (RFC 8899 with a padded HEARTBEAT),
    /// e.g. on loopback; `None` never probes.
    pub probe_mtu: Option<usize>,
    /// Largest message accepted from the peer (`a=max-message-size` we announce). A message
    /// that would exceed it is refused at its first chunk past the limit.
    pub max_message_size: usize,
    /// Receive window we advertise (`a_rwnd`), bytes: all the peer may have outstanding.
    pub receive_window: u32,
    /// Floor of the retransmission timeout (a LAN round trip is well under a millisecond).
    pub rto_min: Duration,
    /// Ceiling of the retransmission timeout.
    pub rto_max: Duration,
    /// Retransmission timeout before the round trip is measured (INIT, COOKIE ECHO).
    pub rto_initial: Duration,
    /// Longest a SACK is held back waiting for a second packet to acknowledge together.
    pub ack_delay: Duration,
    /// Consecutive retransmission timeouts after which the association fails.
    pub max_retransmissions: u32,
    /// Streams whose messages go ahead of the others' (the `control` channel).
    pub priority_streams: Vec<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: 5000,
            mtu: 1200,
            probe_mtu: None,
            max_message_size: 64 * 1024,
            receive_window: 1024 * 1024,
            rto_min: Duration::from_millis(10),
            rto_max: Duration::from_secs(1),
            rto_initial: Duration::from_millis(200),
            ack_delay: Duration::from_millis(5),
            max_retransmissions: 20,
            priority_streams: vec![0],
        }
    }
}

/// What the association tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed: messages flow.
    Connected,
    /// A whole message arrived.
    Message {
        /// Stream it arrived on.
        stream: u16,
        /// Its payload protocol identifier.
        ppid: u32,
        /// The message.
        payload: Bytes,
    },
    /// The peer reset these incoming streams (RFC 6525; a data channel closed).
    StreamsReset(Vec<u16>),
    /// Room opened in the send buffer (bytes were acknowledged).
    Acked,
    /// The association is over (peer ABORT or SHUTDOWN, too many timeouts, a protocol
    /// violation, or [`Association::close`]). Last event.
    Closed {
        /// Why, for the log.
        reason: String,
    },
}

/// Why a send was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The association is not established (yet, or any more).
    #[error("association not established")]
    NotEstablished,
    /// Empty payload (send one zero byte with an "empty" PPID instead, RFC 8831 §6.6).
    #[error("empty payload")]
    Empty,
}

/// An SCTP association over one DTLS connection.
#[derive(Debug)]
pub struct Association {}

impl Association {
    /// A new association. `seed` gives the verification tag, the initial TSN and cookie
    /// material (the caller draws it from a CSPRNG).
    pub fn new(_cfg: Config, _seed: [u8; 16], _now: Instant) -> Self {
        todo!()
    }

    /// Starts the handshake (sends INIT). Both ends may call it: a crossing INIT is resolved
    /// as RFC 9260 §5.2.1 says. An end that never calls it waits for the peer's INIT.
    pub fn connect(&mut self, _now: Instant) {
        todo!()
    }

    /// One packet from the peer (the plaintext of one DTLS record). Junk is dropped.
    pub fn handle_packet(&mut self, _now: Instant, _packet: &[u8]) {
        todo!()
    }

    /// The next packet to send, if any.
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Vec<u8>> {
        todo!()
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, _now: Instant) {
        todo!()
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }

    /// Queues a message on `stream`, ordered and reliable unless `unordered`.
    pub fn send(
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

    /// True once the handshake completed and until the association closes.
    pub fn is_established(&self) -> bool {
        todo!()
    }

    /// Ends the association with an ABORT (the peer sees it closed at once).
    pub fn close(&mut self, _now: Instant) {
        todo!()
    }
}
