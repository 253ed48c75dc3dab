//! SCTP for data channels, sans-IO: the association that carries a link's two data channels
//! inside DTLS (RFC 8261), written for a LAN.
//!
//! Why our own: a page turn lost on Wi-Fi must be resent within milliseconds, not after the
//! one-second minimum retransmission timeout of general-purpose stacks, and a file must keep
//! flowing at 1–5 % random loss. The association measures the round trip and derives its
//! retransmission timeout from it (RFC 6298, with a LAN floor), fast-retransmits from SACK gap
//! reports (again if a retransmission is lost), probes for a lost last packet, paces its
//! bursts so that an ordinary receiver's socket buffer never overflows, and sends control
//! messages ahead of file data (PROTOCOL.md §1).
//!
//! Layout, one concern per file:
//! - [`chunk`] / [`packet`]: the wire format (RFC 9260 §3, RFC 6525 re-configuration), parsed
//!   from untrusted bytes without panics.
//! - [`send`]: the outbound half: message queues, fragmentation, retransmission, congestion
//!   control and pacing.
//! - [`recv`]: the inbound half: TSN tracking, SACKs, reassembly and delivery per stream, the
//!   receive window and message size caps.
//! - [`association`]: the state machine tying them together (handshake, heartbeats, path MTU
//!   probe, shutdown), and the public API the transport drives.
//!
//! Like the session core it does no IO and reads no clock: time comes in as an argument,
//! packets come in as bytes and go out as bytes, randomness comes in as a seed.

pub mod association;
pub mod chunk;
pub mod packet;
pub mod recv;
pub mod send;

pub use association::{Association, Config, Event};
