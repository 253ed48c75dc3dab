//! `lansync pair` / `send` / `receive` as a new user meets them, with real processes over real
//! WebRTC on loopback: a missing file fails before any invite, send and receive exit on their
//! own once the files are verified (stdin left open), the printed code survives a shell
//! unquoted, a quit before pairing ends the program, the partner of a device that quits hears
//! at once that it left, and a device with no network says so at once.
//!
//! Every wait is for an event or an exit, with a generous deadline; nothing sleeps to
//! synchronise.
#![cfg(all(feature = "native", unix))]

mod cli;

use cli::Proc;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const EXIT: Duration = Duration::from_secs(30);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lansync-pairx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Deterministic filler so a test needs no randomness source.
fn filler(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Offers with `offer_args`, answers with `answer` (plus the invite code, last), hands the
/// answer back: both are paired when this returns.
fn paired(offer_args: &[&str], answer: &[&str]) -> (Proc, Proc) {
    let mut a = Proc::spawn("offerer", offer_args);
    let invite = a.wait_for("invite", |v| v["event"] == "invite");
    let mut args = answer.to_vec();
    args.push(invite["code"].as_str().unwrap());
    let b = Proc::spawn("answerer", &args);
    let code = b.wait_for("answer", |v| v["event"] == "answer");
    a.send(json!({"cmd": "answer", "code": code["code"]}));
    (a, b)
}

fn connected(v: &Value) -> bool {
    v["event"] == "state" && v["state"] == "SOLO_PAIRED_CONNECTED"
}

#[test]
fn send_fails_before_any_invite_when_a_file_is_missing_a_directory_or_unsupported() {
    let dir = temp_dir("bad-files");
    std::fs::write(dir.join("tool.exe"), b"MZ\x90\0").unwrap();
    let state = s(&dir.join("state"));
    for (file, code) in [
        (dir.join("missing.pdf"), "invalid-session-pack"),
        (dir.clone(), "invalid-session-pack"),
        (dir.join("tool.exe"), "session-media-unsupported-type"),
    ] {
        let file = s(&file);
        let mut p = Proc::spawn(
            "sender",
            &["send", &file, "--json", "--loopback", "--state-dir", &state],
        );
        let (lines, status) = p.lines_until_exit(EXIT);
        assert_eq!(status.code(), Some(1), "{file}: {lines:?}");
        assert!(
            lines.iter().all(|v| v["event"] != "invite"),
            "{file}: an invite was printed: {lines:?}"
        );
        let err = lines.iter().find(|v| v["event"] == "error").unwrap();
        assert_eq!(err["code"], code, "{file}: {err}");
    }
}

#[test]
fn send_and_receive_of_a_multi_mb_file_both_exit_on_their_own_with_stdin_open() {
    let (src, dst) = (temp_dir("big-src"), temp_dir("big-dst"));
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend(filler(8 << 20));
    let file = src.join("big.pdf");
    std::fs::write(&file, &bytes).unwrap();
    let (file_s, dst_s) = (s(&file), s(&dst));
    let (ss, rs) = (s(&src.join("state")), s(&dst.join("state")));
    let (mut sender, mut receiver) = paired(
        &["send", &file_s, "--json", "--loopback", "--state-dir", &ss],
        &[
            "receive",
            "--dir",
            &dst_s,
            "--json",
            "--loopback",
            "--state-dir",
            &rs,
        ],
    );
    // Both stdins stay open (the Proc holds them): only verification may end the programs.
    let (r_lines, r_status) = receiver.lines_until_exit(EXIT);
    let (s_lines, s_status) = sender.lines_until_exit(EXIT);
    assert!(r_status.success(), "receiver: {r_lines:?}");
    assert!(s_status.success(), "sender: {s_lines:?}");
    assert!(r_lines.iter().any(|v| v["event"] == "files_done"));
    assert!(std::fs::read(dst.join("big.pdf")).unwrap() == bytes);
}

#[test]
fn the_printed_code_has_no_shell_characters_and_pastes_unquoted() {
    let state = temp_dir("shell");
    let (sa, sb) = (s(&state.join("a")), s(&state.join("b")));
    let mut a = Proc::spawn(
        "offerer",
        &["pair", "offer", "--json", "--loopback", "--state-dir", &sa],
    );
    let invite = a.wait_for("invite", |v| v["event"] == "invite");
    let code = invite["code"].as_str().unwrap().to_string();
    assert!(
        code.starts_with("LS.")
            && code[3..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{code}"
    );
    let command = invite["command"].as_str().unwrap();
    // The offer is on loopback only, so the answer must be too: the command says so.
    assert_eq!(command, format!("lansync pair answer --loopback {code}"));
    // What a person does: paste the printed command into a shell, unquoted.
    let line = command.replacen("lansync", env!("CARGO_BIN_EXE_lansync"), 1);
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("exec {line} --json --state-dir {sb}"));
    let b = Proc::spawn_command("answerer", sh);
    let answer = b.wait_for("answer", |v| v["event"] == "answer");
    a.send(json!({"cmd": "answer", "code": answer["code"]}));
    a.wait_for("paired", connected);
    b.wait_for("paired", connected);
}

#[test]
fn quit_or_the_end_of_input_before_pairing_ends_the_program() {
    let state = temp_dir("quit");
    let (sa, sb) = (s(&state.join("a")), s(&state.join("b")));
    // The offering side, waiting for its answer code.
    let mut a = Proc::spawn(
        "offerer",
        &["pair", "offer", "--json", "--loopback", "--state-dir", &sa],
    );
    let invite = a.wait_for("invite", |v| v["event"] == "invite");
    a.send(json!({"cmd": "quit"}));
    let (_, status) = a.lines_until_exit(Duration::from_secs(5));
    assert!(status.success(), "a quit is not a failure");

    // The answering side, waiting for a link that never opens (its answer is never taken).
    let code = invite["code"].as_str().unwrap();
    let mut b = Proc::spawn(
        "answerer",
        &[
            "pair",
            "answer",
            code,
            "--json",
            "--loopback",
            "--state-dir",
            &sb,
        ],
    );
    b.wait_for("answer", |v| v["event"] == "answer");
    let asked = Instant::now();
    b.send(json!({"cmd": "quit"}));
    let (_, status) = b.lines_until_exit(Duration::from_secs(5));
    assert!(status.success());
    assert!(asked.elapsed() < Duration::from_secs(5));

    // An answering side with no code reads it from its input; the input ends instead.
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(format!(
        "exec {} pair answer --json --loopback --state-dir {sb} </dev/null",
        env!("CARGO_BIN_EXE_lansync")
    ));
    let mut c = Proc::spawn_command("answerer", sh);
    let (lines, status) = c.lines_until_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{lines:?}");
}

#[test]
fn a_device_that_quits_says_goodbye_and_its_partner_reports_it_left_at_once() {
    let state = temp_dir("goodbye");
    let (sa, sb) = (s(&state.join("a")), s(&state.join("b")));
    let (mut a, b) = paired(
        &["pair", "offer", "--json", "--loopback", "--state-dir", &sa],
        &["pair", "answer", "--json", "--loopback", "--state-dir", &sb],
    );
    a.wait_for("paired", connected);
    b.wait_for("paired", connected);
    let quit = Instant::now();
    a.send(json!({"cmd": "quit"}));
    let left = b.wait_for("partner left", |v| v["event"] == "state");
    let took = quit.elapsed();
    assert_eq!(left["state"], "SOLO_LOCAL_ONLY", "{left}");
    assert_eq!(left["reason"], "partner left", "{left}");
    // Without the goodbye the partner only notices the silence (3.5 s degraded, minutes dead).
    assert!(
        took < Duration::from_millis(1500),
        "partner told after {took:?}"
    );
    let (_, status) = a.lines_until_exit(Duration::from_secs(5));
    assert!(status.success());
}

/// A network namespace with only `lo`, removed on drop.
struct NoNetwork(String);

impl NoNetwork {
    fn new() -> Option<NoNetwork> {
        let name = format!("lpai-nonet-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot make a network namespace (needs root and iproute2)");
            return None;
        }
        let ns = NoNetwork(name);
        let lo = Command::new("ip")
            .args(["netns", "exec", &ns.0, "ip", "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(lo.success());
        Some(ns)
    }

    fn lansync(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0, env!("CARGO_BIN_EXE_lansync")])
            .args(args);
        cmd
    }
}

impl Drop for NoNetwork {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn with_no_network_both_sides_fail_at_once_with_one_sentence() {
    let Some(ns) = NoNetwork::new() else {
        return;
    };
    let state = temp_dir("nonet");
    let st = s(&state);
    // A valid invite made on loopback, for the answering side.
    let a = Proc::spawn(
        "offerer",
        &["pair", "offer", "--json", "--loopback", "--state-dir", &st],
    );
    let invite = a.wait_for("invite", |v| v["event"] == "invite");
    let code = invite["code"].as_str().unwrap().to_string();
    // The devices without a network keep their state apart from the offerer, which holds its
    // folder while it runs.
    let device = temp_dir("nonet-device");
    let sd = s(&device);
    for args in [
        vec!["pair", "offer", "--json", "--state-dir", &sd],
        vec!["receive", &code, "--json", "--state-dir", &sd],
    ] {
        let started = Instant::now();
        let mut p = Proc::spawn_command("device", ns.lansync(&args));
        let (lines, status) = p.lines_until_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(1), "{args:?}: {lines:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{args:?}");
        assert!(lines
            .iter()
            .all(|v| v["event"] != "invite" && v["event"] != "answer"));
        let err = lines.iter().find(|v| v["event"] == "error").unwrap();
        assert_eq!(err["code"], "network-unavailable", "{err}");
        assert!(
            err["message"].as_str().unwrap().contains("--loopback"),
            "{err}"
        );
    }
}
