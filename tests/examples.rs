//! The examples run as a person would run them, against each other on loopback: codes pass
//! through their stdout and stdin.
//!
//! Every wait is for a line, with a generous deadline; nothing sleeps to synchronise.
#![cfg(all(feature = "native", unix))]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

/// Builds `examples/NAME.rs` with the profile of this test and returns its path.
fn example(name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--example", name]);
    if !cfg!(debug_assertions) {
        build.arg("--release");
    }
    assert!(
        build.status().unwrap().success(),
        "cannot build example {name}"
    );
    // Examples land next to the binaries, in `examples/`.
    Path::new(env!("CARGO_BIN_EXE_lansync"))
        .with_file_name("examples")
        .join(name)
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
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
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
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line[prefix.len()..].to_string(),
                Ok(_) => {}
                Err(_) => panic!("{}: no line {prefix:?} within {DEADLINE:?}", self.name),
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
        let end = Instant::now() + DEADLINE;
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
    let pair = example("pair");
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
    let send_files = example("send_files");
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
