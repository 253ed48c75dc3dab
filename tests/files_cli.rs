//! Files between real `lansync` processes over real WebRTC on loopback, driven through `--json`:
//! `send` / `receive` for a solo pair, and a host's session pack (score, audio, video) that a
//! joining follower downloads, verifies and — killed halfway and restarted — resumes instead of
//! restarting. Files on disk are compared byte for byte.
//!
//! Every wait is for an event, with a generous deadline; nothing sleeps to synchronise.
#![cfg(all(feature = "native", unix))]

mod cli;

use cli::Proc;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lansync-files-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Deterministic filler so a test needs no randomness source.
fn filler(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A score, an audio track and a video, with the magic bytes their names claim.
fn make_pack(dir: &Path, scale: usize) -> Vec<PathBuf> {
    let files = [
        ("score.pdf", b"%PDF-1.7\n".to_vec(), 400_000 * scale),
        ("track.ogg", b"OggS".to_vec(), 300_000 * scale),
        ("clip.mp4", b"\0\0\0\x20ftypisom".to_vec(), 900_000 * scale),
    ];
    files
        .iter()
        .enumerate()
        .map(|(i, (name, head, len))| {
            let mut bytes = head.clone();
            bytes.extend(filler(*len, i as u32 + 7));
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

fn assert_same_files(src: &[PathBuf], dst: &Path) {
    for s in src {
        let d = dst.join(s.file_name().unwrap());
        let (a, b) = (std::fs::read(s).unwrap(), std::fs::read(&d).unwrap());
        assert!(a == b, "{} differs from its source", d.display());
    }
}

/// Bytes a restarted participant can reuse: verified files in `dir`, plus the whole chunks of
/// partial files in `dir/.lansync` (a kill may cut the last write short).
fn held_bytes(files: &[PathBuf], dir: &Path) -> u64 {
    const CHUNK: u64 = 16_376;
    let whole: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f.file_name().unwrap())).ok())
        .map(|m| m.len())
        .sum();
    let partial: u64 = std::fs::read_dir(dir.join(".lansync"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "part"))
                .map(|e| e.metadata().map_or(0, |m| m.len() / CHUNK * CHUNK))
                .sum()
        })
        .unwrap_or(0);
    whole + partial
}

/// `lansync host` on loopback publishing `pack`, its state in `state`.
fn host_with_pack(pack: &str, state: &str) -> Proc {
    Proc::spawn(
        "host",
        &[
            "host",
            "--json",
            "--loopback",
            "--state-dir",
            state,
            "--pack",
            pack,
        ],
    )
}

fn done(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == "files_done" && v["kind"] == kind
}

#[test]
fn send_and_receive_move_files_to_a_paired_device_verified() {
    let (src, dst) = (temp_dir("send-src"), temp_dir("send-dst"));
    let files = make_pack(&src, 1);
    let mut args = vec!["send", "--json", "--loopback"];
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(names.iter().map(String::as_str));
    let mut sender = Proc::spawn("sender", &args);
    let invite = sender.wait_for("invite", |v| v["event"] == "invite");
    let dst_s = dst.display().to_string();
    let receiver = Proc::spawn(
        "receiver",
        &[
            "receive",
            invite["code"].as_str().unwrap(),
            "--dir",
            &dst_s,
            "--json",
            "--loopback",
        ],
    );
    let answer = receiver.wait_for("answer", |v| v["event"] == "answer");
    sender.send(serde_json::json!({"cmd":"answer","code":answer["code"]}));
    for _ in 0..3 {
        receiver.wait_for("a file", |v| v["event"] == "file_received");
    }
    receiver.wait_for("all verified", done("pack"));
    sender.wait_for("partner confirmed", done("pack"));
    assert_same_files(&files, &dst);
    // No temporary file is left where a verified one should be.
    let parts = std::fs::read_dir(dst.join(".lansync"))
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
fn a_follower_gets_the_hosts_pack_and_resumes_it_after_a_crash() {
    let (pack, hd, fd) = (temp_dir("pack"), temp_dir("host"), temp_dir("follower"));
    let files = make_pack(&pack, 60); // 96 MB: long enough to be killed halfway
    let (pack_s, hd_s, fd_s) = (
        pack.display().to_string(),
        hd.display().to_string(),
        fd.display().to_string(),
    );
    let host = host_with_pack(&pack_s, &hd_s);
    let published = host.wait_for("pack published", |v| v["event"] == "files_published");
    let total: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    assert_eq!(published["files"]["pack"]["size"], total);
    let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
    let link = hosting["link"].as_str().unwrap().to_string();

    let download = fd.join("files");
    let follower_args = ["join", &link, "--json", "--loopback", "--state-dir", &fd_s];
    let follower = Proc::spawn("follower", &follower_args);
    follower.wait_for("gate closed", |v| {
        v["event"] == "start_gate" && v["open"] == false
    });
    // Kill it as soon as its first bytes are on disk (the first progress report follows the
    // first chunk's write): nearly all of the 96 MB is still to come, so even a fast machine
    // cannot finish before the signal lands.
    follower.wait_for("first bytes", |v| {
        v["event"] == "files_progress" && v["bytes_done"].as_u64() > Some(0)
    });
    follower.signal("-KILL");
    drop(follower);

    // What survived on disk: verified files, and whole chunks of partial ones.
    let held = held_bytes(&files, &download);
    assert!(
        held > 0 && held < total,
        "killed at {held} of {total} bytes"
    );

    // Restarted from its stored membership: it rejoins and asks only for what it lacks.
    let follower = Proc::spawn(
        "follower-again",
        &["join", "--json", "--loopback", "--state-dir", &fd_s],
    );
    let first = follower.wait_for("resumed progress", |v| {
        v["event"] == "files_progress" && v["kind"] == "pack"
    });
    let resumed_total = first["bytes_total"].as_u64().unwrap();
    assert_eq!(
        resumed_total,
        total - held,
        "the restarted follower must ask for exactly what it lacks"
    );
    follower.wait_for("pack verified", done("pack"));
    follower.wait_for("gate open", |v| {
        v["event"] == "start_gate" && v["open"] == true
    });
    assert_same_files(&files, &download);
    host.wait_for("host sees it confirmed", done("pack"));
}

#[test]
fn a_pack_with_a_file_that_lies_about_its_type_is_refused_with_its_code() {
    for (name, bytes, code) in [
        (
            "fake.pdf",
            &b"MZ\x90\0 not a pdf"[..],
            "session-media-unsupported-type",
        ),
        (
            "tool.exe",
            &b"MZ\x90\0"[..],
            "session-media-unsupported-type",
        ),
    ] {
        let (pack, hd) = (temp_dir("bad-pack"), temp_dir("bad-host"));
        std::fs::write(pack.join("score.pdf"), b"%PDF-1.7\n fine").unwrap();
        std::fs::write(pack.join(name), bytes).unwrap();
        let (pack_s, hd_s) = (pack.display().to_string(), hd.display().to_string());
        let host = host_with_pack(&pack_s, &hd_s);
        let err = host.wait_for_error();
        assert_eq!(err["code"], code, "{name}: {err}");
        assert!(err["message"].as_str().unwrap().contains(name), "{err}");
    }
    let (empty, hd) = (temp_dir("empty-pack"), temp_dir("empty-host"));
    let (empty_s, hd_s) = (empty.display().to_string(), hd.display().to_string());
    let host = host_with_pack(&empty_s, &hd_s);
    assert_eq!(host.wait_for_error()["code"], "session-pack-not-found");
}
