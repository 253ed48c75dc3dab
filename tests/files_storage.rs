//! A follower's disk between real `lansync` processes (PROTOCOL.md §11.5, "Storage"): packs
//! published in turn leave only the current pack's files, and a user's own file of the same name
//! in the download directory is never replaced.
//!
//! Every wait is for an event, with a generous deadline; nothing sleeps to synchronise.
#![cfg(all(feature = "native", unix))]

mod cli;

use cli::Proc;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lansync-storage-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn pdf(tag: &str, len: usize) -> Vec<u8> {
    let mut bytes = format!("%PDF-1.7\n{tag}\n").into_bytes();
    bytes.extend((0..len).map(|i| (i * 7 % 253) as u8 ^ tag.len() as u8));
    bytes
}

/// Regular files directly in `dir`, by name (the working directory `.lansync` is not one).
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

fn done_with(hash: Value) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == "files_done" && v["kind"] == "pack" && v["hash"] == hash
}

/// A host on loopback publishing `pack`, and a follower downloading into `download`.
fn host_and_follower(pack: &Path, download: &Path, tag: &str) -> (Proc, Proc, Value) {
    let (hd, fd) = (
        temp_dir(&format!("{tag}-host")),
        temp_dir(&format!("{tag}-follower")),
    );
    let (pack_s, hd_s, fd_s, dl_s) = (
        pack.display().to_string(),
        hd.display().to_string(),
        fd.display().to_string(),
        download.display().to_string(),
    );
    let host = Proc::spawn(
        "host",
        &[
            "host",
            "--json",
            "--loopback",
            "--state-dir",
            &hd_s,
            "--pack",
            &pack_s,
        ],
    );
    let published = host.wait_for("pack published", |v| v["event"] == "files_published");
    let link = host.wait_for("join link", |v| v["event"] == "hosting_link")["link"]
        .as_str()
        .unwrap()
        .to_string();
    let follower = Proc::spawn(
        "follower",
        &[
            "join",
            &link,
            "--json",
            "--loopback",
            "--state-dir",
            &fd_s,
            "--download",
            &dl_s,
        ],
    );
    let hash = published["files"]["pack"]["hash"].clone();
    (host, follower, hash)
}

#[test]
fn packs_published_in_turn_leave_only_the_current_packs_files_on_a_follower() {
    let packs: Vec<PathBuf> = (1..=3).map(|i| temp_dir(&format!("pack{i}"))).collect();
    let contents = [
        vec![("a.pdf", pdf("a", 300_000)), ("b.pdf", pdf("b", 200_000))],
        vec![("c.pdf", pdf("c", 250_000)), ("b.pdf", pdf("b2", 100_000))],
        vec![("d.pdf", pdf("d", 50_000))],
    ];
    for (dir, files) in packs.iter().zip(&contents) {
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let download = temp_dir("turns-download");
    let (mut host, follower, first) = host_and_follower(&packs[0], &download, "turns");
    follower.wait_for("pack 1 verified", done_with(first));
    for dir in &packs[1..] {
        host.send(json!({"cmd":"publish_pack","dir":dir.display().to_string()}));
        let published = host.wait_for("pack published", |v| v["event"] == "files_published");
        follower.wait_for(
            "next pack verified",
            done_with(published["files"]["pack"]["hash"].clone()),
        );
    }
    assert_eq!(names_in(&download), ["d.pdf"]);
    assert_eq!(
        std::fs::read(download.join("d.pdf")).unwrap(),
        contents[2][0].1
    );
}

#[test]
fn a_users_own_file_in_the_download_directory_is_never_replaced() {
    let pack = temp_dir("own-pack");
    let theirs = pdf("notes from the master", 120_000);
    std::fs::write(pack.join("notes.pdf"), &theirs).unwrap();
    let download = temp_dir("own-download");
    std::fs::write(
        download.join("notes.pdf"),
        b"my own notes, not a PDF at all",
    )
    .unwrap();
    let (_host, follower, hash) = host_and_follower(&pack, &download, "own");
    let received = follower.wait_for("the file", |v| v["event"] == "file_received");
    follower.wait_for("pack verified", done_with(hash));
    assert_eq!(
        std::fs::read(download.join("notes.pdf")).unwrap(),
        b"my own notes, not a PDF at all"
    );
    let landed = PathBuf::from(received["path"].as_str().unwrap());
    assert_eq!(landed, download.join("notes (2).pdf"));
    assert_eq!(std::fs::read(&landed).unwrap(), theirs);
}
