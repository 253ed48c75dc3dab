//! Unit tests of the pure pieces; whole transfers are in `tests/transfer.rs`.

use super::*;
use crate::time::Time;
use std::time::Duration;

#[test]
fn chunk_limits_and_edges() {
    assert_eq!(MAX_CHUNK_PAYLOAD, 16_376);
    assert_eq!(chunk_count(0), 0);
    assert_eq!(chunk_count(1), 1);
    assert_eq!(chunk_count(16_376), 1);
    assert_eq!(chunk_count(16_377), 2);
    let full = vec![7u8; MAX_CHUNK_PAYLOAD];
    let msg = encode_chunk(3, 9, &full).unwrap();
    assert_eq!(msg.len(), MAX_CHUNK_MESSAGE);
    assert_eq!(&msg[..8], &[3, 0, 0, 0, 9, 0, 0, 0]);
    let c = decode_chunk(&msg).unwrap();
    assert_eq!(
        (c.transfer, c.index, c.payload.len()),
        (3, 9, MAX_CHUNK_PAYLOAD)
    );
    assert_eq!(
        encode_chunk(0, 0, &[0; MAX_CHUNK_PAYLOAD + 1])
            .unwrap_err()
            .code(),
        "oversize-chunk"
    );
    let mut big = msg.clone();
    big.push(0);
    assert_eq!(decode_chunk(&big).unwrap_err().code(), "oversize-chunk");
    assert_eq!(
        decode_chunk(&msg[..7]).unwrap_err().code(),
        "truncated-chunk"
    );
    assert_eq!(decode_chunk(&msg[..8]).unwrap().payload, &[] as &[u8]);
    assert_eq!(c.check_range(3, 10), Ok(()));
    assert_eq!(
        c.check_range(3, 9).unwrap_err().code(),
        "chunk-out-of-range"
    );
    assert_eq!(c.check_range(4, 10).unwrap_err().code(), "unknown-transfer");
}

#[test]
fn magic_bytes_table() {
    let cases: &[(&str, &str, &[u8])] = &[
        ("a.pdf", "application/pdf", b"%PDF-1.7\n"),
        (
            "a.musicxml",
            "application/vnd.recordare.musicxml+xml",
            b"\xEF\xBB\xBF <?xml version",
        ),
        ("a.xml", "text/xml", b"<score-partwise version=\"4.0\">"),
        (
            "a.mxl",
            "application/vnd.recordare.musicxml",
            b"PK\x03\x04rest",
        ),
        ("a.png", "image/png", b"\x89PNG\r\n\x1a\n...."),
        ("a.JPG", "image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0]),
        ("a.webp", "image/webp", b"RIFF\0\0\0\0WEBPVP8 "),
        ("a.gif", "image/gif", b"GIF89a.."),
        ("a.mp3", "audio/mpeg", b"ID3\x04\0"),
        ("b.mp3", "audio/mpeg", &[0xFF, 0xFB, 0x90, 0x00]),
        ("a.ogg", "audio/ogg", b"OggS\0\x02"),
        ("a.wav", "audio/wav", b"RIFF\0\0\0\0WAVEfmt "),
        ("a.flac", "audio/flac", b"fLaC\0"),
        ("a.mp4", "video/mp4", b"\0\0\0\x18ftypmp42"),
        ("a.m4a", "audio/mp4", b"\0\0\0\x18ftypM4A "),
        ("a.webm", "video/webm", &[0x1A, 0x45, 0xDF, 0xA3, 0x01]),
    ];
    for (name, mime, head) in cases {
        assert!(check_media(name, mime, head).is_ok(), "{name} should pass");
        assert!(sniff(head).is_some(), "{name} should sniff");
    }
    let refused: &[(&str, &str, &[u8])] = &[
        ("a.png", "image/png", b"%PDF-1.7"),             // lying magic
        ("a.wav", "audio/wav", b"RIFF\0\0\0\0WEBPVP8 "), // WebP posing as WAV
        ("a.mp3", "audio/mpeg", &[0xFF, 0x00]),          // no frame sync
        ("a.svg", "image/svg+xml", b"<svg"),             // not whitelisted
        ("a.exe", "application/octet-stream", b"MZ"),
        ("noext", "application/pdf", b"%PDF-"),
        ("a.pdf", "image/png", b"%PDF-"), // MIME disagrees
        ("a.xml", "text/xml", b"hello"),
    ];
    for (name, mime, head) in refused {
        let e = check_media(name, mime, head).unwrap_err();
        assert_eq!(e.code(), "session-media-unsupported-type", "{name}");
    }
}

#[test]
fn codes_are_unique_kebab_case() {
    let mut seen = std::collections::BTreeSet::new();
    for c in TransferError::CODES {
        assert!(
            c.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
            "{c}"
        );
        assert!(seen.insert(*c), "duplicate {c}");
    }
}

#[test]
fn fingerprint_and_gate() {
    let pack = SessionPackMeta {
        hash: "ab".repeat(32),
        size: 10,
        updated_at: 5,
        uploaded_by: "host".into(),
        images_count: 0,
        media_refs_count: 0,
    };
    let media = SessionMediaMeta {
        files_count: 1,
        total_bytes: 3,
        updated_at: 9,
        uploaded_by: "host".into(),
    };
    let fp = start_gate_fingerprint("abcd-efgh", Some(&pack), Some(&media));
    assert_eq!(fp, format!("ABCDEFGH|{}|5|9", "ab".repeat(32)));
    let no_media = start_gate_fingerprint("ABCD EFGH", Some(&pack), None);
    assert_eq!(no_media, format!("ABCDEFGH|{}|5|", "ab".repeat(32)));
    assert!(start_gate_open(None, "X||||", None), "no pack: open");
    assert!(!start_gate_open(Some(&pack), &fp, None));
    assert!(!start_gate_open(Some(&pack), &fp, Some(&no_media)));
    assert!(start_gate_open(Some(&pack), &fp, Some(&fp)));
}

#[test]
fn progress_rate_and_eta() {
    let t0 = Time::from_millis(1_000);
    let mut m = progress::Meter::start(t0, 1_000_000, 2);
    assert_eq!(m.progress(t0).rate, None);
    m.bytes_done = 250_000;
    let p = m.progress(t0 + Duration::from_secs(1));
    assert_eq!(p.rate, Some(250_000));
    assert_eq!(p.eta, Some(Duration::from_secs(3)));
}

#[test]
fn upload_is_host_only() {
    assert!(authorize_upload("host", "host").is_ok());
    assert_eq!(
        authorize_upload("guest", "host").unwrap_err().code(),
        "forbidden-not-host"
    );
    assert_eq!(
        authorize_upload("", "").unwrap_err().code(),
        "forbidden-not-host"
    );
}

/// A one-file pack manifest whose file is called `name` (PDF by extension when it has one).
fn manifest_named(names: &[&str]) -> Manifest {
    Manifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        kind: ManifestKind::Pack,
        files: names
            .iter()
            .enumerate()
            .map(|(i, n)| FileEntry {
                id: format!("f{i}"),
                name: n.to_string(),
                size: 10,
                mime: "application/pdf".into(),
                sha256: "ab".repeat(32),
                media_refs: Vec::new(),
            })
            .collect(),
        updated_at: 1,
        uploaded_by: "host".into(),
    }
}

fn name_refused(names: &[&str]) -> bool {
    let mut m = manifest_named(names);
    match m.validate(&Limits::default()) {
        Err(e) => e.code() == "invalid-session-pack",
        Ok(()) => false,
    }
}

#[test]
fn plain_names_pass() {
    for n in [
        "Ave Maria.pdf",
        "ave.maria.v2.pdf",
        "Dvořák – Rusalka.pdf",
        "CONCERT.pdf",
        "com10.pdf",
        "nul-score.pdf",
    ] {
        assert!(!name_refused(&[n]), "{n} should pass");
    }
}

#[test]
fn windows_device_names_are_refused_with_any_extension_and_case() {
    for n in [
        "CON.pdf",
        "con.pdf",
        "Prn.pdf",
        "aux.tar.pdf",
        "NUL.pdf",
        "COM1.pdf",
        "com9.pdf",
        "LPT1.pdf",
        "lpt9.x.pdf",
        "COM¹.pdf",
        "con .pdf",
    ] {
        assert!(name_refused(&[n]), "{n} should be refused");
    }
}

#[test]
fn characters_invalid_on_other_systems_are_refused() {
    for n in [
        "a<b.pdf",
        "a>b.pdf",
        "a:b.pdf",
        "a\"b.pdf",
        "a/b.pdf",
        "a\\b.pdf",
        "a|b.pdf",
        "a?.pdf",
        "a*.pdf",
        "a\u{7}.pdf",
        "a\u{85}b.pdf",
        "../x.pdf",
    ] {
        assert!(name_refused(&[n]), "{n:?} should be refused");
    }
}

#[test]
fn trailing_dots_and_spaces_are_refused() {
    for n in [
        "score.pdf.",
        "score.pdf ",
        " score.pdf",
        "score.pdf\u{3000}",
    ] {
        assert!(name_refused(&[n]), "{n:?} should be refused");
    }
}

#[test]
fn bidi_and_format_characters_are_refused() {
    for c in [
        '\u{200B}',
        '\u{200E}',
        '\u{200F}',
        '\u{202A}',
        '\u{202E}',
        '\u{2060}',
        '\u{2064}',
        '\u{2066}',
        '\u{2069}',
        '\u{FEFF}',
        '\u{00AD}',
        '\u{E0041}',
    ] {
        let n = format!("score{c}fdp.pdf");
        assert!(name_refused(&[&n]), "U+{:04X} should be refused", c as u32);
    }
}

#[test]
fn names_equal_after_normalisation_or_case_folding_collide() {
    // "é" precomposed (NFC) and as e + combining acute (NFD) are one name on macOS.
    assert!(name_refused(&["caf\u{e9}.pdf", "cafe\u{301}.pdf"]));
    assert!(name_refused(&["Score.pdf", "score.PDF"]));
    assert!(name_refused(&["STRASSE.pdf", "strasse.pdf"]));
    assert!(!name_refused(&["a.pdf", "b.pdf"]));
}
