//! SCTP packets (RFC 9260 §3.1): the common header, the CRC32c checksum and the chunks
//! bundled after it.

use super::chunk::Chunk;

/// An SCTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Source port (WebRTC: the `a=sctp-port`, 5000).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Verification tag.
    pub verification_tag: u32,
    /// The chunks, in order.
    pub chunks: Vec<Chunk>,
}
