//! Tests of the chunk codec: each chunk type's round trip, its malformed forms and the fuzz
//! properties. One file over the usual size on purpose: the cases of one wire layout (RFC 9260 §3)
//! read best side by side.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn encode(c: &Chunk) -> Vec<u8> {
    let mut out = Vec::new();
    c.encode(&mut out);
    out
}

/// Encodes, checks the lengths the encoder promises, decodes, and returns what came back.
fn round_trip(c: &Chunk) -> Chunk {
    let wire = encode(c);
    assert_eq!(wire.len(), c.encoded_len(), "{c:?}");
    assert_eq!(wire.len() % 4, 0);
    let declared = usize::from(u16::from_be_bytes([wire[2], wire[3]]));
    assert_eq!(declared, c.unpadded_len());
    assert_eq!(wire[0], c.kind());
    let (back, used) = Chunk::decode(&Bytes::from(wire.clone())).expect("decodes");
    assert_eq!(used, wire.len());
    // Without the final padding too (RFC 9260 §3.2: the last chunk's padding may be absent).
    let (unpadded, used) = Chunk::decode(&Bytes::copy_from_slice(&wire[..declared])).unwrap();
    assert_eq!(used, declared);
    assert_eq!(unpadded, back);
    back
}

fn decode(wire: &[u8]) -> Result<Chunk, ChunkError> {
    Chunk::decode(&Bytes::copy_from_slice(wire)).map(|(c, _)| c)
}

fn data(payload: &'static [u8]) -> Data {
    Data {
        tsn: 0xdead_beef,
        stream: 1,
        ssn: 7,
        ppid: 53,
        unordered: false,
        begin: true,
        end: true,
        immediate: false,
        payload: Bytes::from_static(payload),
    }
}

fn every_variant() -> Vec<Chunk> {
    let init = Init {
        initiate_tag: 0x0102_0304,
        a_rwnd: 1 << 20,
        outbound_streams: 65535,
        inbound_streams: 1024,
        initial_tsn: 42,
        cookie: None,
        forward_tsn: false,
        reconfig: true,
    };
    vec![
        Chunk::Data(data(b"x")),
        Chunk::Data(Data {
            unordered: true,
            begin: false,
            end: false,
            immediate: true,
            ..data(b"hello world, 13")
        }),
        Chunk::Init(init.clone()),
        Chunk::Init(Init {
            forward_tsn: true,
            reconfig: false,
            ..init.clone()
        }),
        Chunk::Init(Init {
            forward_tsn: true,
            ..Init::default()
        }),
        Chunk::InitAck(Init {
            cookie: Some(Bytes::from_static(b"a cookie of 19 byte")),
            forward_tsn: true,
            ..init
        }),
        Chunk::InitAck(Init {
            cookie: Some(Bytes::new()),
            ..Init::default()
        }),
        Chunk::Sack(Sack::default()),
        Chunk::Sack(Sack {
            cum_tsn_ack: u32::MAX,
            a_rwnd: 12345,
            gaps: vec![GapBlock { start: 2, end: 3 }, GapBlock { start: 5, end: 9 }],
            duplicates: vec![7, 8, u32::MAX],
        }),
        Chunk::Heartbeat(Bytes::from_static(b"info")),
        Chunk::Heartbeat(Bytes::from_static(b"odd")),
        Chunk::HeartbeatAck(Bytes::from_static(b"five!")),
        Chunk::HeartbeatAck(Bytes::new()),
        Chunk::Abort {
            reflected: true,
            causes: Bytes::from_static(&[0, 13, 0, 7, b'b', b'y', b'e']),
        },
        Chunk::Abort {
            reflected: false,
            causes: Bytes::new(),
        },
        Chunk::Shutdown { cum_tsn_ack: 99 },
        Chunk::ShutdownAck,
        Chunk::Error(Bytes::from_static(&[0, 6, 0, 8, 1, 2, 3, 4])),
        Chunk::CookieEcho(Bytes::from_static(b"cookie")),
        Chunk::CookieAck,
        Chunk::ShutdownComplete { reflected: true },
        Chunk::ShutdownComplete { reflected: false },
        Chunk::ForwardTsn {
            new_cum_tsn: 5,
            streams: vec![(1, 2), (3, 4)],
        },
        Chunk::ForwardTsn {
            new_cum_tsn: 6,
            streams: vec![],
        },
        Chunk::Reconfig(vec![
            ReconfigParam::OutgoingReset {
                request_seq: 1,
                response_seq: 2,
                last_tsn: 3,
                streams: vec![4],
            },
            ReconfigParam::IncomingReset {
                request_seq: 5,
                streams: vec![6, 7, 8],
            },
        ]),
        Chunk::Reconfig(vec![
            ReconfigParam::Response {
                response_seq: 9,
                result: 1,
            },
            ReconfigParam::OutgoingReset {
                request_seq: 1,
                response_seq: 2,
                last_tsn: 3,
                streams: vec![],
            },
            ReconfigParam::Other {
                kind: 17,
                value: Bytes::from_static(b"abc"),
            },
        ]),
        Chunk::Reconfig(vec![]),
        Chunk::Unknown {
            kind: 64,
            flags: 0xff,
            value: Bytes::from_static(b"I-DATA?"),
        },
        Chunk::Unknown {
            kind: 0xc1,
            flags: 0,
            value: Bytes::new(),
        },
    ]
}

#[test]
fn every_variant_round_trips() {
    for c in every_variant() {
        assert_eq!(round_trip(&c), c);
    }
}

#[test]
fn data_chunk_layout_follows_rfc_9260() {
    let c = Chunk::Data(Data {
        unordered: true,
        immediate: true,
        ..data(b"abcde")
    });
    assert_eq!(
        encode(&c),
        [
            0, 0x0f, 0, 21, // type, flags U|B|E|I, length 16 + 5
            0xde, 0xad, 0xbe, 0xef, // TSN
            0, 1, 0, 7, // stream 1, SSN 7
            0, 0, 0, 53, // PPID
            b'a', b'b', b'c', b'd', b'e', 0, 0, 0, // data, padding
        ]
    );
    for (flag, want) in [
        (0x01, (false, false, true, false)),
        (0x02, (false, true, false, false)),
    ]
    .into_iter()
    .chain([
        (0x04, (true, false, false, false)),
        (0x08, (false, false, false, true)),
    ]) {
        let Chunk::Data(d) =
            decode(&[0, flag, 0, 17, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9]).unwrap()
        else {
            panic!("not DATA")
        };
        assert_eq!(
            (d.unordered, d.begin, d.end, d.immediate),
            want,
            "flag {flag:#x}"
        );
    }
}

#[test]
fn data_payload_is_a_slice_of_the_packet() {
    let wire = Bytes::from(encode(&Chunk::Data(data(b"zero copy"))));
    let (Chunk::Data(d), _) = Chunk::decode(&wire).unwrap() else {
        panic!("not DATA")
    };
    assert_eq!(&d.payload[..], b"zero copy");
    assert_eq!(d.payload.as_ptr(), wire[DATA_HEADER_LEN..].as_ptr());
}

#[test]
fn refusals() {
    assert_eq!(decode(&[]), Err(ChunkError::Truncated));
    assert_eq!(decode(&[0, 3, 0]), Err(ChunkError::Truncated));
    // Length below the header.
    assert_eq!(decode(&[11, 0, 0, 3]), Err(ChunkError::BadLength(11)));
    assert_eq!(decode(&[200, 0, 0, 0]), Err(ChunkError::BadLength(200)));
    // Length past the end.
    assert_eq!(decode(&[11, 0, 0, 8, 0, 0, 0]), Err(ChunkError::Truncated));
    // DATA: header only, and shorter than its header.
    let empty = [0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(decode(&empty), Err(ChunkError::EmptyData));
    assert_eq!(
        decode(&[0, 3, 0, 8, 0, 0, 0, 1]),
        Err(ChunkError::BadLength(0))
    );
    // INIT without its fixed fields.
    assert_eq!(
        decode(&[1, 0, 0, 8, 0, 0, 0, 1]),
        Err(ChunkError::BadLength(1))
    );
    // SHUTDOWN without its cumulative TSN.
    assert_eq!(decode(&[7, 0, 0, 4]), Err(ChunkError::BadLength(7)));
    // FORWARD TSN with half a stream pair.
    let half = [192, 0, 0, 10, 0, 0, 0, 1, 0, 1];
    assert_eq!(decode(&half), Err(ChunkError::BadLength(192)));
    // HEARTBEAT without Heartbeat Info, or with a parameter shorter than its header.
    assert_eq!(decode(&[4, 0, 0, 4]), Err(ChunkError::NoHeartbeatInfo));
    let other = [4, 0, 0, 8, 0, 2, 0, 4];
    assert_eq!(decode(&other), Err(ChunkError::NoHeartbeatInfo));
    let bad_param = [4, 0, 0, 8, 0, 1, 0, 3];
    assert_eq!(decode(&bad_param), Err(ChunkError::BadParameter(4)));
}

fn sack_wire(gaps: u16, dups: u16, extra: usize) -> Vec<u8> {
    let len = 16 + 4 * (usize::from(gaps) + usize::from(dups)) + extra;
    let mut w = vec![3, 0];
    w.extend_from_slice(&(len as u16).to_be_bytes());
    w.extend_from_slice(&[0, 0, 0, 10, 0, 1, 0, 0]);
    w.extend_from_slice(&gaps.to_be_bytes());
    w.extend_from_slice(&dups.to_be_bytes());
    for i in 0..gaps {
        w.extend_from_slice(&[0, 2 * i as u8 + 2, 0, 2 * i as u8 + 2]);
    }
    for i in 0..dups {
        w.extend_from_slice(&[0, 0, 0, i as u8]);
    }
    w.resize(len, 0);
    w
}

#[test]
fn sack_counts_must_match_its_length() {
    let Chunk::Sack(s) = decode(&sack_wire(2, 1, 0)).unwrap() else {
        panic!("not SACK")
    };
    assert_eq!(s.cum_tsn_ack, 10);
    assert_eq!(s.a_rwnd, 65536);
    assert_eq!(
        s.gaps,
        [GapBlock { start: 2, end: 2 }, GapBlock { start: 4, end: 4 }]
    );
    assert_eq!(s.duplicates, [0]);
    // Four bytes more than the counts describe.
    assert_eq!(decode(&sack_wire(2, 1, 4)), Err(ChunkError::BadLength(3)));
    // Counts describing more than the chunk holds.
    let mut w = sack_wire(2, 1, 0);
    w[15] = 2;
    assert_eq!(decode(&w), Err(ChunkError::BadLength(3)));
    w[13] = 0xff;
    assert_eq!(decode(&w), Err(ChunkError::BadLength(3)));
}

/// An INIT as a browser or the Linux stack sends it, with parameters we skip around the ones
/// we read, each padded but the last.
fn foreign_init(last_padded: bool) -> Vec<u8> {
    let mut v: Vec<u8> = vec![
        0, 0, 0, 7, // initiate tag
        0, 2, 0, 0, // a_rwnd
        0x04, 0, 0x04, 0, // streams out, in
        0, 0, 0, 100, // initial TSN
        0, 5, 0, 8, 192, 168, 1, 2, // IPv4 address
        0x80, 0, 0, 4, // ECN capable
        0x80, 0x08, 0, 7, 0xc1, 130, 0x80,
        0, // supported extensions: ASCONF, RE-CONFIG, ASCONF ACK
        0x80, 0x02, 0, 6, 1, 2, 0, 0, // random (authentication), padded
        0, 7, 0, 5, b'c', // cookie, padding follows
    ];
    let mut len = 4 + v.len();
    v.extend_from_slice(&[0, 0, 0]);
    if last_padded {
        len += 3;
    }
    let mut w = vec![1, 0];
    w.extend_from_slice(&(len as u16).to_be_bytes());
    w.extend_from_slice(&v);
    w
}

#[test]
fn init_reads_cookie_and_extensions_and_skips_other_parameters() {
    for last_padded in [false, true] {
        let Chunk::Init(init) = decode(&foreign_init(last_padded)).unwrap() else {
            panic!("not INIT")
        };
        assert_eq!(
            init,
            Init {
                initiate_tag: 7,
                a_rwnd: 0x20000,
                outbound_streams: 1024,
                inbound_streams: 1024,
                initial_tsn: 100,
                cookie: Some(Bytes::from_static(b"c")),
                forward_tsn: false,
                reconfig: true,
            }
        );
    }
    // Forward-TSN-Supported alone, and FORWARD TSN in the extension list alone.
    let mut w = vec![2, 0, 0, 24];
    w.extend_from_slice(&[0; 16]);
    w.extend_from_slice(&[0xc0, 0, 0, 4]);
    let Chunk::InitAck(i) = decode(&w).unwrap() else {
        panic!("not INIT ACK")
    };
    assert!(i.forward_tsn && !i.reconfig && i.cookie.is_none());
    w[20..24].copy_from_slice(&[0x80, 0x08, 0, 5]);
    w.extend_from_slice(&[192, 0, 0, 0]);
    w[3] = 25;
    let Chunk::InitAck(i) = decode(&w).unwrap() else {
        panic!("not INIT ACK")
    };
    assert!(i.forward_tsn && !i.reconfig);
}

#[test]
fn init_with_zero_tag_or_streams_still_decodes() {
    let mut w = vec![1, 0, 0, 20];
    w.extend_from_slice(&[0; 16]);
    assert_eq!(decode(&w), Ok(Chunk::Init(Init::default())));
}

#[test]
fn init_refuses_malformed_parameters() {
    let mut w = foreign_init(true);
    // The IPv4 parameter's length below its header.
    w[23] = 3;
    assert_eq!(decode(&w), Err(ChunkError::BadParameter(1)));
    // The cookie's length past the chunk's end.
    let mut w = foreign_init(false);
    let at = w.len() - 5;
    assert_eq!(w[at], 5);
    w[at] = 9;
    assert_eq!(decode(&w), Err(ChunkError::BadParameter(1)));
    // Two stray bytes after the last parameter.
    let mut w = vec![1, 0, 0, 22];
    w.extend_from_slice(&[0; 18]);
    assert_eq!(decode(&w), Err(ChunkError::BadParameter(1)));
}

#[test]
fn the_init_we_send_lists_re_config_only() {
    let init = Init {
        initiate_tag: 1,
        reconfig: true,
        ..Init::default()
    };
    let wire = encode(&Chunk::Init(init));
    assert_eq!(wire[..4], [1, 0, 0, 25]);
    assert_eq!(wire[20..], [0x80, 0x08, 0, 5, 130, 0, 0, 0]);
}

#[test]
fn reconfig_parameters_follow_rfc_6525() {
    let wire = encode(&Chunk::Reconfig(vec![ReconfigParam::OutgoingReset {
        request_seq: 1,
        response_seq: 2,
        last_tsn: 3,
        streams: vec![0x0102],
    }]));
    assert_eq!(
        wire,
        [
            130, 0, 0, 22, // chunk, length without the parameter's padding
            0, 13, 0, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 0, 0,
        ]
    );
    // A response with the optional next-TSN fields: read, the fields dropped.
    let mut w = vec![130, 0, 0, 24, 0, 16, 0, 20, 0, 0, 0, 9, 0, 0, 0, 1];
    w.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 6]);
    assert_eq!(
        decode(&w),
        Ok(Chunk::Reconfig(vec![ReconfigParam::Response {
            response_seq: 9,
            result: 1
        }]))
    );
    // An outgoing reset too short for its fixed fields; an odd byte in a stream list.
    let short = [130, 0, 0, 16, 0, 13, 0, 12, 0, 0, 0, 1, 0, 0, 0, 2];
    assert_eq!(decode(&short), Err(ChunkError::BadParameter(130)));
    let odd = [130, 0, 0, 13, 0, 14, 0, 9, 0, 0, 0, 1, 7, 0, 0, 0];
    assert_eq!(decode(&odd), Err(ChunkError::BadParameter(130)));
}

#[test]
fn unknown_chunks_keep_type_flags_and_value() {
    let w = [0x7f, 0xa5, 0, 6, 1, 2, 0, 0];
    assert_eq!(
        decode(&w),
        Ok(Chunk::Unknown {
            kind: 0x7f,
            flags: 0xa5,
            value: Bytes::from_static(&[1, 2]),
        })
    );
}

#[test]
fn reflected_bit_and_other_flags() {
    assert_eq!(
        decode(&[6, 0xff, 0, 4]),
        Ok(Chunk::Abort {
            reflected: true,
            causes: Bytes::new()
        })
    );
    assert_eq!(
        decode(&[14, 0xfe, 0, 4]),
        Ok(Chunk::ShutdownComplete { reflected: false })
    );
    assert_eq!(
        encode(&Chunk::ShutdownComplete { reflected: true }),
        [14, 1, 0, 4]
    );
}

const KNOWN_TYPES: [u8; 15] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 130, 192];

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn streams() -> impl Strategy<Value = Vec<u16>> {
    proptest::collection::vec(any::<u16>(), 0..8)
}

fn init() -> impl Strategy<Value = Init> {
    (
        any::<(u32, u32, u16, u16, u32)>(),
        proptest::option::of(bytes(40)),
        any::<(bool, bool)>(),
    )
        .prop_map(|((tag, rwnd, out, inb, tsn), cookie, (fwd, rc))| Init {
            initiate_tag: tag,
            a_rwnd: rwnd,
            outbound_streams: out,
            inbound_streams: inb,
            initial_tsn: tsn,
            cookie,
            forward_tsn: fwd,
            reconfig: rc,
        })
}

fn reconfig_param() -> impl Strategy<Value = ReconfigParam> {
    prop_oneof![
        (any::<(u32, u32, u32)>(), streams()).prop_map(|((a, b, c), streams)| {
            ReconfigParam::OutgoingReset {
                request_seq: a,
                response_seq: b,
                last_tsn: c,
                streams,
            }
        }),
        (any::<u32>(), streams()).prop_map(|(request_seq, streams)| ReconfigParam::IncomingReset {
            request_seq,
            streams
        }),
        any::<(u32, u32)>().prop_map(|(response_seq, result)| ReconfigParam::Response {
            response_seq,
            result
        }),
        (
            any::<u16>().prop_filter("typed", |k| ![13, 14, 16].contains(k)),
            bytes(12)
        )
            .prop_map(|(kind, value)| ReconfigParam::Other { kind, value }),
    ]
}

/// Any chunk this codec can produce.
pub(crate) fn arb_chunk() -> impl Strategy<Value = Chunk> {
    let data = (
        any::<(u32, u16, u16, u32)>(),
        any::<(bool, bool, bool, bool)>(),
        bytes(64).prop_filter("non-empty", |b| !b.is_empty()),
    )
        .prop_map(|((tsn, stream, ssn, ppid), (u, b, e, i), payload)| {
            Chunk::Data(Data {
                tsn,
                stream,
                ssn,
                ppid,
                unordered: u,
                begin: b,
                end: e,
                immediate: i,
                payload,
            })
        });
    let gap = any::<(u16, u16)>().prop_map(|(start, end)| GapBlock { start, end });
    let sack = (
        any::<(u32, u32)>(),
        proptest::collection::vec(gap, 0..6),
        proptest::collection::vec(any::<u32>(), 0..6),
    )
        .prop_map(|((cum_tsn_ack, a_rwnd), gaps, duplicates)| {
            Chunk::Sack(Sack {
                cum_tsn_ack,
                a_rwnd,
                gaps,
                duplicates,
            })
        });
    prop_oneof![
        data,
        init().prop_map(Chunk::Init),
        init().prop_map(Chunk::InitAck),
        sack,
        bytes(20).prop_map(Chunk::Heartbeat),
        bytes(20).prop_map(Chunk::HeartbeatAck),
        (any::<bool>(), bytes(20))
            .prop_map(|(reflected, causes)| Chunk::Abort { reflected, causes }),
        any::<u32>().prop_map(|cum_tsn_ack| Chunk::Shutdown { cum_tsn_ack }),
        Just(Chunk::ShutdownAck),
        bytes(20).prop_map(Chunk::Error),
        bytes(40).prop_map(Chunk::CookieEcho),
        Just(Chunk::CookieAck),
        any::<bool>().prop_map(|reflected| Chunk::ShutdownComplete { reflected }),
        (
            any::<u32>(),
            proptest::collection::vec(any::<(u16, u16)>(), 0..6)
        )
            .prop_map(|(new_cum_tsn, streams)| Chunk::ForwardTsn {
                new_cum_tsn,
                streams
            }),
        proptest::collection::vec(reconfig_param(), 0..3).prop_map(Chunk::Reconfig),
        (
            any::<u8>().prop_filter("unknown", |k| !KNOWN_TYPES.contains(k)),
            any::<u8>(),
            bytes(20)
        )
            .prop_map(|(kind, flags, value)| Chunk::Unknown { kind, flags, value }),
    ]
}

proptest! {
    #[test]
    fn any_chunk_round_trips(c in arb_chunk()) {
        prop_assert_eq!(round_trip(&c), c);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_what_decodes_re_encodes(
        wire in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let buf = Bytes::from(wire);
        if let Ok((c, used)) = Chunk::decode(&buf) {
            prop_assert!(used <= buf.len());
            prop_assert_eq!(round_trip(&c), c);
        }
    }
}

#[test]
fn an_init_that_could_not_be_encoded_again_is_refused() {
    // Forward-TSN-Supported then a cookie: encoding it adds a Supported Extensions parameter
    // (8 bytes), which must still fit the 16-bit chunk length.
    let init = |cookie: usize| {
        let len = 20 + 4 + 4 + cookie;
        let mut w = vec![1, 0];
        w.extend_from_slice(&(len as u16).to_be_bytes());
        w.extend_from_slice(&[0; 16]);
        w.extend_from_slice(&[0xc0, 0, 0, 4, 0, 7]);
        w.extend_from_slice(&((4 + cookie) as u16).to_be_bytes());
        w.resize(len, 0xaa);
        w
    };
    let fits = decode(&init(u16::MAX as usize - 36)).unwrap();
    assert_eq!(fits.unpadded_len(), usize::from(u16::MAX));
    assert_eq!(round_trip(&fits), fits);
    let too_big = init(u16::MAX as usize - 28);
    assert_eq!(too_big.len(), usize::from(u16::MAX));
    assert_eq!(decode(&too_big), Err(ChunkError::BadParameter(1)));
}

#[test]
fn error_causes_encode_and_read_back() {
    let causes = [
        ErrorCause {
            code: CAUSE_PROTOCOL_VIOLATION,
            info: b"message too large",
        },
        ErrorCause {
            code: CAUSE_USER_INITIATED_ABORT,
            info: b"bye",
        },
    ];
    let raw = encode_causes(&causes);
    // 4 + 17 padded to 24, then 4 + 3 without the last padding.
    assert_eq!(raw.len(), 24 + 7);
    assert_eq!(raw[..4], [0, 13, 0, 21]);
    assert_eq!(decode_causes(&raw).collect::<Vec<_>>(), causes);
    assert_eq!(
        describe_causes(&raw, 100),
        "protocol violation: message too large; user abort: bye"
    );
    assert_eq!(describe_causes(&raw, 22), "protocol violation: me");
    // Malformed causes stop the reading, never panic; control characters are not shown.
    assert_eq!(describe_causes(&[0, 13, 0, 2], 100), "");
    let hostile = encode_causes(&[
        ErrorCause {
            code: CAUSE_UNRECOGNIZED_CHUNK,
            info: &[9, 9],
        },
        ErrorCause {
            code: CAUSE_PROTOCOL_VIOLATION,
            info: "é\n\u{1b}[2J!".as_bytes(),
        },
        ErrorCause {
            code: 99,
            info: &[],
        },
    ]);
    assert_eq!(
        describe_causes(&hostile, 100),
        "unrecognized chunk; protocol violation: é[2J!; cause 99"
    );
    // An ABORT carrying them round-trips.
    let abort = Chunk::Abort {
        reflected: false,
        causes: raw,
    };
    assert_eq!(round_trip(&abort), abort);
}
