//! The binary chunk codec: an 8-byte little-endian header (transfer index u32, chunk index u32)
//! followed by at most [`MAX_CHUNK_PAYLOAD`] bytes, one data-channel message each.

use super::TransferError;

/// Bytes of the chunk header.
pub const CHUNK_HEADER_LEN: usize = 8;
/// Largest binary message, header included (cross-browser safe data-channel message size).
pub const MAX_CHUNK_MESSAGE: usize = 16 * 1024;
/// Largest chunk payload: every chunk of a file carries exactly this much except the last.
pub const MAX_CHUNK_PAYLOAD: usize = MAX_CHUNK_MESSAGE - CHUNK_HEADER_LEN;

/// One decoded binary message, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// Transfer index (from the `TRANSFER_OFFER` of the round).
    pub transfer: u32,
    /// Chunk index within the transfer (files laid end to end, each starting on a new chunk).
    pub index: u32,
    /// The file bytes.
    pub payload: &'a [u8],
}

impl Chunk<'_> {
    /// Checks the header against a known transfer of `chunks` chunks.
    pub fn check_range(&self, transfer: u32, chunks: u32) -> Result<(), TransferError> {
        if self.transfer != transfer {
            return Err(TransferError::UnknownTransfer(self.transfer));
        }
        if self.index >= chunks {
            return Err(TransferError::ChunkOutOfRange {
                transfer: self.transfer,
                index: self.index,
            });
        }
        Ok(())
    }
}

/// Number of chunks a file of `size` bytes takes (0 for an empty file).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(MAX_CHUNK_PAYLOAD as u64)
}

/// Encodes one binary message. Fails only when `payload` is over [`MAX_CHUNK_PAYLOAD`].
pub fn encode_chunk(transfer: u32, index: u32, payload: &[u8]) -> Result<Vec<u8>, TransferError> {
    if payload.len() > MAX_CHUNK_PAYLOAD {
        return Err(TransferError::OversizeChunk {
            len: payload.len() + CHUNK_HEADER_LEN,
        });
    }
    let mut out = Vec::with_capacity(CHUNK_HEADER_LEN + payload.len());
    out.extend_from_slice(&transfer.to_le_bytes());
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes one binary message. Never panics; a message of exactly 8 bytes is a chunk with an
/// empty payload (valid on the wire, refused by a receiver unless the file needs it).
pub fn decode_chunk(bytes: &[u8]) -> Result<Chunk<'_>, TransferError> {
    if bytes.len() > MAX_CHUNK_MESSAGE {
        return Err(TransferError::OversizeChunk { len: bytes.len() });
    }
    let (Some(t), Some(i)) = (bytes.get(0..4), bytes.get(4..8)) else {
        return Err(TransferError::TruncatedChunk { len: bytes.len() });
    };
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    Ok(Chunk {
        transfer: word(t),
        index: word(i),
        payload: &bytes[CHUNK_HEADER_LEN..],
    })
}
