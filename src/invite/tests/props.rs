//! Properties of the invite codecs over generated inputs.

use super::*;

fn ice_string(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".to_vec(),
        ),
        min..=max,
    )
    .prop_map(|v| String::from_utf8(v).unwrap())
}

fn candidate() -> impl Strategy<Value = Candidate> {
    (
        prop_oneof![
            any::<[u8; 4]>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
            any::<[u8; 16]>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        ],
        1u16..,
        any::<bool>(),
    )
        .prop_filter("specified address", |(ip, _, _)| !ip.is_unspecified())
        .prop_map(|(ip, port, srflx)| Candidate {
            addr: SocketAddr::new(ip, port),
            kind: if srflx {
                CandidateType::ServerReflexive
            } else {
                CandidateType::Host
            },
        })
}

fn essentials_strategy() -> impl Strategy<Value = (CodeKind, SdpEssentials)> {
    (
        ice_string(4, 35),
        ice_string(22, 255),
        any::<[u8; 32]>(),
        0u8..3,
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(candidate(), 1..=8),
        any::<bool>(),
    )
        .prop_map(|(ufrag, pwd, fingerprint, role, mms, cands, answer)| {
            let setup = match (answer, role) {
                (false, 0) => SetupRole::ActPass,
                (_, 1) | (true, 0) => SetupRole::Active,
                _ => SetupRole::Passive,
            };
            // The same address twice would be merged by the SDP parser; keep them distinct.
            // The rebuilt priorities put host before srflx, so order them that way.
            let mut candidates: Vec<Candidate> = Vec::new();
            for c in cands {
                if !candidates.iter().any(|o| o.addr == c.addr) {
                    candidates.push(c);
                }
            }
            candidates.sort_by_key(|c| c.kind != CandidateType::Host);
            let kind = if answer {
                CodeKind::Answer
            } else {
                CodeKind::Offer
            };
            let e = SdpEssentials {
                ufrag,
                pwd,
                fingerprint,
                setup,
                max_message_size: mms.filter(|&n| n != compact::DEFAULT_MAX_MESSAGE_SIZE),
                candidates,
            };
            (kind, e)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_compact_round_trip((kind, e) in essentials_strategy()) {
        let sdp = e.to_sdp();
        prop_assert_eq!(&SdpEssentials::from_sdp(&sdp).unwrap(), &e);
        for code in [encode_compact(kind, &sdp).unwrap(), encode_compact_url(kind, &sdp).unwrap()] {
            let inv = decode(&code).unwrap();
            prop_assert_eq!(inv.kind, kind);
            prop_assert_eq!(&inv.sdp, &sdp);
        }
        let bytes = e.to_bytes(kind).unwrap();
        prop_assert_eq!(SdpEssentials::from_bytes(&bytes).unwrap(), (kind, e));
    }

    #[test]
    fn prop_lz_round_trip(s in any::<String>()) {
        let code = lz::compress_to_encoded_uri_component(&s);
        prop_assert_eq!(lz::decompress_from_encoded_uri_component(&code), Ok(s));
    }

    #[test]
    fn prop_lz_round_trip_repetitive(parts in proptest::collection::vec("[a-c=: \r\n]{0,6}", 0..200)) {
        let s: String = parts.concat();
        let code = lz::compress_to_encoded_uri_component(&s);
        prop_assert_eq!(lz::decompress_from_encoded_uri_component(&code), Ok(s));
    }

    #[test]
    fn prop_decode_garbage_never_panics(s in any::<String>()) {
        let _ = decode(&s);
        let _ = decode(&format!("LS:{s}"));
        let _ = decode(&format!("LS.{s}"));
        let _ = decode(&format!("lansync://pair?c={s}"));
    }

    #[test]
    fn prop_decode_alphabet_garbage(
        b45 in "[0-9A-Z $%*+\\-./:]{0,200}",
        b64 in "[0-9A-Za-z_\\-]{0,200}",
        lzs in "[0-9A-Za-z+\\-$]{0,400}",
    ) {
        let _ = decode(&format!("LS:{b45}"));
        let _ = decode(&format!("LS.{b64}"));
        let _ = decode(&lzs);
    }

    #[test]
    fn prop_changed_codes_are_caught_or_still_valid(
        (kind, e) in essentials_strategy(),
        at in any::<prop::sample::Index>(),
        to in 0u8..45,
    ) {
        // One changed character is caught, or (checksum collision, 1 in 65536) yields an SDP
        // that still parses: never a panic, never garbage.
        let code = encode_compact(kind, &e.to_sdp()).unwrap();
        let mut chars: Vec<char> = code.chars().collect();
        let i = 3 + at.index(chars.len() - 3);
        chars[i] = base45::ALPHABET[usize::from(to)] as char;
        let changed: String = chars.into_iter().collect();
        if let Ok(inv) = decode(&changed) {
            prop_assert!(SdpEssentials::from_sdp(&inv.sdp).is_ok());
        }
    }
}

/// Stand-in for the cargo-fuzz target where cargo-fuzz cannot run: the same entry point over
/// 100,000 random inputs, shaped like each format, from a fixed seed.
#[test]
fn fuzz_decode_100k_random_inputs() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let seeds = [
        encode_compact(CodeKind::Offer, WEBRTC_OFFER).unwrap(),
        encode_compact_url(CodeKind::Offer, WEBRTC_OFFER).unwrap(),
        encode_lz(CodeKind::Offer, WEBRTC_OFFER),
        pair_url(&encode_compact(CodeKind::Offer, &short_offer(2)).unwrap()),
    ];
    let start = std::time::Instant::now();
    for i in 0..100_000u32 {
        let r = next();
        let input: Vec<u8> = if i % 4 == 0 {
            // Random bytes (read as lossy UTF-8).
            (0..(r % 300)).map(|_| next() as u8).collect()
        } else {
            // A real code with a few characters changed, maybe cut short.
            let mut b = seeds[(r % 4) as usize].clone().into_bytes();
            for _ in 0..(1 + next() % 4) {
                let at = (next() as usize) % b.len();
                b[at] = b"0AZaz+-$%./: #?=LS"[(next() % 18) as usize];
            }
            let cut = (next() as usize) % (b.len() + 1);
            b.truncate(cut.max(b.len() / 2));
            b
        };
        let _ = decode(&String::from_utf8_lossy(&input));
    }
    assert!(start.elapsed().as_secs() < 120);
}
