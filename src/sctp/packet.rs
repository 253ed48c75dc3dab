//! SCTP packets (RFC 9260 §3.1): the common header, the CRC32c checksum and the chunks
//! bundled after it.

use bytes::Bytes;

use super::chunk::{Chunk, ChunkError};

/// Bytes of the common header: ports, verification tag, checksum.
pub const COMMON_HEADER_LEN: usize = 12;

/// Where the checksum sits in the common header.
const CHECKSUM_AT: usize = 8;

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

/// Why bytes are not an SCTP packet. The packet is dropped whole (RFC 9260 §6.8, §8.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the common header.
    #[error("packet shorter than the common header")]
    TooShort,
    /// The CRC32c does not match.
    #[error("bad checksum")]
    BadChecksum,
    /// A common header and no chunk.
    #[error("packet without chunks")]
    NoChunks,
    /// A malformed chunk.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}

impl Packet {
    /// Parses a packet: common header, checksum, then every chunk. DATA payloads and other
    /// opaque values are slices of `buf`.
    pub fn decode(buf: &Bytes) -> Result<Packet, PacketError> {
        let Some(header) = buf.get(..COMMON_HEADER_LEN) else {
            return Err(PacketError::TooShort);
        };
        let stored = [header[8], header[9], header[10], header[11]];
        if u32::from_le_bytes(stored) != checksum(buf) {
            return Err(PacketError::BadChecksum);
        }
        let mut chunks = Vec::new();
        let mut at = COMMON_HEADER_LEN;
        while at < buf.len() {
            let (chunk, next) = Chunk::decode_at(buf, at)?;
            chunks.push(chunk);
            at = next;
        }
        if chunks.is_empty() {
            return Err(PacketError::NoChunks);
        }
        Ok(Packet {
            src_port: u16::from_be_bytes([header[0], header[1]]),
            dst_port: u16::from_be_bytes([header[2], header[3]]),
            verification_tag: u32::from_be_bytes([header[4], header[5], header[6], header[7]]),
            chunks,
        })
    }

    /// Bytes of the encoded packet.
    pub fn encoded_len(&self) -> usize {
        COMMON_HEADER_LEN + self.chunks.iter().map(Chunk::encoded_len).sum::<usize>()
    }

    /// The packet on the wire, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        start(
            &mut out,
            self.src_port,
            self.dst_port,
            self.verification_tag,
        );
        for chunk in &self.chunks {
            chunk.encode(&mut out);
        }
        finish(&mut out);
        out
    }
}

/// Appends a common header with a zero checksum to `out`, which should be empty: the packet
/// is all of `out` when [`finish`] is called. Chunks go after it ([`Chunk::encode`]).
pub fn start(out: &mut Vec<u8>, src_port: u16, dst_port: u16, tag: u32) {
    out.extend_from_slice(&src_port.to_be_bytes());
    out.extend_from_slice(&dst_port.to_be_bytes());
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
}

/// Writes the checksum of the whole packet `out` into its common header. Does nothing to a
/// slice shorter than the header.
pub fn finish(out: &mut [u8]) {
    let crc = checksum(out);
    if let Some(field) = out.get_mut(CHECKSUM_AT..COMMON_HEADER_LEN) {
        field.copy_from_slice(&crc.to_le_bytes());
    }
}

/// The CRC32c of a packet computed with its checksum field taken as zero (RFC 9260 §6.8). It
/// goes on the wire least significant byte first: RFC 9260 Appendix B's sample code reverses
/// the bytes of the CRC before storing it in network byte order.
pub fn checksum(packet: &[u8]) -> u32 {
    let head = packet.get(..CHECKSUM_AT).unwrap_or(packet);
    let crc = crc32c::crc32c_append(crc32c::crc32c(head), &[0; 4]);
    crc32c::crc32c_append(crc, packet.get(COMMON_HEADER_LEN..).unwrap_or_default())
}

#[cfg(test)]
mod tests;
