//! File transfer through the pure sender and receiver machines, with the receiver's "disk" in
//! memory: whole transfers, cuts and resume (counting the bytes re-sent), restarts, and every
//! kind of bad input with its error code.

use lansync::protocol::{Envelope, Message, TransferAbort, TransferOffer};
use lansync::session::Time;
use lansync::transfer::{
    decode_chunk, encode_chunk, sha256_hex, FileEntry, HeldFile, Limits, Manifest, ManifestKind,
    Receiver, ReceiverConfig, ReceiverOutput, Sender, SenderConfig, SenderOutput, TransferError,
    TransferEvent, MAX_CHUNK_MESSAGE, MAX_CHUNK_PAYLOAD,
};
use proptest::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

const HOST: &str = "host-1";
const T0: u64 = 1_735_689_600_000;

/// A file of `len` bytes (at least 16) starting with the magic of `kind`.
fn make_file(kind: usize, len: usize, seed: u64) -> (String, &'static str, Vec<u8>) {
    let (ext, mime, magic): (&str, &str, &[u8]) = match kind % 6 {
        0 => ("pdf", "application/pdf", b"%PDF-1.7\n"),
        1 => ("png", "image/png", b"\x89PNG\r\n\x1a\n"),
        2 => ("mp3", "audio/mpeg", b"ID3\x04\0"),
        3 => ("webm", "video/webm", &[0x1A, 0x45, 0xDF, 0xA3]),
        4 => ("wav", "audio/wav", b"RIFF\0\0\0\0WAVE"),
        _ => (
            "musicxml",
            "application/vnd.recordare.musicxml+xml",
            b"<?xml version=\"1.0\"?>",
        ),
    };
    let mut x = seed | 1;
    let mut bytes: Vec<u8> = (0..len.max(magic.len()))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    bytes[..magic.len()].copy_from_slice(magic);
    (format!("f{seed}.{ext}"), mime, bytes)
}

fn manifest(kind: ManifestKind, files: &[(String, &str, Vec<u8>)]) -> Manifest {
    Manifest {
        schema_version: 1,
        kind,
        files: files
            .iter()
            .enumerate()
            .map(|(i, (name, mime, bytes))| FileEntry {
                id: format!("m{i}"),
                name: name.clone(),
                size: bytes.len() as u64,
                mime: mime.to_string(),
                sha256: sha256_hex(bytes),
                media_refs: vec![],
            })
            .collect(),
        updated_at: T0,
        uploaded_by: HOST.into(),
    }
}

/// Through the wire: encode in an envelope and decode (with validation) again.
fn wire(from: &str, msg: Message) -> (String, Message) {
    let env = Envelope {
        session_id: "s1".into(),
        sender_id: from.into(),
        ts: T0,
        seq: 1,
        msg,
    };
    let text = env.encode().expect("encode");
    let back = Envelope::decode(text.as_bytes()).expect("decode");
    (back.sender_id, back.msg)
}

/// The receiver's side of the world: temporary and final files in memory.
#[derive(Default)]
struct Disk {
    temp: HashMap<u32, Vec<u8>>,
    done: HashMap<String, Vec<u8>>,
    commits: usize,
    discards: usize,
}

/// Two machines joined by a link: control queues both ways and the binary channel.
struct Pair {
    files: Vec<Vec<u8>>,
    sender: Sender,
    receiver: Receiver,
    disk: Disk,
    to_rx_ctrl: VecDeque<Message>,
    to_tx_ctrl: VecDeque<Message>,
    binary: VecDeque<Vec<u8>>,
    events_rx: Vec<TransferEvent>,
    events_tx: Vec<TransferEvent>,
    max_in_flight: u64,
    now: Time,
}

impl Pair {
    fn new(kind: ManifestKind, files: &[(String, &str, Vec<u8>)], max_in_flight: u64) -> Pair {
        let cfg = SenderConfig {
            max_in_flight,
            ..SenderConfig::default()
        };
        Pair {
            files: files.iter().map(|f| f.2.clone()).collect(),
            sender: Sender::new(cfg, manifest(kind, files)).expect("valid manifest"),
            receiver: Receiver::new(ReceiverConfig::new(HOST)),
            disk: Disk::default(),
            to_rx_ctrl: VecDeque::new(),
            to_tx_ctrl: VecDeque::new(),
            binary: VecDeque::new(),
            events_rx: vec![],
            events_tx: vec![],
            max_in_flight,
            now: Time::from_millis(T0),
        }
    }

    /// Runs the sender's driver: reads answered from `files`, chunks onto the link.
    fn drive_sender(&mut self) {
        while let Some(o) = self.sender.poll_output() {
            match o {
                SenderOutput::Control(m) => self.to_rx_ctrl.push_back(wire(HOST, m).1),
                SenderOutput::Read { file, offset, len } => {
                    let f = &self.files[file as usize];
                    let bytes = f[offset as usize..offset as usize + len].to_vec();
                    self.sender
                        .handle_data(self.now, file, offset, &bytes)
                        .expect("data");
                }
                SenderOutput::Chunk(c) => {
                    assert!(c.len() <= MAX_CHUNK_MESSAGE);
                    self.binary.push_back(c);
                }
                SenderOutput::Event(e) => self.events_tx.push(e),
            }
            if self.max_in_flight >= MAX_CHUNK_MESSAGE as u64 {
                assert!(self.sender.bytes_in_flight() <= self.max_in_flight);
            }
        }
    }

    fn drive_receiver(&mut self) {
        while let Some(o) = self.receiver.poll_output() {
            apply(&mut self.disk, &mut self.events_rx, &mut self.to_tx_ctrl, o);
        }
    }

    /// One step: both drivers run, then one control message each way and up to 2 chunks move.
    /// Returns whether anything moved.
    fn step(&mut self) -> bool {
        self.now = self.now + Duration::from_millis(1);
        self.drive_sender();
        self.drive_receiver();
        let mut moved = false;
        if let Some(m) = self.to_rx_ctrl.pop_front() {
            let _ = self.receiver.handle_control(self.now, HOST, &m);
            moved = true;
        }
        if let Some(m) = self.to_tx_ctrl.pop_front() {
            let _ = self.sender.handle_control(self.now, &wire("guest-1", m).1);
            moved = true;
        }
        for _ in 0..2 {
            let Some(c) = self.binary.pop_front() else {
                break;
            };
            self.receiver
                .handle_chunk(self.now, &c)
                .expect("good chunk");
            self.sender.handle_drained(c.len() as u64);
            moved = true;
        }
        moved || self.sender_has_work()
    }

    fn sender_has_work(&self) -> bool {
        !self.to_rx_ctrl.is_empty() || !self.to_tx_ctrl.is_empty() || !self.binary.is_empty()
    }

    fn run_until(&mut self, mut stop: impl FnMut(&Pair) -> bool) {
        for _ in 0..1_000_000 {
            if stop(self) {
                return;
            }
            if !self.step() {
                // Drain the last outputs once more before concluding nothing moves.
                self.drive_sender();
                self.drive_receiver();
                if !self.sender_has_work() {
                    return;
                }
            }
        }
        panic!("did not settle");
    }

    /// Cuts the link: everything in flight is lost, both machines are told.
    fn cut(&mut self) {
        self.to_rx_ctrl.clear();
        self.to_tx_ctrl.clear();
        self.binary.clear();
        self.sender.link_down();
        self.receiver.link_down();
        self.drive_sender();
        self.drive_receiver();
    }

    fn assert_all_committed(&self) {
        assert!(self.receiver.is_complete());
        assert!(self.sender.is_done());
        let m = self.sender.manifest();
        for (f, bytes) in m.files.iter().zip(&self.files) {
            assert_eq!(self.disk.done.get(&f.name), Some(bytes), "{}", f.name);
        }
        assert!(self.disk.temp.is_empty());
    }
}

fn apply(
    disk: &mut Disk,
    events: &mut Vec<TransferEvent>,
    ctrl: &mut VecDeque<Message>,
    o: ReceiverOutput,
) {
    match o {
        ReceiverOutput::Control(m) => ctrl.push_back(m),
        ReceiverOutput::Write {
            file,
            offset,
            bytes,
        } => {
            let t = disk.temp.entry(file).or_default();
            assert_eq!(t.len() as u64, offset, "writes come in order");
            t.extend_from_slice(&bytes);
        }
        ReceiverOutput::Commit { file, name, sha256 } => {
            let t = disk.temp.remove(&file).expect("temp file to commit");
            assert_eq!(sha256_hex(&t), sha256, "only verified bytes are committed");
            disk.done.insert(name, t);
            disk.commits += 1;
        }
        ReceiverOutput::Discard { file, .. } => {
            disk.temp.remove(&file);
            disk.discards += 1;
        }
        ReceiverOutput::Event(e) => events.push(e),
    }
}

/// Bytes the receiver holds (verified files in full, partial prefixes).
fn held_bytes(held: &[HeldFile], m: &Manifest) -> u64 {
    held.iter()
        .zip(&m.files)
        .map(|(h, f)| match h {
            HeldFile::Missing => 0,
            HeldFile::Partial { bytes } => *bytes,
            HeldFile::Verified => f.size,
        })
        .sum()
}

#[test]
fn whole_transfer_of_three_files() {
    let files = vec![
        make_file(0, 100_000, 1),
        make_file(1, 5, 2),
        make_file(3, 3 * MAX_CHUNK_PAYLOAD, 3),
    ];
    let mut p = Pair::new(ManifestKind::Pack, &files, 2 << 20);
    p.sender.offer(p.now);
    p.run_until(|p| p.sender.is_done());
    p.assert_all_committed();
    let total: u64 = files.iter().map(|f| f.2.len() as u64).sum();
    assert_eq!(p.sender.payload_bytes_sent(), total);
    assert_eq!(p.disk.commits, 3);
    let prog = p.receiver.progress(p.now);
    assert_eq!(
        (prog.bytes_done, prog.bytes_total, prog.files_done),
        (total, total, 3)
    );
    assert!(prog.rate.is_some());
    p.drive_sender();
    assert!(matches!(
        p.events_rx.last(),
        Some(TransferEvent::Done { .. })
    ));
    assert!(matches!(
        p.events_tx.last(),
        Some(TransferEvent::Done { .. })
    ));
}

#[test]
fn cut_midway_resends_only_missing_bytes() {
    // 5 files of 40 000 bytes (3 chunks each: 16 376 + 16 376 + 7 248).
    let files: Vec<_> = (0..5)
        .map(|i| make_file(i, 40_000, i as u64 + 10))
        .collect();
    let total = 200_000u64;
    let mut p = Pair::new(ManifestKind::Media, &files, 64 * 1024);
    p.sender.offer(p.now);
    p.run_until(|p| p.receiver.payload_bytes_written() >= 50_000);
    p.cut();
    let held = p.receiver.held();
    let have = held_bytes(&held, p.sender.manifest());
    let sent_before = p.sender.payload_bytes_sent();
    assert!(have > 0 && have < total);
    assert!(held.contains(&HeldFile::Verified));
    assert!(
        sent_before >= have,
        "in-flight chunks were lost with the link"
    );
    // Reconnect: a new round with the same manifest.
    p.sender.offer(p.now);
    p.run_until(|p| p.sender.is_done());
    p.assert_all_committed();
    let resent = p.sender.payload_bytes_sent() - sent_before;
    assert_eq!(
        resent,
        total - have,
        "exactly the missing bytes are sent again"
    );
    assert_eq!(
        p.receiver.payload_bytes_written(),
        total,
        "nothing written twice"
    );
    // This schedule, exactly: file 0 verified, one chunk of file 1 held; 40 000 bytes were lost
    // in flight with the link; 143 624 = 200 000 − 56 376 are sent again, not a byte more.
    assert_eq!(
        held,
        vec![
            HeldFile::Verified,
            HeldFile::Partial {
                bytes: MAX_CHUNK_PAYLOAD as u64
            },
            HeldFile::Missing,
            HeldFile::Missing,
            HeldFile::Missing
        ]
    );
    assert_eq!((have, sent_before, resent), (56_376, 96_376, 143_624));
}

#[test]
fn resume_after_receiver_restart_rebuilds_hash_state() {
    let files: Vec<_> = (0..3)
        .map(|i| make_file(i, 50_000, i as u64 + 40))
        .collect();
    let mut p = Pair::new(ManifestKind::Pack, &files, 64 * 1024);
    p.sender.offer(p.now);
    p.run_until(|p| p.receiver.payload_bytes_written() >= 70_000);
    p.cut();
    let held = p.receiver.held();
    let manifest = p.receiver.manifest().unwrap().clone();
    // Restart: a fresh receiver re-reads what is on disk.
    let mut r = Receiver::new(ReceiverConfig::new(HOST));
    r.restore(manifest.clone()).unwrap();
    for (i, (h, f)) in held.iter().zip(&manifest.files).enumerate() {
        let bytes = match h {
            HeldFile::Verified => p.disk.done.remove(&f.name).unwrap(),
            HeldFile::Partial { .. } => p.disk.temp.remove(&(i as u32)).unwrap(),
            HeldFile::Missing => continue,
        };
        p.disk.temp.insert(i as u32, bytes.clone());
        r.feed_existing(i as u32, &bytes).unwrap();
    }
    assert_eq!(r.held(), held);
    p.receiver = r;
    p.drive_receiver(); // re-commits the verified files from their re-read bytes
    let sent_before = p.sender.payload_bytes_sent();
    p.sender.offer(p.now);
    p.run_until(|p| p.sender.is_done());
    p.assert_all_committed();
    let have = held_bytes(&held, &manifest);
    assert_eq!(p.sender.payload_bytes_sent() - sent_before, 150_000 - have);
}

#[test]
fn everything_held_means_done_without_chunks() {
    let files = vec![make_file(0, 20_000, 7)];
    let mut p = Pair::new(ManifestKind::Pack, &files, 2 << 20);
    p.sender.offer(p.now);
    p.run_until(|p| p.sender.is_done());
    let sent = p.sender.payload_bytes_sent();
    p.sender.offer(p.now);
    p.run_until(|p| p.sender.is_done());
    assert_eq!(
        p.sender.payload_bytes_sent(),
        sent,
        "verified files are never sent again"
    );
}

#[test]
fn backpressure_waits_and_never_drops() {
    let files = vec![make_file(4, 300_000, 5)];
    let mut p = Pair::new(ManifestKind::Media, &files, 40_000);
    p.sender.offer(p.now);
    p.drive_sender();
    p.receiver
        .handle_control(p.now, HOST, &p.to_rx_ctrl.pop_front().unwrap())
        .unwrap();
    p.drive_receiver();
    let req = p.to_tx_ctrl.pop_front().unwrap();
    p.sender.handle_control(p.now, &req).unwrap();
    p.drive_sender();
    // 40 000 bytes of budget hold two full chunk messages (2 × 16 384), no more.
    assert_eq!(p.binary.len(), 2);
    assert!(p.sender.bytes_in_flight() <= 40_000);
    p.drive_sender();
    assert_eq!(
        p.binary.len(),
        2,
        "no progress until the driver reports drained bytes"
    );
    p.run_until(|p| p.sender.is_done());
    p.assert_all_committed();
}

// ---------- bad input, each with its code ----------

/// Offers `m` from `from` to a fresh receiver; returns the error and the ABORT code sent.
fn offer_to_fresh(from: &str, m: Manifest, limits: Limits) -> (TransferError, String) {
    let mut r = Receiver::new(ReceiverConfig {
        host_id: HOST.into(),
        limits,
    });
    let (from, msg) = wire(
        from,
        Message::TransferOffer(TransferOffer {
            transfer: 1,
            manifest: m,
        }),
    );
    let err = r
        .handle_control(Time::from_millis(T0), &from, &msg)
        .unwrap_err();
    let mut abort = None;
    while let Some(o) = r.poll_output() {
        if let ReceiverOutput::Control(Message::TransferAbort(TransferAbort { code, .. })) = o {
            abort = Some(code);
        }
    }
    (err, abort.expect("an ABORT is sent"))
}

fn one(kind: ManifestKind, name: &str, mime: &str, bytes: &[u8]) -> Manifest {
    manifest(
        kind,
        &[(name.to_string(), mime_static(mime), bytes.to_vec())],
    )
}

fn mime_static(m: &str) -> &'static str {
    Box::leak(m.to_string().into_boxed_str())
}

#[test]
fn bad_manifests_are_refused_with_their_code() {
    let ok = make_file(0, 1000, 1).2;
    let cases: Vec<(Manifest, &str)> = vec![
        (
            one(
                ManifestKind::Media,
                "x.exe",
                "application/octet-stream",
                &ok,
            ),
            "session-media-unsupported-type",
        ),
        (
            one(ManifestKind::Media, "x.svg", "image/svg+xml", &ok),
            "session-media-unsupported-type",
        ),
        (
            one(ManifestKind::Media, "x.pdf", "image/png", &ok),
            "session-media-unsupported-type",
        ),
        (
            one(ManifestKind::Pack, "../x.pdf", "application/pdf", &ok),
            "invalid-session-pack",
        ),
        (
            one(ManifestKind::Pack, "a/x.pdf", "application/pdf", &ok),
            "invalid-session-pack",
        ),
        (
            one(ManifestKind::Pack, "a\\x.pdf", "application/pdf", &ok),
            "invalid-session-pack",
        ),
        (
            one(
                ManifestKind::Media,
                &format!("{}.pdf", "a".repeat(252)),
                "application/pdf",
                &ok,
            ),
            "invalid-session-media",
        ),
        (
            one(ManifestKind::Media, "x.pdf", "application/pdf", b""),
            "invalid-session-media",
        ),
    ];
    for (m, code) in cases {
        let (err, sent) = offer_to_fresh(HOST, m.clone(), Limits::default());
        assert_eq!(err.code(), code, "{:?}", m.files[0].name);
        assert_eq!(sent, code);
    }
    let mut v2 = one(ManifestKind::Pack, "x.pdf", "application/pdf", &ok);
    v2.schema_version = 2;
    assert_eq!(
        offer_to_fresh(HOST, v2, Limits::default()).0.code(),
        "invalid-session-pack"
    );
    let mut dup = manifest(
        ManifestKind::Pack,
        &[make_file(0, 10, 1), make_file(0, 10, 1)],
    );
    dup.files[1].id = "other".into();
    assert_eq!(
        offer_to_fresh(HOST, dup, Limits::default()).0.code(),
        "invalid-session-pack"
    );
}

#[test]
fn oversize_is_refused() {
    let small = Limits {
        max_file_bytes: 1000,
        max_total_bytes: 1500,
        max_files: 2,
    };
    let big = one(
        ManifestKind::Media,
        "x.pdf",
        "application/pdf",
        &make_file(0, 1001, 1).2,
    );
    assert_eq!(
        offer_to_fresh(HOST, big, small).1,
        "session-media-too-large"
    );
    let two = manifest(
        ManifestKind::Pack,
        &[make_file(0, 900, 1), make_file(1, 900, 2)],
    );
    assert_eq!(offer_to_fresh(HOST, two, small).1, "session-pack-too-large");
    let three = manifest(
        ManifestKind::Pack,
        &[
            make_file(0, 10, 1),
            make_file(1, 10, 2),
            make_file(2, 10, 3),
        ],
    );
    assert_eq!(offer_to_fresh(HOST, three, small).1, "invalid-session-pack");
    // The host checks its own manifest too.
    let cfg = SenderConfig {
        limits: small,
        ..SenderConfig::default()
    };
    let big = one(
        ManifestKind::Media,
        "x.pdf",
        "application/pdf",
        &make_file(0, 1001, 1).2,
    );
    assert_eq!(
        Sender::new(cfg, big).unwrap_err().code(),
        "session-media-too-large"
    );
}

#[test]
fn non_host_upload_is_forbidden() {
    let m = one(
        ManifestKind::Pack,
        "x.pdf",
        "application/pdf",
        &make_file(0, 100, 1).2,
    );
    assert_eq!(
        offer_to_fresh("guest-2", m.clone(), Limits::default()).1,
        "forbidden-not-host"
    );
    // The host relaying a manifest that someone else claims to have uploaded: refused as well.
    let mut other = m;
    other.uploaded_by = "guest-2".into();
    assert_eq!(
        offer_to_fresh(HOST, other, Limits::default()).1,
        "forbidden-not-host"
    );
}

/// A receiver that accepted an offer for `files` (transfer 1), and the files' bytes.
fn accepted(files: &[(String, &str, Vec<u8>)], m: Manifest) -> Receiver {
    let _ = files;
    let mut r = Receiver::new(ReceiverConfig::new(HOST));
    r.handle_control(
        Time::from_millis(T0),
        HOST,
        &Message::TransferOffer(TransferOffer {
            transfer: 1,
            manifest: m,
        }),
    )
    .unwrap();
    while r.poll_output().is_some() {}
    r
}

fn outputs(r: &mut Receiver) -> Vec<ReceiverOutput> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

fn abort_code(outs: &[ReceiverOutput]) -> Option<String> {
    outs.iter().find_map(|o| match o {
        ReceiverOutput::Control(Message::TransferAbort(a)) => Some(a.code.clone()),
        _ => None,
    })
}

#[test]
fn lying_magic_bytes_are_discarded() {
    // A PDF named and typed as PNG.
    let pdf = make_file(0, 100, 1).2;
    let files = vec![("x.png".to_string(), "image/png", pdf.clone())];
    let mut r = accepted(&files, manifest(ManifestKind::Media, &files));
    let err = r
        .handle_chunk(Time(0), &encode_chunk(1, 0, &pdf).unwrap())
        .unwrap_err();
    assert_eq!(err.code(), "session-media-unsupported-type");
    let outs = outputs(&mut r);
    assert_eq!(
        abort_code(&outs).as_deref(),
        Some("session-media-unsupported-type")
    );
    assert!(outs
        .iter()
        .any(|o| matches!(o, ReceiverOutput::Discard { file: 0, .. })));
    assert!(!outs.iter().any(|o| matches!(
        o,
        ReceiverOutput::Write { .. } | ReceiverOutput::Commit { .. }
    )));
    assert_eq!(r.held(), vec![HeldFile::Missing]);
}

#[test]
fn hash_mismatch_is_discarded_never_committed() {
    let files = vec![make_file(2, 20_000, 3)];
    let mut m = manifest(ManifestKind::Media, &files);
    m.files[0].sha256 = sha256_hex(b"something else");
    let mut r = accepted(&files, m);
    let data = &files[0].2;
    r.handle_chunk(
        Time(0),
        &encode_chunk(1, 0, &data[..MAX_CHUNK_PAYLOAD]).unwrap(),
    )
    .unwrap();
    let err = r
        .handle_chunk(
            Time(0),
            &encode_chunk(1, 1, &data[MAX_CHUNK_PAYLOAD..]).unwrap(),
        )
        .unwrap_err();
    assert_eq!(err, TransferError::HashMismatch { file: 0 });
    let outs = outputs(&mut r);
    assert_eq!(abort_code(&outs).as_deref(), Some("hash-mismatch"));
    assert!(outs
        .iter()
        .any(|o| matches!(o, ReceiverOutput::Discard { file: 0, .. })));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, ReceiverOutput::Commit { .. })));
    assert!(!r.is_complete());
    assert_eq!(
        r.held(),
        vec![HeldFile::Missing],
        "resume starts the file over"
    );
}

#[test]
fn chunk_errors_have_their_codes() {
    let files = vec![make_file(0, 40_000, 9)];
    let m = manifest(ManifestKind::Pack, &files);
    let data = &files[0].2;
    let t = Time(0);
    // Truncated binary message.
    let mut r = accepted(&files, m.clone());
    assert_eq!(
        r.handle_chunk(t, &[1, 0, 0]).unwrap_err().code(),
        "truncated-chunk"
    );
    // Unknown (stale) transfer: dropped, round goes on.
    assert_eq!(
        r.handle_chunk(t, &encode_chunk(9, 0, &data[..10]).unwrap())
            .unwrap_err()
            .code(),
        "unknown-transfer"
    );
    // Header out of range: the file has chunks 0..=2.
    assert_eq!(
        r.handle_chunk(t, &encode_chunk(1, 3, &data[..10]).unwrap())
            .unwrap_err()
            .code(),
        "chunk-out-of-range"
    );
    assert_eq!(
        abort_code(&outputs(&mut r)).as_deref(),
        Some("chunk-out-of-range")
    );
    // Truncated chunk (a non-final chunk shorter than 16 376 bytes).
    let mut r = accepted(&files, m.clone());
    assert_eq!(
        r.handle_chunk(t, &encode_chunk(1, 0, &data[..1000]).unwrap())
            .unwrap_err()
            .code(),
        "truncated-chunk"
    );
    // Missing chunk (a gap), then a duplicate (ignored, round goes on).
    let mut r = accepted(&files, m.clone());
    assert_eq!(
        r.handle_chunk(
            t,
            &encode_chunk(1, 1, &data[MAX_CHUNK_PAYLOAD..2 * MAX_CHUNK_PAYLOAD]).unwrap()
        )
        .unwrap_err()
        .code(),
        "missing-chunk"
    );
    let mut r = accepted(&files, m.clone());
    let c0 = encode_chunk(1, 0, &data[..MAX_CHUNK_PAYLOAD]).unwrap();
    r.handle_chunk(t, &c0).unwrap();
    assert_eq!(
        r.handle_chunk(t, &c0).unwrap_err().code(),
        "duplicate-chunk"
    );
    assert_eq!(abort_code(&outputs(&mut r)), None);
    // Oversize final chunk.
    let c1 = encode_chunk(1, 1, &data[MAX_CHUNK_PAYLOAD..2 * MAX_CHUNK_PAYLOAD]).unwrap();
    r.handle_chunk(t, &c1).unwrap();
    let mut last = data[2 * MAX_CHUNK_PAYLOAD..].to_vec();
    last.push(0);
    assert_eq!(
        r.handle_chunk(t, &encode_chunk(1, 2, &last).unwrap())
            .unwrap_err()
            .code(),
        "oversize-chunk"
    );
    // Oversize binary message.
    assert_eq!(
        decode_chunk(&vec![0; MAX_CHUNK_MESSAGE + 1])
            .unwrap_err()
            .code(),
        "oversize-chunk"
    );
}

#[test]
fn sender_refuses_bad_requests_and_stale_rounds() {
    let files = vec![make_file(0, 40_000, 9)];
    let mut s = Sender::new(
        SenderConfig::default(),
        manifest(ManifestKind::Pack, &files),
    )
    .unwrap();
    let t = Time(0);
    s.offer(t);
    let hash = s.hash().to_string();
    let req = |transfer, file, from| {
        wire(
            "guest",
            Message::TransferRequest(lansync::protocol::TransferRequest {
                transfer,
                hash: hash.clone(),
                want: vec![lansync::protocol::FileWant { file, from }],
            }),
        )
        .1
    };
    assert_eq!(
        s.handle_control(t, &req(7, 0, 0)).unwrap_err().code(),
        "unknown-transfer"
    );
    assert_eq!(
        s.handle_control(t, &req(1, 0, 5)).unwrap_err().code(),
        "unexpected-message"
    );
    s.offer(t);
    assert_eq!(
        s.handle_control(t, &req(2, 4, 0)).unwrap_err().code(),
        "session-media-file-not-found"
    );
    s.offer(t);
    s.handle_control(t, &req(3, 0, MAX_CHUNK_PAYLOAD as u64))
        .unwrap();
    while let Some(o) = s.poll_output() {
        if let SenderOutput::Read { file, offset, len } = o {
            assert_eq!((file, offset), (0, MAX_CHUNK_PAYLOAD as u64));
            // A short read (file changed on disk) aborts the round.
            let err = s
                .handle_data(t, file, offset, &files[0].2[..len - 1])
                .unwrap_err();
            assert_eq!(err.code(), "unexpected-data");
            break;
        }
    }
}

#[test]
fn control_messages_validate_on_the_wire() {
    let bad = [
        r#"{"transfer":1,"hash":"xyz","want":[]}"#,
        r#"{"transfer":1,"hash":"HASH","want":[{"file":2},{"file":1}]}"#,
    ];
    for p in bad {
        let p = p.replace("HASH", &"a".repeat(64));
        let text = format!(
            r#"{{"v":1,"session_id":"s","sender_id":"a","type":"TRANSFER_REQUEST","ts":1,"seq":1,"payload":{p}}}"#
        );
        assert!(Envelope::decode(text.as_bytes()).is_err(), "{p}");
    }
    let abort = r#"{"v":1,"session_id":"s","sender_id":"a","type":"TRANSFER_ABORT","ts":1,"seq":1,"payload":{"transfer":1,"code":"Bad Code"}}"#;
    assert!(Envelope::decode(abort.as_bytes()).is_err());
    let done = r#"{"v":1,"session_id":"s","sender_id":"a","type":"TRANSFER_DONE","ts":1,"seq":1,"payload":{"transfer":1,"hash":"00"}}"#;
    assert!(Envelope::decode(done.as_bytes()).is_err());
    // Every transfer message round-trips.
    let files = vec![make_file(0, 10, 1)];
    let m = manifest(ManifestKind::Pack, &files);
    let msgs = vec![
        Message::TransferOffer(TransferOffer {
            transfer: 4,
            manifest: m.clone(),
        }),
        Message::TransferRequest(lansync::protocol::TransferRequest {
            transfer: 4,
            hash: m.hash(),
            want: vec![lansync::protocol::FileWant { file: 0, from: 0 }],
        }),
        Message::TransferDone(lansync::protocol::TransferDone {
            transfer: 4,
            hash: m.hash(),
        }),
        Message::TransferAbort(TransferAbort {
            transfer: 4,
            code: "hash-mismatch".into(),
            file: Some(0),
            message: "x".into(),
        }),
    ];
    for msg in msgs {
        assert_eq!(wire("a", msg.clone()).1, msg);
    }
}

#[test]
fn pack_meta_and_hash_are_stable() {
    let files = vec![make_file(1, 100, 1), make_file(0, 200, 2)];
    let mut m = manifest(ManifestKind::Pack, &files);
    m.files[1].media_refs = vec!["m0".into(), "audio-1".into()];
    let json = m.canonical_json();
    let back = Manifest::decode(json.as_bytes(), ManifestKind::Pack, &Limits::default()).unwrap();
    assert_eq!(back.hash(), m.hash());
    assert_eq!(m.hash(), sha256_hex(json.as_bytes()));
    let meta = m.pack_meta();
    assert_eq!(
        (meta.size, meta.images_count, meta.media_refs_count),
        (300, 1, 2)
    );
    let v = serde_json::to_value(&meta).unwrap();
    for key in [
        "hash",
        "size",
        "updatedAt",
        "uploadedBy",
        "imagesCount",
        "mediaRefsCount",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    let v = serde_json::to_value(m.media_meta()).unwrap();
    for key in ["filesCount", "totalBytes", "updatedAt", "uploadedBy"] {
        assert!(v.get(key).is_some(), "{key}");
    }
    assert!(json.starts_with(r#"{"schemaVersion":1,"kind":"pack","files":[{"id":"m0","#));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunk_round_trip(t in any::<u32>(), i in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..=MAX_CHUNK_PAYLOAD)) {
        let msg = encode_chunk(t, i, &payload).unwrap();
        let c = decode_chunk(&msg).unwrap();
        prop_assert_eq!((c.transfer, c.index, c.payload), (t, i, &payload[..]));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20_000)) {
        let _ = decode_chunk(&bytes);
        let _ = Manifest::decode(&bytes, ManifestKind::Pack, &Limits::default());
        let files = vec![make_file(0, 40_000, 9)];
        let mut r = accepted(&files, manifest(ManifestKind::Pack, &files));
        let _ = r.handle_chunk(Time(0), &bytes);
        let mut tagged = vec![1, 0, 0, 0, 0, 0, 0, 0];
        tagged.extend_from_slice(&bytes);
        tagged.truncate(MAX_CHUNK_MESSAGE);
        let _ = r.handle_chunk(Time(0), &tagged);
        let _ = lansync::transfer::sniff(&bytes);
    }

    #[test]
    fn random_transfers_with_a_cut_resend_only_missing(
        sizes in proptest::collection::vec((0usize..6, 1usize..60_000), 1..5),
        cut_frac in 0.0f64..1.0,
        budget in prop_oneof![Just(20_000u64), Just(64 * 1024), Just(2u64 << 20)],
        seed in any::<u64>(),
    ) {
        let files: Vec<_> = sizes.iter().enumerate()
            .map(|(i, &(k, n))| make_file(k, n, seed.wrapping_add(i as u64 * 7919)))
            .collect();
        let total: u64 = files.iter().map(|f| f.2.len() as u64).sum();
        let mut p = Pair::new(ManifestKind::Media, &files, budget);
        p.sender.offer(p.now);
        let cut_at = (total as f64 * cut_frac) as u64;
        p.run_until(|p| p.receiver.payload_bytes_written() >= cut_at || p.sender.is_done());
        p.cut();
        let have = held_bytes(&p.receiver.held(), p.sender.manifest());
        let before = p.sender.payload_bytes_sent();
        p.sender.offer(p.now);
        p.run_until(|p| p.sender.is_done());
        p.assert_all_committed();
        prop_assert_eq!(p.sender.payload_bytes_sent() - before, total - have);
        prop_assert_eq!(p.receiver.payload_bytes_written(), total);
    }
}

#[test]
fn updated_manifest_keeps_unchanged_files() {
    let files: Vec<_> = (0..3)
        .map(|i| make_file(i, 40_000, i as u64 + 70))
        .collect();
    let mut p = Pair::new(ManifestKind::Pack, &files, 64 * 1024);
    p.sender.offer(p.now);
    p.run_until(|p| p.receiver.payload_bytes_written() >= 50_000);
    p.cut();
    assert_eq!(p.receiver.held()[0], HeldFile::Verified);
    assert!(matches!(p.receiver.held()[1], HeldFile::Partial { .. }));
    // The host replaces file 1: file 0 is kept, the partial old file 1 is discarded.
    let mut new_files = files.clone();
    new_files[1] = make_file(1, 30_000, 999);
    let old_sha = sha256_hex(&files[1].2);
    p.files = new_files.iter().map(|f| f.2.clone()).collect();
    let mut m = manifest(ManifestKind::Pack, &new_files);
    m.updated_at += 1;
    let cfg = SenderConfig {
        max_in_flight: p.max_in_flight,
        ..SenderConfig::default()
    };
    p.sender = Sender::new(cfg, m).unwrap();
    p.sender.offer(p.now);
    p.drive_sender();
    let offer = p.to_rx_ctrl.pop_front().unwrap();
    p.receiver.handle_control(p.now, HOST, &offer).unwrap();
    let outs = outputs(&mut p.receiver);
    assert!(outs
        .iter()
        .any(|o| matches!(o, ReceiverOutput::Discard { file: 1, sha256 } if *sha256 == old_sha)));
    p.disk.temp.remove(&1);
    for o in outs {
        apply(&mut p.disk, &mut p.events_rx, &mut p.to_tx_ctrl, o);
    }
    let before = p.sender.payload_bytes_sent();
    p.run_until(|p| p.sender.is_done());
    p.assert_all_committed();
    assert_eq!(p.sender.payload_bytes_sent() - before, 30_000 + 40_000);
}
