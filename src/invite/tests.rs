//! Tests of the invite codecs: JS lz-string vectors and round trips here; one case per error in
//! `errors`, properties in `props`.

use super::*;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An offer written by `webrtc` 0.21.1 (loopback + one LAN host candidate, components 1 and 2).
const WEBRTC_OFFER: &str = include_str!("testdata/webrtc_offer.sdp");
/// Outputs of the JS `lz-string` 1.5.0 package, made with node (inputs include the offer above).
const LZ_VECTORS: &str = include_str!("testdata/lz_vectors.json");

fn essentials(ufrag: &str, pwd: &str, candidates: Vec<Candidate>) -> SdpEssentials {
    SdpEssentials {
        ufrag: ufrag.into(),
        pwd: pwd.into(),
        fingerprint: [0xAB; 32],
        setup: SetupRole::ActPass,
        max_message_size: None,
        candidates,
    }
}

fn host(ip: [u8; 4], port: u16) -> Candidate {
    Candidate {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
        kind: CandidateType::Host,
    }
}

/// A short-credential offer, as the transport can produce it (4-char ufrag, 22-char pwd).
fn short_offer(n: usize) -> String {
    let e = essentials(
        "abcd",
        "0123456789abcdefghijkl",
        (0..n)
            .map(|i| host([192, 168, 1, 10 + i as u8], 50000 + i as u16))
            .collect(),
    );
    e.to_sdp()
}

fn compact_bytes_of(code: &str) -> Vec<u8> {
    base45::decode(code.strip_prefix(COMPACT_PREFIX).unwrap()).unwrap()
}

fn with_checksum(mut body: Vec<u8>) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let sum = Sha256::digest(&body);
    body.extend_from_slice(&sum[..compact::CHECKSUM_LEN]);
    body
}

fn code_from_bytes(bytes: &[u8]) -> String {
    format!("{COMPACT_PREFIX}{}", base45::encode(bytes))
}

// ---------------------------------------------------------------- lz-string

#[test]
fn lz_matches_js_vectors() {
    let v: serde_json::Value = serde_json::from_str(LZ_VECTORS).unwrap();
    let compress = v["compress"].as_array().unwrap();
    assert!(compress.len() > 10);
    for case in compress {
        let input = case["input"].as_str().unwrap();
        let output = case["output"].as_str().unwrap();
        assert_eq!(
            lz::compress_to_encoded_uri_component(input),
            output,
            "compress {input:?}"
        );
        assert_eq!(
            lz::decompress_from_encoded_uri_component(output).as_deref(),
            Ok(input),
            "decompress {output:?}"
        );
    }
    for case in v["decompress"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let ours = lz::decompress_from_encoded_uri_component(input);
        match case["output"].as_str() {
            // JS returns null for bad data, and "" for both an empty text and a truncated one.
            None => assert!(ours.is_err(), "{input:?}: {ours:?}"),
            Some("") => assert!(matches!(ours.as_deref(), Ok("") | Err(_)), "{input:?}"),
            Some(text) => assert_eq!(ours.as_deref(), Ok(text), "{input:?}"),
        }
    }
}

#[test]
fn lz_wrapper_matches_js_apps() {
    // encode_lz must be what a JS app makes with
    // compressToEncodedURIComponent(JSON.stringify({t: "offer", s: sdp})).
    let v: serde_json::Value = serde_json::from_str(LZ_VECTORS).unwrap();
    let js = v["compress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["input"].as_str().unwrap().starts_with("{\"t\":\"offer\""))
        .unwrap();
    assert_eq!(
        encode_lz(CodeKind::Offer, WEBRTC_OFFER),
        js["output"].as_str().unwrap()
    );
    let inv = decode(js["output"].as_str().unwrap()).unwrap();
    assert_eq!(inv.kind, CodeKind::Offer);
    assert_eq!(inv.sdp, WEBRTC_OFFER);
}

#[test]
fn lz_accepts_raw_sdp_and_type_sdp_json() {
    let raw = lz::compress_to_encoded_uri_component(WEBRTC_OFFER);
    assert_eq!(decode(&raw).unwrap().kind, CodeKind::Offer);
    let answer = WEBRTC_OFFER.replace("a=setup:actpass", "a=setup:active");
    let raw = lz::compress_to_encoded_uri_component(&answer);
    assert_eq!(decode(&raw).unwrap().kind, CodeKind::Answer);
    let json = serde_json::json!({"type": "answer", "sdp": answer}).to_string();
    let inv = decode(&lz::compress_to_encoded_uri_component(&json)).unwrap();
    assert_eq!(inv.kind, CodeKind::Answer);
    assert_eq!(inv.sdp, answer);
}

#[test]
fn plain_sdp_and_json_are_accepted() {
    let inv = decode(&format!("\n  {WEBRTC_OFFER}")).unwrap();
    assert_eq!(
        (inv.kind, inv.sdp.as_str()),
        (CodeKind::Offer, WEBRTC_OFFER)
    );
    let json = serde_json::json!({"t": "offer", "s": WEBRTC_OFFER}).to_string();
    assert_eq!(decode(&json).unwrap().sdp, WEBRTC_OFFER);
    assert_eq!(code_format(&json), Ok(CodeFormat::Plain));
    assert!(matches!(decode("{\"t\":1}"), Err(InviteError::BadJson(_))));
    assert!(matches!(decode("v=1"), Err(InviteError::BadSdp(_))));
}

#[test]
fn lz_space_reads_as_plus() {
    let code = encode_lz(CodeKind::Offer, WEBRTC_OFFER);
    assert!(code.contains('+'));
    assert_eq!(decode(&code.replace('+', " ")).unwrap().sdp, WEBRTC_OFFER);
}

#[test]
fn lz_output_is_capped() {
    // 'a' * n compresses to a few hundred characters; the cap stops the decoder.
    let big = "a".repeat(100_000);
    let code = lz::compress_to_encoded_uri_component(&big);
    assert!(code.len() < 1000, "{}", code.len());
    assert_eq!(
        lz::decompress_from_encoded_uri_component(&code),
        Err(lz::LzError::TooLarge)
    );
    assert_eq!(
        lz::decompress_from_encoded_uri_component_capped(&code, 200_000).map(|s| s.len()),
        Ok(100_000)
    );
    assert_eq!(decode(&code), Err(InviteError::TooLarge));
}

/// A tiny lz-string writer of literal UTF-16 units, to craft text no `&str` can hold.
fn encode_units_for_test(units: &[u16]) -> String {
    let mut bits: Vec<u32> = Vec::new();
    let mut width = 2;
    let mut enlarge = 2u32;
    let bump = |width: &mut u32, enlarge: &mut u32| {
        *enlarge -= 1;
        if *enlarge == 0 {
            *enlarge = 1 << *width;
            *width += 1;
        }
    };
    for &u in units {
        bits.extend((0..width).map(|i| 1u32 >> i & 1));
        bits.extend((0..16).map(|i| u32::from(u) >> i & 1));
        // A literal advances the width counter twice, as in the real encoder.
        bump(&mut width, &mut enlarge);
        bump(&mut width, &mut enlarge);
    }
    bits.extend((0..width).map(|i| 2u32 >> i & 1));
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-";
    bits.chunks(6)
        .map(|c| {
            let v = (0..6).fold(0, |v, i| v << 1 | c.get(i).copied().unwrap_or(0));
            alphabet[v as usize] as char
        })
        .chain(std::iter::once('A'))
        .collect()
}

#[test]
fn lz_rejects_unpaired_surrogate() {
    let pair = encode_units_for_test(&[0xD800, 0xDC00]);
    assert_eq!(
        lz::decompress_from_encoded_uri_component(&pair).as_deref(),
        Ok("\u{10000}")
    );
    let lone = encode_units_for_test(&[0xD800, 0x41]);
    assert_eq!(
        lz::decompress_from_encoded_uri_component(&lone),
        Err(lz::LzError::BadUtf16)
    );
    assert!(matches!(decode(&lone), Err(InviteError::Corrupt(_))));
}

// ---------------------------------------------------------------- compact

#[test]
fn compact_round_trip_of_real_webrtc_offer() {
    let code = encode_compact(CodeKind::Offer, WEBRTC_OFFER).unwrap();
    assert!(code.starts_with("LS:"));
    assert!(code.chars().all(|c| base45::value(c).is_some()));
    // webrtc's default 16-char ufrag and 32-char pwd, 2 host candidates.
    assert_eq!(compact_bytes_of(&code).len(), 3 + 36 + 32 + 2 * 7 + 2);
    let inv = decode(&code).unwrap();
    assert_eq!(inv.kind, CodeKind::Offer);
    let original = SdpEssentials::from_sdp(WEBRTC_OFFER).unwrap();
    let rebuilt = SdpEssentials::from_sdp(&inv.sdp).unwrap();
    assert_eq!(original, rebuilt);
    assert_eq!(original.ufrag, "IDRwORXnAoIcgCJO");
    assert_eq!(
        original.candidates.len(),
        2,
        "component-2 lines are dropped"
    );
    for line in [
        "a=ice-ufrag:IDRwORXnAoIcgCJO",
        "a=ice-pwd:ldZOpbMkSCzVLLUxjsGbBSJeMjsphCZN",
        "a=fingerprint:sha-256 B3:B9:A1:C5:C7:CA:F8:68:BF:FA:74:0D:EE:5E:91:A0:DD:0D:2F:84:F1:29:01:D6:48:D5:DF:83:B0:01:66:AF",
        "a=setup:actpass",
        "a=mid:0",
        "a=group:BUNDLE 0",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "a=sctp-port:5000",
        "a=max-message-size:65536",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 43440 typ host",
        "a=candidate:2 1 udp 2130706175 192.0.2.2 55944 typ host",
        "a=end-of-candidates",
    ] {
        assert!(
            inv.sdp.contains(&format!("{line}\r\n")),
            "{line} in\n{}",
            inv.sdp
        );
    }
    // Re-encoding the rebuilt SDP gives the same code.
    assert_eq!(encode_compact(CodeKind::Offer, &inv.sdp).unwrap(), code);
}

#[test]
fn compact_short_credentials_fit_100_chars() {
    let code = encode_compact(CodeKind::Offer, &short_offer(1)).unwrap();
    assert_eq!(code.len(), 3 + 96, "{code}");
    let url = encode_compact_url(CodeKind::Offer, &short_offer(1)).unwrap();
    assert_eq!(url.len(), 3 + 86);
    assert_eq!(decode(&url).unwrap(), decode(&code).unwrap());
}

#[test]
fn compact_answer_round_trip_and_kinds() {
    let mut e = essentials(
        "wxyz",
        "ABCDEFGHIJKLMNOPQRSTUV+/",
        vec![Candidate {
            addr: "[fe80::1]:9".parse().unwrap(),
            kind: CandidateType::ServerReflexive,
        }],
    );
    e.setup = SetupRole::Active;
    e.max_message_size = Some(262_144);
    let code = encode_compact(CodeKind::Answer, &e.to_sdp()).unwrap();
    let inv = decode(&code).unwrap();
    assert_eq!(inv.kind, CodeKind::Answer);
    assert_eq!(SdpEssentials::from_sdp(&inv.sdp).unwrap(), e);
    assert!(inv.sdp.contains("typ srflx raddr 0.0.0.0 rport 0"));
    assert!(inv.sdp.contains("a=max-message-size:262144\r\n"));
    assert_eq!(expect_kind(&inv, CodeKind::Answer), Ok(()));
    assert_eq!(
        expect_kind(&inv, CodeKind::Offer),
        Err(InviteError::NotAnOffer)
    );
    let offer = decode(&encode_compact(CodeKind::Offer, &short_offer(1)).unwrap()).unwrap();
    assert_eq!(
        expect_kind(&offer, CodeKind::Answer),
        Err(InviteError::NotAnAnswer)
    );
    assert_eq!(expect_kind(&offer, CodeKind::Offer), Ok(()));
}

#[test]
fn compact_caps_candidates_at_8_best_first() {
    let mut sdp = short_offer(1).replace("a=end-of-candidates\r\n", "");
    for i in 0..12u32 {
        sdp.push_str(&format!(
            "a=candidate:x{i} 1 udp {} 10.0.0.{i} 4000 typ host\r\n",
            1000 + i
        ));
    }
    sdp.push_str("a=candidate:m 1 udp 9999999 abc.local 4000 typ host\r\n");
    sdp.push_str("a=candidate:t 1 tcp 9999999 10.9.9.9 4000 typ host tcptype passive\r\n");
    sdp.push_str("a=candidate:r 1 udp 9999999 10.9.9.8 4000 typ relay raddr 1.1.1.1 rport 1\r\n");
    let e = SdpEssentials::from_sdp(&sdp).unwrap();
    assert_eq!(e.candidates.len(), compact::MAX_CANDIDATES);
    // The original LAN candidate has the highest priority, then x11, x10, ...
    assert_eq!(
        e.candidates[0].addr,
        "192.168.1.10:50000".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        e.candidates[1].addr,
        "10.0.0.11:4000".parse::<SocketAddr>().unwrap()
    );
    let code = encode_compact(CodeKind::Offer, &sdp).unwrap();
    assert_eq!(
        SdpEssentials::from_sdp(&decode(&code).unwrap().sdp).unwrap(),
        e
    );
}

#[test]
fn code_lengths_for_1_2_4_candidates() {
    let lens: Vec<usize> = [1, 2, 4]
        .iter()
        .map(|&n| {
            encode_compact(CodeKind::Offer, &short_offer(n))
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(lens, vec![99, 110, 131]);
}

#[test]
fn decode_accepts_lower_case_whitespace_and_urls() {
    let code = encode_compact(CodeKind::Offer, &short_offer(2)).unwrap();
    let want = decode(&code).unwrap();
    // base45 has no lower case: a retyped lower-case code still decodes.
    assert_eq!(decode(&code.to_lowercase()).unwrap(), want);
    let wrapped = format!("  \n{}\r\n{}\n\t", &code[..40], &code[40..]);
    assert_eq!(decode(&wrapped).unwrap(), want);
    let url = pair_url(&code);
    assert!(url.starts_with("lansync://pair?c=LS%3A"));
    assert!(!url[PAIR_URL_BASE.len()..].contains([' ', '+', ':', '/', '$', '*']));
    assert_eq!(decode(&url).unwrap(), want);
    assert_eq!(code_format(&url), Ok(CodeFormat::Compact));
    let short = encode_compact_url(CodeKind::Offer, &short_offer(2)).unwrap();
    assert_eq!(pair_url(&short), format!("{PAIR_URL_BASE}{short}"));
    for form in [
        format!("https://example.invalid/pair#{short}"),
        format!("https://example.invalid/pair?x=1&code={short}"),
        format!("lansync://pair?c={short}#"),
        format!("lansync://pair#c={short}"),
    ] {
        assert_eq!(decode(&form).unwrap(), want, "{form}");
        assert_eq!(code_format(&form), Ok(CodeFormat::CompactUrl));
    }
    let lz = encode_lz(CodeKind::Offer, WEBRTC_OFFER);
    assert_eq!(
        decode(&format!("lansync://pair?c={lz}")).unwrap().sdp,
        WEBRTC_OFFER
    );
    assert_eq!(code_format(&lz), Ok(CodeFormat::Lz));
}

mod errors;
mod props;
