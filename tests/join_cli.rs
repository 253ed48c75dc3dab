//! `lansync join` fails early: a join that cannot succeed says why in one sentence and exits 1
//! within seconds (wrong or missing password, ended session, unknown code, unreachable master),
//! and a session code is accepted as the argument or pasted on stdin.
//!
//! Code joins need mDNS: they run inside a network namespace of their own (a veth pair with both
//! ends inside, so no multicast leaves it), which needs root; without root those tests print why
//! and pass.
#![cfg(all(feature = "native", unix))]

mod cli;

use lansync::invite::JoinLink;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Child, ChildStdin, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const LANSYNC: &str = env!("CARGO_BIN_EXE_lansync");
/// Generous: a failing join must end well within it (the bounded first join is 10 s).
const DEADLINE: Duration = Duration::from_secs(30);

fn state_dir(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("lansync-joincli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_string_lossy().into_owned()
}

/// A process whose stdout lines are collected, run directly or inside a namespace.
struct Run {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    started: Instant,
}

impl Run {
    fn spawn(netns: Option<&str>, args: &[&str]) -> Run {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, LANSYNC]);
                c
            }
            None => Command::new(LANSYNC),
        };
        let (child, stdin, lines) = cli::spawn_lines(cmd.args(args));
        Run {
            stdin: Some(stdin),
            child,
            lines,
            started: Instant::now(),
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// The first JSON line matching `pred`.
    fn wait_json(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"));
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if pred(&v) {
                    return v;
                }
            }
        }
    }

    /// Waits for the exit (stdin closed first): its status, everything printed, how long it ran.
    fn finish(mut self) -> (ExitStatus, String, Duration) {
        drop(self.stdin.take());
        let end = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < end, "still running after {DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = self.started.elapsed();
        let mut out = String::new();
        // The reader thread ends with the pipe; what it read is all there.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            out.push_str(&line);
            out.push('\n');
        }
        (status, out, took)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace with its own small LAN (two ends of a veth pair); deleted on drop.
struct Netns(String);

static NETNS_SEQ: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// `None` (with the reason printed) when this machine cannot make one.
    fn new() -> Option<Netns> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: a network namespace needs root");
            return None;
        }
        let k = NETNS_SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("ljoi-{}-{k}", std::process::id());
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(&["netns", "add", &name]) {
            eprintln!("SKIP: cannot make a network namespace");
            return None;
        }
        let ns = Netns(name);
        // A master needs a LAN interface: a veth pair with both ends inside (so nothing leaves).
        let n = &ns.0;
        let steps: [&[&str]; 6] = [
            &["-n", n, "link", "set", "lo", "up"],
            &[
                "-n", n, "link", "add", "ljoi0", "type", "veth", "peer", "name", "ljoi1",
            ],
            &["-n", n, "addr", "add", "10.232.9.1/24", "dev", "ljoi0"],
            &["-n", n, "addr", "add", "10.232.9.2/24", "dev", "ljoi1"],
            &["-n", n, "link", "set", "ljoi0", "up"],
            &["-n", n, "link", "set", "ljoi1", "up"],
        ];
        if let Some(step) = steps.iter().find(|step| !ok(step)) {
            eprintln!("SKIP: cannot set up the namespace: ip {}", step.join(" "));
            return None;
        }
        Some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A `lansync host --json` with a password, inside `ns`; its session code.
fn host_with_password(ns: &Netns, dir: &str) -> (Run, String) {
    let args = [
        "host",
        "--json",
        "--password",
        "sopranos",
        "--state-dir",
        dir,
    ];
    let host = Run::spawn(Some(&ns.0), &args);
    let hosting = host.wait_json("join link", |v| v["event"] == "hosting_link");
    let code = hosting["session_code"].as_str().unwrap().to_string();
    (host, code)
}

fn assert_failed(status: ExitStatus, out: &str, code: &str, took: Duration, within: Duration) {
    assert_eq!(status.code(), Some(1), "exit status; printed:\n{out}");
    assert!(
        out.contains(&format!("error ({code})")),
        "no {code} error; printed:\n{out}"
    );
    assert!(took < within, "took {took:?}, more than {within:?}");
}

#[test]
fn a_wrong_password_exits_1_at_once_saying_so() {
    let Some(ns) = Netns::new() else { return };
    let (_host, code) = host_with_password(&ns, &state_dir("pw-host"));
    let dir = state_dir("pw-wrong");
    let args = ["join", &code, "--password", "altos", "--state-dir", &dir];
    let (status, out, took) = Run::spawn(Some(&ns.0), &args).finish();
    assert_failed(
        status,
        &out,
        "invalid-password",
        took,
        Duration::from_secs(8),
    );
    assert!(out.contains("password is wrong"), "{out}");
}

#[test]
fn a_missing_password_says_the_session_needs_one() {
    let Some(ns) = Netns::new() else { return };
    let (_host, code) = host_with_password(&ns, &state_dir("nopw-host"));
    let dir = state_dir("nopw-join");
    let args = ["join", "--code", &code, "--state-dir", &dir];
    let (status, out, took) = Run::spawn(Some(&ns.0), &args).finish();
    assert_failed(
        status,
        &out,
        "invalid-password",
        took,
        Duration::from_secs(8),
    );
    assert!(out.contains("needs a password"), "{out}");
    assert!(!out.contains("wrong"), "{out}");
}

/// The code is taken as a code (not refused as a bad link); nobody advertises it, and the
/// sentence names it and says what else to try.
#[test]
fn a_positional_session_code_is_looked_up_and_an_unknown_one_is_named() {
    let Some(ns) = Netns::new() else { return };
    let dir = state_dir("unknown-code");
    let args = [
        "join",
        "abcd-efgh",
        "--mdns-timeout",
        "1",
        "--state-dir",
        &dir,
    ];
    let (status, out, took) = Run::spawn(Some(&ns.0), &args).finish();
    assert_failed(
        status,
        &out,
        "session-not-found",
        took,
        Duration::from_secs(8),
    );
    assert!(out.contains("ABCD-EFGH"), "{out}");
    assert!(out.contains("QR code"), "{out}");
}

#[test]
fn an_unreachable_master_exits_1_naming_its_address_within_the_bound() {
    // A port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let link = JoinLink {
        addr: "127.0.0.1".parse().unwrap(),
        port,
        session_code: "ABCD-EFGH".into(),
        token: "00112233445566778899aabbccddeeff".into(),
        fingerprint: format!("sha-256 {}", vec!["AB"; 32].join(":")),
    }
    .to_url();
    let dir = state_dir("unreachable");
    let args = ["join", &link, "--loopback", "--state-dir", &dir];
    let (status, out, took) = Run::spawn(None, &args).finish();
    // The first join gives up after 10 s.
    assert_failed(
        status,
        &out,
        "network-unavailable",
        took,
        Duration::from_secs(20),
    );
    assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
}

#[test]
fn a_link_to_an_ended_session_exits_1() {
    let host_dir = state_dir("ended-host");
    let mut host = cli::Proc::spawn(
        "host",
        &["host", "--json", "--loopback", "--state-dir", &host_dir],
    );
    let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
    host.send(json!({"cmd": "end"}));
    host.wait_for("the end", |v| v["event"] == "session_ended");
    let link = hosting["link"].as_str().unwrap();
    let dir = state_dir("ended-join");
    let args = ["join", link, "--json", "--loopback", "--state-dir", &dir];
    let (status, out, took) = Run::spawn(None, &args).finish();
    assert_eq!(status.code(), Some(1), "{out}");
    let error = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "error")
        .unwrap_or_else(|| panic!("no error line: {out}"));
    assert_eq!(error["code"], "session-ended", "{out}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

/// With no argument and nothing stored, the link comes from stdin (`--json`: a join command).
#[test]
fn a_link_pasted_on_stdin_is_joined() {
    let host_dir = state_dir("stdin-host");
    let host = cli::Proc::spawn(
        "host",
        &["host", "--json", "--loopback", "--state-dir", &host_dir],
    );
    let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
    let dir = state_dir("stdin-join");
    let mut join = Run::spawn(None, &["join", "--json", "--loopback", "--state-dir", &dir]);
    join.send(r#"{"cmd":"hello"}"#);
    join.wait_json("what is expected", |v| {
        v["event"] == "error" && v["message"].as_str().unwrap_or("").contains("\"join\"")
    });
    join.send(&json!({"cmd":"join","link":hosting["link"]}).to_string());
    let joined = join.wait_json("joined", |v| v["event"] == "joined");
    assert_eq!(joined["session_id"], hosting["session_id"]);
}

/// Two `lansync join` on one machine, neither told where to keep its state, are two devices
/// (the second keeps its own in `join-2`) — not one device id joining twice; one told to use a
/// folder another holds stops at once, saying so. The second joins from the phones' URL, which
/// lansync reads as the join link it carries.
#[test]
fn two_joins_on_one_machine_are_two_devices_and_a_held_state_dir_is_refused() {
    let host_dir = state_dir("two-host");
    let host = cli::Proc::spawn(
        "host",
        &["host", "--json", "--loopback", "--state-dir", &host_dir],
    );
    let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
    let data = state_dir("two-data");
    let spawn = |args: &[&str]| {
        let mut cmd = Command::new(LANSYNC);
        cmd.args(args).env("XDG_DATA_HOME", &data);
        let (child, stdin, lines) = cli::spawn_lines(&mut cmd);
        Run {
            stdin: Some(stdin),
            child,
            lines,
            started: Instant::now(),
        }
    };
    let link = hosting["link"].as_str().unwrap();
    let page = hosting["page"].as_str().unwrap();
    let first = spawn(&["join", "--json", "--loopback", link]);
    let second = spawn(&["join", "--json", "--loopback", page]);
    let mut dirs = Vec::new();
    for join in [&first, &second] {
        let ready = join.wait_json("ready", |v| v["event"] == "ready");
        dirs.push(ready["state_dir"].as_str().unwrap().to_string());
        join.wait_json("joined", |v| v["event"] == "joined");
    }
    assert_ne!(dirs[0], dirs[1], "two devices, two folders");
    let ids: Vec<String> = dirs
        .iter()
        .map(|d| std::fs::read_to_string(format!("{d}/device-id")).unwrap())
        .collect();
    assert_ne!(ids[0], ids[1]);
    let taken = Run::spawn(
        None,
        &[
            "join",
            "--json",
            "--loopback",
            "--state-dir",
            &dirs[0],
            link,
        ],
    );
    let (status, out, _) = taken.finish();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("another lansync is using"), "{out}");
    drop((first, second, host));
}

/// For people: the prompt, then a sentence saying what is expected when the text is neither.
#[test]
fn text_that_is_neither_a_link_nor_a_code_is_refused_in_one_sentence() {
    let dir = state_dir("garbage");
    let mut join = Run::spawn(None, &["join", "--loopback", "--state-dir", &dir]);
    join.send("hello there");
    let (status, out, took) = join.finish();
    assert!(
        out.contains("Paste the join link or session code:"),
        "{out}"
    );
    assert!(out.contains("neither a join link"), "{out}");
    // The end of input with nothing usable: nothing to join, exit 1.
    assert_failed(
        status,
        &out,
        "missing-session-code",
        took,
        Duration::from_secs(8),
    );
    let (status, out, _) = Run::spawn(None, &["join", "hello", "--state-dir", &dir]).finish();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("neither a join link"), "{out}");
}

/// The bound is for a first join only: a member whose master is down when it starts keeps
/// rejoining, and is back in the session when the master returns.
#[test]
fn a_member_keeps_rejoining_while_its_master_is_away() {
    let (host_dir, dir) = (state_dir("away-host"), state_dir("away-join"));
    let host_args = ["host", "--json", "--loopback", "--state-dir", &host_dir];
    let host = cli::Proc::spawn("host", &host_args);
    let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
    let link = hosting["link"].as_str().unwrap();
    let join_args = ["join", "--json", "--loopback", "--state-dir", &dir];
    let first = Run::spawn(None, &[&["join", link][..], &join_args[1..]].concat());
    first.wait_json("joined", |v| v["event"] == "joined");
    drop(first); // killed: a crash keeps the membership (quitting leaves the session)
    drop(host);
    // Nothing answers at the stored address now: the member starts anyway and keeps trying.
    let member = Run::spawn(None, &join_args);
    member.wait_json("a failed dial", |v| {
        v["event"] == "state" && v["reason"] == "dial failed"
    });
    let _host = cli::Proc::spawn("host again", &host_args);
    let joined = member.wait_json("rejoined", |v| v["event"] == "joined");
    assert_eq!(joined["rejoin"], true);
    assert_eq!(joined["session_id"], hosting["session_id"]);
}
