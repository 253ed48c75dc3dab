//! A participant's store on a real disk, fed by the pure receiver as a hostile or ordinary
//! host would drive it: planted links, a user's own files, packs replaced in turn, quotas.

use super::*;
use crate::protocol::TransferOffer;
use crate::transfer::{encode_chunk, sha256_hex, FileEntry, MANIFEST_SCHEMA_VERSION};

const HOST: &str = "master";

/// A fresh directory under the system's temporary directory, private to this test.
fn test_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("lansync-store-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pdf(tag: &str, len: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend(tag.bytes().cycle().take(len));
    bytes
}

fn manifest(files: &[(&str, &[u8])]) -> Manifest {
    Manifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        kind: ManifestKind::Pack,
        files: files
            .iter()
            .enumerate()
            .map(|(i, (name, bytes))| FileEntry {
                id: format!("f{i}"),
                name: name.to_string(),
                size: bytes.len() as u64,
                mime: "application/pdf".into(),
                sha256: sha256_hex(bytes),
                media_refs: Vec::new(),
            })
            .collect(),
        updated_at: 1,
        uploaded_by: HOST.into(),
    }
}

fn room() -> Room {
    Room {
        held_elsewhere: 0,
        quota: 4 << 30,
    }
}

/// What the store reported: messages it would send, paths committed, failure codes.
#[derive(Default, Debug)]
struct Seen {
    sent: Vec<Message>,
    committed: Vec<PathBuf>,
    failed: Vec<String>,
}

/// Drains the receiver through the store as the actor does.
fn drain(store: &mut Store, seen: &mut Seen) {
    while let Some(out) = store.receiver.poll_output() {
        apply(store, out, seen);
    }
}

/// Applies one receiver output to the store (and disk) and records what came of it.
fn apply(store: &mut Store, out: ReceiverOutput, seen: &mut Seen) {
    let done = store.apply(out);
    for (file, e) in store.take_failures() {
        store.receiver.storage_failed(file, e);
    }
    match done {
        Done::Send(m) => seen.sent.push(*m),
        Done::Committed(p) => seen.committed.push(p),
        Done::Event(crate::transfer::TransferEvent::Failed { code, .. }) => seen.failed.push(code),
        _ => {}
    }
}

/// Offers `files` as round `transfer`; returns what happened to the offer.
fn offer(store: &mut Store, transfer: u32, files: &[(&str, &[u8])], seen: &mut Seen) -> bool {
    let msg = Message::TransferOffer(TransferOffer {
        transfer,
        manifest: manifest(files),
    });
    let ok = store.offer(Time(1), HOST, &msg, room()).is_ok();
    drain(store, seen);
    ok
}

/// Sends every chunk of `files` in round `transfer`.
fn chunks(store: &mut Store, transfer: u32, files: &[(&str, &[u8])], seen: &mut Seen) {
    let mut index = 0;
    for (_, bytes) in files {
        for payload in bytes.chunks(MAX_CHUNK_PAYLOAD) {
            let msg = encode_chunk(transfer, index, payload).unwrap();
            let _ = store.receiver.handle_chunk(Time(1), &msg);
            drain(store, seen);
            index += 1;
        }
    }
}

/// A whole round: offer, then every chunk.
fn deliver(store: &mut Store, transfer: u32, files: &[(&str, &[u8])]) -> Seen {
    let mut seen = Seen::default();
    assert!(
        offer(store, transfer, files, &mut seen),
        "offer refused: {seen:?}"
    );
    chunks(store, transfer, files, &mut seen);
    seen
}

fn open_store(dir: &Path) -> Store {
    Store::open(
        ManifestKind::Pack,
        dir.to_path_buf(),
        HOST,
        Limits::default(),
    )
}

/// Every regular file directly in `dir` (not the working directory), by name.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_planted_symlink_at_the_part_files_path_is_refused_not_followed() {
    let dir = test_dir("symlink");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let score = pdf("a", 40_000);
    let files: &[(&str, &[u8])] = &[("score.pdf", &score)];
    let work = dir.join("dl/.lansync");
    std::fs::create_dir_all(&work).unwrap();
    let part = work.join(format!("{}.part", sha256_hex(&score)));
    std::os::unix::fs::symlink(&victim, &part).unwrap();

    let mut store = open_store(&dir.join("dl"));
    let mut seen = Seen::default();
    let accepted = offer(&mut store, 1, files, &mut seen);
    chunks(&mut store, 1, files, &mut seen);
    assert!(!accepted, "the offer must be refused");
    assert_eq!(seen.failed, ["unsafe-path"]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!dir.join("dl/score.pdf").exists());

    // Planted after the offer was accepted, before the first byte: refused at open.
    std::fs::remove_file(&part).unwrap();
    let mut seen = Seen::default();
    assert!(offer(&mut store, 2, files, &mut seen));
    std::os::unix::fs::symlink(&victim, &part).unwrap();
    chunks(&mut store, 2, files, &mut seen);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(seen.failed.contains(&"unsafe-path".to_string()), "{seen:?}");
    assert!(seen.committed.is_empty());
}

#[test]
fn a_planted_working_directory_link_is_refused() {
    let dir = test_dir("workdir-link");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::create_dir_all(dir.join("dl")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("dl/.lansync")).unwrap();
    let score = pdf("b", 20_000);
    let files: &[(&str, &[u8])] = &[("score.pdf", &score)];
    let mut store = open_store(&dir.join("dl"));
    let mut seen = Seen::default();
    assert!(!offer(&mut store, 1, files, &mut seen));
    assert_eq!(seen.failed, ["unsafe-path"]);
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn a_users_own_file_of_the_same_name_is_never_overwritten() {
    let dir = test_dir("user-file");
    std::fs::write(dir.join("notes.pdf"), b"my own notes").unwrap();
    let notes = pdf("n", 30_000);
    let files: &[(&str, &[u8])] = &[("notes.pdf", &notes)];
    let mut store = open_store(&dir);
    let seen = deliver(&mut store, 1, files);
    assert_eq!(
        std::fs::read(dir.join("notes.pdf")).unwrap(),
        b"my own notes"
    );
    assert_eq!(seen.committed, [dir.join("notes (2).pdf")]);
    assert_eq!(std::fs::read(dir.join("notes (2).pdf")).unwrap(), notes);

    // Restarted: what it wrote is found under the name it got; nothing is asked again.
    drop(store);
    let mut store = open_store(&dir);
    assert!(store.receiver.is_complete());
    // A new version of the file replaces lansync's own copy, still not the user's.
    let newer = pdf("m", 25_000);
    let seen = deliver(&mut store, 2, &[("notes.pdf", &newer)]);
    assert_eq!(
        std::fs::read(dir.join("notes.pdf")).unwrap(),
        b"my own notes"
    );
    assert_eq!(seen.committed, [dir.join("notes (2).pdf")]);
    assert_eq!(std::fs::read(dir.join("notes (2).pdf")).unwrap(), newer);
}

#[test]
fn packs_published_in_turn_leave_only_the_current_packs_files() {
    let dir = test_dir("three-packs");
    std::fs::write(dir.join("mine.pdf"), b"user file").unwrap();
    let (a, b, c, d) = (
        pdf("a", 20_000),
        pdf("b", 30_000),
        pdf("c", 40_000),
        pdf("d", 9),
    );
    let packs: [&[(&str, &[u8])]; 3] = [
        &[("one.pdf", &a), ("two.pdf", &b)],
        &[("three.pdf", &c), ("two.pdf", &b)],
        &[("four.pdf", &d)],
    ];
    let mut store = open_store(&dir);
    for (i, pack) in packs.iter().enumerate() {
        deliver(&mut store, i as u32 + 1, pack);
    }
    assert_eq!(names_in(&dir), ["four.pdf", "mine.pdf"]);
    let parts = std::fs::read_dir(dir.join(".lansync"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "part")
        })
        .count();
    assert_eq!(parts, 0);
}

#[test]
fn an_offer_over_the_session_quota_is_refused_with_its_code() {
    let dir = test_dir("quota");
    let score = pdf("q", 50_000);
    let msg = Message::TransferOffer(TransferOffer {
        transfer: 1,
        manifest: manifest(&[("score.pdf", &score)]),
    });
    let mut store = open_store(&dir);
    let room = Room {
        held_elsewhere: 1_000_000,
        quota: 1_040_000,
    };
    let err = store.offer(Time(1), HOST, &msg, room).unwrap_err();
    assert_eq!(err.code(), "quota-exceeded");
    let mut seen = Seen::default();
    drain(&mut store, &mut seen);
    assert!(matches!(&seen.sent[..], [Message::TransferAbort(a)] if a.code == "quota-exceeded"));
    assert!(names_in(&dir).is_empty());
}

#[test]
fn an_offer_larger_than_the_free_disk_space_is_refused_with_its_code() {
    let dir = test_dir("free-space");
    let free = disk::free_space(&dir).unwrap();
    let size = free.saturating_add(1 << 30);
    let mut m = manifest(&[("big.pdf", b"%PDF-")]);
    m.files[0].size = size;
    let mut store = Store::open(
        ManifestKind::Pack,
        dir.clone(),
        HOST,
        Limits {
            max_file_bytes: u64::MAX,
            max_total_bytes: u64::MAX,
            max_files: 10,
        },
    );
    let msg = Message::TransferOffer(TransferOffer {
        transfer: 1,
        manifest: m,
    });
    let room = Room {
        held_elsewhere: 0,
        quota: u64::MAX,
    };
    let err = store.offer(Time(1), HOST, &msg, room).unwrap_err();
    assert_eq!(err.code(), "insufficient-storage");
}

#[test]
fn files_kept_before_the_record_existed_are_still_resumed_not_duplicated() {
    let dir = test_dir("legacy");
    let score = pdf("l", 20_000);
    let files: &[(&str, &[u8])] = &[("score.pdf", &score)];
    let mut store = open_store(&dir);
    deliver(&mut store, 1, files);
    drop(store);
    std::fs::remove_file(dir.join(".lansync/written.json")).unwrap();
    let mut store = open_store(&dir);
    assert!(store.receiver.is_complete());
    let seen = deliver(&mut store, 2, files);
    assert!(seen.committed.is_empty());
    assert_eq!(names_in(&dir), ["score.pdf"]);
}

#[test]
fn default_directories_are_private_and_never_reused() {
    use std::os::unix::fs::PermissionsExt;
    let (a, b) = (
        disk::random_temp_dir("lansync-test"),
        disk::random_temp_dir("lansync-test"),
    );
    assert_ne!(a, b);
    for d in [&a, &b] {
        let meta = std::fs::symlink_metadata(d).unwrap();
        assert!(meta.file_type().is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir(d).unwrap();
    }
}

#[test]
fn a_part_file_swapped_for_a_link_before_its_commit_is_not_moved_nor_reported_done() {
    let dir = test_dir("swap-before-commit");
    let victim = dir.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let score = pdf("s", 20_000);
    let files: &[(&str, &[u8])] = &[("score.pdf", &score)];
    let dl = dir.join("dl");
    let mut store = open_store(&dl);
    let mut seen = Seen::default();
    assert!(offer(&mut store, 1, files, &mut seen));
    let part = dl.join(format!(".lansync/{}.part", sha256_hex(&score)));
    for (i, payload) in score.chunks(MAX_CHUNK_PAYLOAD).enumerate() {
        let msg = encode_chunk(1, i as u32, payload).unwrap();
        let _ = store.receiver.handle_chunk(Time(1), &msg);
        while let Some(out) = store.receiver.poll_output() {
            if matches!(out, ReceiverOutput::Commit { .. }) {
                std::fs::remove_file(&part).unwrap();
                std::os::unix::fs::symlink(&victim, &part).unwrap();
            }
            apply(&mut store, out, &mut seen);
        }
    }
    assert!(seen.committed.is_empty(), "{seen:?}");
    assert!(!seen
        .sent
        .iter()
        .any(|m| matches!(m, Message::TransferDone(_))));
    assert!(seen
        .sent
        .iter()
        .any(|m| matches!(m, Message::TransferAbort(a) if a.code == "unsafe-path")));
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!dl.join("score.pdf").exists());
    assert!(!store.receiver.is_complete());
}
