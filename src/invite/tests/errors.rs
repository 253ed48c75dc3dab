//! One case per invite error: every way a code can be refused.

use super::*;

#[test]
fn error_empty() {
    assert_eq!(decode(""), Err(InviteError::Empty));
    assert_eq!(decode(" \n\t "), Err(InviteError::Empty));
    assert_eq!(decode("lansync://pair?c=%20"), Err(InviteError::Empty));
}

#[test]
fn error_truncated() {
    let code = encode_compact(CodeKind::Offer, &short_offer(1)).unwrap();
    // Cut at every length: always Truncated (never a wrong but valid-looking invite).
    for cut in 3..code.len() {
        let err = decode(&code[..cut]).unwrap_err();
        assert_eq!(err, InviteError::Truncated, "cut at {cut}");
    }
    let lz = encode_lz(CodeKind::Offer, WEBRTC_OFFER);
    for cut in [1, 10, lz.len() / 2, lz.len() - 3] {
        assert_eq!(
            decode(&lz[..cut]),
            Err(InviteError::Truncated),
            "cut at {cut}"
        );
    }
    let url = encode_compact_url(CodeKind::Offer, &short_offer(1)).unwrap();
    assert_eq!(decode(&url[..url.len() - 1]), Err(InviteError::Truncated));
}

#[test]
fn error_bad_checksum() {
    let code = encode_compact(CodeKind::Offer, &short_offer(1)).unwrap();
    let mut caught = 0;
    for i in 3..code.len() {
        let mut chars: Vec<char> = code.chars().collect();
        chars[i] = if chars[i] == '0' { '1' } else { '0' };
        let changed: String = chars.into_iter().collect();
        match decode(&changed) {
            Err(InviteError::BadChecksum) => caught += 1,
            Err(_) => {}
            Ok(_) => panic!("a one-character change at {i} went unnoticed"),
        }
    }
    assert!(caught > 80, "{caught}");
}

#[test]
fn error_unsupported_version() {
    let mut bytes = compact_bytes_of(&encode_compact(CodeKind::Offer, &short_offer(1)).unwrap());
    bytes.truncate(bytes.len() - 2);
    bytes[0] = (bytes[0] & 0x0F) | 2 << 4;
    let code = code_from_bytes(&with_checksum(bytes));
    assert_eq!(decode(&code), Err(InviteError::UnsupportedVersion(2)));
    assert!(InviteError::UnsupportedVersion(2)
        .to_string()
        .contains("version 2"));
}

#[test]
fn error_bad_character() {
    let code = encode_compact(CodeKind::Offer, &short_offer(1)).unwrap();
    let bad = format!("{}#{}", &code[..10], &code[11..]);
    assert_eq!(
        decode(&bad),
        Err(InviteError::BadCharacter {
            ch: '#',
            position: 10
        })
    );
    assert_eq!(
        decode("N4Ig!abc"),
        Err(InviteError::BadCharacter {
            ch: '!',
            position: 4
        })
    );
    assert_eq!(
        decode("LS.abc+"),
        Err(InviteError::BadCharacter {
            ch: '+',
            position: 6
        })
    );
}

#[test]
fn error_bad_sdp() {
    let cases = [
        ("hello".to_string(), "v=0"),
        (
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".to_string(),
            "media section",
        ),
        (WEBRTC_OFFER.replace("a=mid:0", "a=mid:data"), "mid"),
        (
            WEBRTC_OFFER.replace("a=sctp-port:5000", "a=sctp-port:5001"),
            "SCTP port",
        ),
        (
            WEBRTC_OFFER.replace("a=ice-ufrag:IDRwORXnAoIcgCJO", "a=ice-ufrag:a"),
            "ice-ufrag",
        ),
        (WEBRTC_OFFER.replace("a=ice-pwd:", "a=ice-pwd:!"), "ice-pwd"),
        (WEBRTC_OFFER.replace("sha-256", "sha-1"), "fingerprint"),
        (
            WEBRTC_OFFER.replace("a=setup:actpass", "a=setup:holdconn"),
            "setup",
        ),
        (
            WEBRTC_OFFER.replace("a=max-message-size:65536", "a=max-message-size:x"),
            "max-message-size",
        ),
    ];
    for (sdp, needle) in cases {
        match encode_compact(CodeKind::Offer, &sdp) {
            Err(InviteError::BadSdp(msg)) => assert!(msg.contains(needle), "{msg} / {needle}"),
            other => panic!("{needle}: {other:?}"),
        }
    }
    // An answer must pick a DTLS role.
    assert!(matches!(
        encode_compact(CodeKind::Answer, WEBRTC_OFFER),
        Err(InviteError::BadSdp(_))
    ));
    // lz path: decompressed text that is not an SDP, or an SDP with no offer/answer hint.
    assert!(matches!(
        decode(&lz::compress_to_encoded_uri_component("hello")),
        Err(InviteError::BadSdp(_))
    ));
    let no_setup = "v=0\r\nm=application 9 x\r\na=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\n";
    assert!(matches!(
        decode(&lz::compress_to_encoded_uri_component(no_setup)),
        Err(InviteError::BadSdp(_))
    ));
}

#[test]
fn error_too_large() {
    assert_eq!(
        decode(&"A".repeat(MAX_CODE_BYTES + 1)),
        Err(InviteError::TooLarge)
    );
    let big = format!("{}{}", WEBRTC_OFFER, "a=x\r\n".repeat(20_000));
    assert_eq!(
        encode_compact(CodeKind::Offer, &big),
        Err(InviteError::TooLarge)
    );
    assert_eq!(
        decode(&encode_lz(CodeKind::Offer, &big)),
        Err(InviteError::TooLarge)
    );
}

#[test]
fn error_no_candidates() {
    let none: String = WEBRTC_OFFER
        .lines()
        .filter(|l| !l.starts_with("a=candidate"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        encode_compact(CodeKind::Offer, &none),
        Err(InviteError::NoCandidates)
    );
    assert_eq!(
        decode(&encode_lz(CodeKind::Offer, &none)),
        Err(InviteError::NoCandidates)
    );
    let mdns_only = none.replace(
        "a=end-of-candidates",
        "a=candidate:1 1 udp 1 abcd.local 5000 typ host\na=end-of-candidates",
    );
    assert_eq!(
        encode_compact(CodeKind::Offer, &mdns_only),
        Err(InviteError::NoCandidates)
    );
}

#[test]
fn error_corrupt() {
    // A base45 group out of range.
    assert!(matches!(decode("LS::::"), Err(InviteError::Corrupt(_))));
    // A valid checksum over inconsistent content: extra bytes after the candidates.
    let mut bytes = compact_bytes_of(&encode_compact(CodeKind::Offer, &short_offer(1)).unwrap());
    bytes.truncate(bytes.len() - 2);
    bytes.push(0);
    assert!(matches!(
        decode(&code_from_bytes(&with_checksum(bytes.clone()))),
        Err(InviteError::Corrupt(_))
    ));
    // Reserved candidate bits set.
    bytes.pop();
    let cand_at = bytes.len() - 7;
    bytes[cand_at] |= 1;
    assert!(matches!(
        decode(&code_from_bytes(&with_checksum(bytes))),
        Err(InviteError::Corrupt(_))
    ));
    // An lz back-reference to an entry that does not exist (JS returns null for it).
    assert!(matches!(
        decode("BYUwNmD2AEDukCcwBNqgjeTl Anpm"),
        Err(InviteError::Corrupt(_))
    ));
    // Broken URL escapes.
    assert!(matches!(
        decode("lansync://pair?c=LS%3"),
        Err(InviteError::Corrupt(_))
    ));
    assert!(matches!(
        decode("lansync://pair?c=%FF%FE"),
        Err(InviteError::Corrupt(_))
    ));
}

#[test]
fn error_bad_json() {
    for json in [
        "{",
        "{\"t\":\"hello\",\"s\":\"v=0\"}",
        "{\"s\":\"v=0\"}",
        "{\"t\":\"offer\"}",
        "{\"t\":\"offer\",\"s\":7}",
    ] {
        assert!(
            matches!(
                decode(&lz::compress_to_encoded_uri_component(json)),
                Err(InviteError::BadJson(_))
            ),
            "{json}"
        );
    }
}

#[test]
fn error_no_code_in_url() {
    assert_eq!(decode("lansync://pair"), Err(InviteError::NoCodeInUrl));
    assert_eq!(decode("lansync://pair?c="), Err(InviteError::NoCodeInUrl));
    assert_eq!(
        decode("https://example.invalid/?x=1#"),
        Err(InviteError::NoCodeInUrl)
    );
}

#[test]
fn error_messages_are_for_people() {
    for e in [
        InviteError::Empty,
        InviteError::Truncated,
        InviteError::BadChecksum,
        InviteError::NotAnOffer,
        InviteError::NotAnAnswer,
        InviteError::TooLarge,
        InviteError::NoCandidates,
        InviteError::NoCodeInUrl,
    ] {
        let msg = e.to_string();
        assert!(msg.len() > 20 && !msg.contains("Error"), "{msg}");
    }
}
