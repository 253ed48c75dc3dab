//! The examples of `examples/` run against a real session on loopback, or against each other
//! (the pair examples pass their codes through their stdout and stdin).
//!
//! Each example is built by `cargo build --example NAME` (same profile and target directory as
//! this test), run as a program: `cargo test --test examples` alone does not build examples, and
//! a binary found lying in `target/` could be stale.
#![cfg(all(feature = "native", unix))]

use lansync::{Host, HostOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

const DEADLINE: Duration = Duration::from_secs(30);
/// For the examples run against each other: two processes pairing over WebRTC.
const PAIR_DEADLINE: Duration = Duration::from_secs(60);

/// Builds example `name` and returns its path.
fn build_example(name: &str) -> PathBuf {
    // This test runs from target/<profile>/deps/; the example lands in target/<profile>/examples.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let target_dir = profile_dir.parent().expect("target dir");
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", name, "--target-dir"])
        .arg(target_dir);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo");
    assert!(status.success(), "cargo build --example {name} failed");
    profile_dir.join("examples").join(name)
}

/// The next line containing `text`.
async fn wait_line(lines: &mut Lines<BufReader<ChildStdout>>, text: &str) -> String {
    let found = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(text) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        Ok(None) => panic!("the example ended before printing {text:?}"),
        Err(_) => panic!("the example printed no {text:?} within {DEADLINE:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_join_example_prints_the_page_the_host_turns_to() {
    let example = build_example("join");
    let mut host = Host::start(HostOptions::loopback()).await.expect("host");
    let _events = host.events(); // kept, unread: the stream drops what nobody reads
    let link = host.join_link([127, 0, 0, 1].into()).to_url();
    let mut child = tokio::process::Command::new(&example)
        .args([link.as_str(), "--loopback"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_line(&mut lines, "joined").await;
    host.set_song("ave-maria").unwrap();
    host.set_page(2).unwrap();
    // Zero-based page 2 is the third page for people.
    let line = wait_line(&mut lines, "page 3").await;
    assert_eq!(line, "page 3 of ave-maria");
    host.end().unwrap();
    wait_line(&mut lines, "the session has ended").await;
    let status = tokio::time::timeout(DEADLINE, child.wait()).await;
    assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
    host.shutdown().await;
}

/// `cargo run --example host -- --loopback` and `cargo run --example join -- LINK`, as two
/// programs: the joiner follows the pages the host example turns by itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_and_join_examples_pair_on_loopback() {
    let (host_exe, join_exe) = (build_example("host"), build_example("join"));
    let mut host = tokio::process::Command::new(&host_exe)
        .arg("--loopback")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the host example");
    let mut host_lines = BufReader::new(host.stdout.take().unwrap()).lines();
    let line = wait_line(&mut host_lines, "join link ").await;
    let link = line.trim_start_matches("join link ").to_string();
    let mut join = tokio::process::Command::new(&join_exe)
        .args([link.as_str(), "--loopback"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the join example");
    let mut join_lines = BufReader::new(join.stdout.take().unwrap()).lines();
    wait_line(&mut join_lines, "joined").await;
    // The host example turns a page every few seconds: a later page arrives by itself.
    let first = wait_line(&mut join_lines, " of ave-maria").await;
    let next = wait_line(&mut join_lines, " of ave-maria").await;
    assert_ne!(first, next, "the pages the host turns reach the joiner");
}

/// A running example: its stdin, and its stdout line by line.
struct Run {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    name: &'static str,
}

impl Run {
    fn start(name: &'static str, program: &Path, args: &[&str]) -> Run {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the example");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run {
            stdin: child.stdin.take(),
            child,
            lines,
            name,
        }
    }

    /// The first line starting with `prefix`, without it.
    fn wait_for(&self, prefix: &str) -> String {
        let end = Instant::now() + PAIR_DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line[prefix.len()..].to_string(),
                Ok(_) => {}
                Err(_) => panic!("{}: no line {prefix:?} within {PAIR_DEADLINE:?}", self.name),
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the exit (stdin left as it is) and says whether it succeeded.
    fn exits_ok(&mut self) -> bool {
        let end = Instant::now() + PAIR_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(Instant::now() < end, "{}: still running", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_pair_examples_pair_from_codes_and_mirror_pages() {
    let pair = build_example("pair");
    let mut a = Run::start("offering example", &pair, &["--loopback"]);
    let invite = a.wait_for("invite code: ");
    let mut b = Run::start(
        "answering example",
        &pair,
        &["answer", &invite, "--loopback"],
    );
    let answer = b.wait_for("answer code: ");
    a.type_line(&answer);
    a.wait_for("paired");
    b.wait_for("paired");
    a.type_line("3");
    b.wait_for("page 3");
    b.type_line("5");
    a.wait_for("page 5");
    // The offering side quits: it says goodbye, and the other hears it.
    a.type_line("q");
    assert!(a.exits_ok());
    b.wait_for("partner left");
    b.type_line("q");
    assert!(b.exits_ok());
}

#[test]
fn the_send_files_examples_move_a_file_byte_identical_and_exit_when_verified() {
    let send_files = build_example("send_files");
    let dir = std::env::temp_dir().join(format!("lansync-example-{}", std::process::id()));
    let (src, dst) = (dir.join("src"), dir.join("dst"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&src).unwrap();
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.extend((0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let file = src.join("score.pdf");
    std::fs::write(&file, &bytes).unwrap();

    let file_s = file.display().to_string();
    let mut sender = Run::start("sender", &send_files, &["send", &file_s, "--loopback"]);
    let invite = sender.wait_for("invite code: ");
    let dst_s = dst.display().to_string();
    let mut receiver = Run::start(
        "receiver",
        &send_files,
        &["receive", &invite, &dst_s, "--loopback"],
    );
    let answer = receiver.wait_for("answer code: ");
    sender.type_line(&answer);
    receiver.wait_for("verified");
    sender.wait_for("verified");
    // Both stdins stay open: verification alone ends them.
    assert!(receiver.exits_ok());
    assert!(sender.exits_ok());
    assert!(std::fs::read(dst.join("score.pdf")).unwrap() == bytes);
    let _ = std::fs::remove_dir_all(&dir);
}
