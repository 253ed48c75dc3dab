use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::sctp::chunk::tests::arb_chunk;
use crate::sctp::chunk::{Data, Init, Sack};

/// CRC32c bit by bit (Castagnoli, reflected polynomial 0x82F63B78), independent of the crate.
fn slow_crc32c(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc32c_known_vector() {
    // RFC 3720 appendix B.4: 32 bytes of zeros.
    assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(slow_crc32c(&[0u8; 32]), 0x8A91_36AA);
}

/// An INIT (tag 0, no streams, one IPv4 address parameter) as built by Scapy's SCTP
/// regression tests, whose checksum field reads 0x402c0b5f. Scapy's checksum is in turn
/// checked against real stacks: this pins the byte order of the CRC on the wire.
const SCAPY_INIT: [u8; 40] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x2c, 0x0b, 0x5f, // common header
    1, 0, 0, 28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // INIT, all fields zero
    0, 5, 0, 8, 127, 0, 0, 1, // IPv4 address 127.0.0.1
];

#[test]
fn a_known_good_packet_decodes_and_its_checksum_is_reproduced() {
    let p = Packet::decode(&Bytes::from_static(&SCAPY_INIT)).expect("known-good packet");
    assert_eq!((p.src_port, p.dst_port, p.verification_tag), (0, 0, 0));
    assert_eq!(p.chunks, [Chunk::Init(Init::default())]);
    let mut zeroed = SCAPY_INIT;
    zeroed[8..12].fill(0);
    finish(&mut zeroed);
    assert_eq!(zeroed, SCAPY_INIT);
}

fn data(tsn: u32, payload: &'static [u8]) -> Chunk {
    Chunk::Data(Data {
        tsn,
        stream: 0,
        ssn: 0,
        ppid: 51,
        unordered: false,
        begin: true,
        end: true,
        immediate: false,
        payload: Bytes::from_static(payload),
    })
}

fn sample() -> Packet {
    Packet {
        src_port: 5000,
        dst_port: 5000,
        verification_tag: 0x1234_5678,
        chunks: vec![
            Chunk::Sack(Sack {
                cum_tsn_ack: 3,
                a_rwnd: 1000,
                gaps: vec![],
                duplicates: vec![],
            }),
            data(4, b"page 12"),
            data(5, b"!"),
        ],
    }
}

#[test]
fn encoding_follows_rfc_9260_byte_for_byte() {
    let wire = sample().encode();
    let mut want: Vec<u8> = vec![0x13, 0x88, 0x13, 0x88, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0];
    want.extend_from_slice(&[3, 0, 0, 16, 0, 0, 0, 3, 0, 0, 0x03, 0xe8, 0, 0, 0, 0]);
    want.extend_from_slice(&[0, 3, 0, 23, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 51]);
    want.extend_from_slice(b"page 12\0");
    want.extend_from_slice(&[
        0, 3, 0, 17, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 51, b'!', 0, 0, 0,
    ]);
    // RFC 9260 appendix B: CRC over the packet with a zero checksum field, least significant
    // byte first.
    let crc = slow_crc32c(&want);
    want[8..12].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(wire, want);
    assert_eq!(wire.len(), sample().encoded_len());
    assert_eq!(checksum(&wire), crc);
}

#[test]
fn start_chunks_finish_equals_encode() {
    let p = sample();
    let mut out = Vec::new();
    start(&mut out, p.src_port, p.dst_port, p.verification_tag);
    for c in &p.chunks {
        c.encode(&mut out);
    }
    finish(&mut out);
    assert_eq!(out, p.encode());
    // finish on a slice shorter than the header changes nothing and does not panic.
    let mut short = [1u8, 2, 3];
    finish(&mut short);
    assert_eq!(short, [1, 2, 3]);
}

#[test]
fn round_trip_with_the_last_padding_absent() {
    let p = sample();
    let wire = p.encode();
    assert_eq!(Packet::decode(&Bytes::from(wire.clone())), Ok(p.clone()));
    let mut cut = wire[..wire.len() - 3].to_vec();
    finish(&mut cut);
    assert_eq!(Packet::decode(&Bytes::from(cut)), Ok(p));
}

/// `wire` with its checksum made right, so a refusal is about what follows the header.
fn fixed(mut wire: Vec<u8>) -> Bytes {
    finish(&mut wire);
    Bytes::from(wire)
}

#[test]
fn refusals() {
    let decode = |b: Bytes| Packet::decode(&b);
    assert_eq!(decode(Bytes::new()), Err(PacketError::TooShort));
    assert_eq!(decode(fixed(vec![0; 11])), Err(PacketError::TooShort));
    assert_eq!(decode(fixed(vec![0; 12])), Err(PacketError::NoChunks));
    // Any flipped bit fails the checksum, in the header or in a chunk.
    let wire = sample().encode();
    for bit in [0, 8 * 9 + 3, 8 * 20, 8 * wire.len() - 1] {
        let mut bad = wire.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            decode(Bytes::from(bad)),
            Err(PacketError::BadChecksum),
            "bit {bit}"
        );
    }
    let header = || vec![0x13, 0x88, 0x13, 0x88, 0, 0, 0, 1, 0, 0, 0, 0];
    let with = |chunk: &[u8]| {
        let mut w = header();
        w.extend_from_slice(chunk);
        fixed(w)
    };
    // Chunk length below 4; past the end; empty DATA.
    assert_eq!(
        decode(with(&[11, 0, 0, 2])),
        Err(ChunkError::BadLength(11).into())
    );
    assert_eq!(
        decode(with(&[11, 0, 0, 8, 0, 0])),
        Err(ChunkError::Truncated.into())
    );
    let empty = [0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(decode(with(&empty)), Err(ChunkError::EmptyData.into()));
    // A good chunk followed by two stray bytes.
    assert_eq!(
        decode(with(&[11, 0, 0, 4, 0, 0])),
        Err(ChunkError::Truncated.into())
    );
    // A bad chunk after a good one drops the whole packet.
    assert_eq!(
        decode(with(&[11, 0, 0, 4, 8, 0, 0, 1])),
        Err(ChunkError::BadLength(8).into())
    );
}

#[test]
fn data_payloads_are_slices_of_the_datagram() {
    let wire = Bytes::from(sample().encode());
    let p = Packet::decode(&wire).unwrap();
    let Chunk::Data(d) = &p.chunks[1] else {
        panic!("not DATA")
    };
    let range = wire.as_ptr_range();
    assert!(range.contains(&d.payload.as_ptr()));
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    (
        any::<(u16, u16, u32)>(),
        proptest::collection::vec(arb_chunk(), 1..6),
    )
        .prop_map(|((src_port, dst_port, verification_tag), chunks)| Packet {
            src_port,
            dst_port,
            verification_tag,
            chunks,
        })
}

proptest! {
    #[test]
    fn any_packet_round_trips(p in arb_packet()) {
        let wire = p.encode();
        prop_assert_eq!(wire.len(), p.encoded_len());
        prop_assert_eq!(Packet::decode(&Bytes::from(wire)), Ok(p));
    }

    /// Arbitrary bytes behind a correct checksum: never a panic, and whatever decodes encodes
    /// to something that decodes to the same packet.
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut wire = vec![0x13, 0x88, 0x13, 0x88, 0, 0, 0, 1, 0, 0, 0, 0];
        wire.extend_from_slice(&body);
        if let Ok(p) = Packet::decode(&fixed(wire)) {
            prop_assert_eq!(Packet::decode(&Bytes::from(p.encode())), Ok(p));
        }
    }

    /// Well-formed packets with one byte changed (checksum fixed): never a panic.
    #[test]
    fn mutated_packets_never_panic(p in arb_packet(), at in any::<usize>(), byte in any::<u8>()) {
        let mut wire = p.encode();
        let at = COMMON_HEADER_LEN + at % (wire.len() - COMMON_HEADER_LEN);
        wire[at] = byte;
        if let Ok(p) = Packet::decode(&fixed(wire)) {
            prop_assert_eq!(Packet::decode(&Bytes::from(p.encode())), Ok(p));
        }
    }
}
