//! Runs `lansync` processes and reads their `--json` events, for tests over real networks.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// Starts `cmd` with piped stdin/stdout (stderr inherited) and a thread that hands over its
/// stdout line by line: the one way every CLI test runs a program.
pub fn spawn_lines(cmd: &mut Command) -> (Child, ChildStdin, Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start lansync");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, stdin, lines)
}

/// A running `lansync` with piped stdin/stdout.
pub struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    name: &'static str,
}

impl Proc {
    pub fn spawn(name: &'static str, args: &[&str]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lansync"));
        cmd.args(args);
        Proc::spawn_command(name, cmd)
    }

    /// Runs `cmd` (e.g. `lansync` through `sh -c` or `ip netns exec`) with piped stdin/stdout.
    pub fn spawn_command(name: &'static str, mut cmd: Command) -> Proc {
        let (child, stdin, text) = spawn_lines(&mut cmd);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in text {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => panic!("not a JSON line on stdout: {line}"),
                }
            }
        });
        Proc {
            child,
            stdin,
            lines,
            name,
        }
    }

    pub fn send(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Writes raw bytes to stdin (for malformed input).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for the first event matching `pred`, skipping others.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(v) => {
                    assert_ne!(v["event"], "error", "{}: unexpected error {v}", self.name);
                }
                Err(_) => panic!("{}: no {what} within {DEADLINE:?}", self.name),
            }
        }
    }

    /// Waits for the first `error` event.
    pub fn wait_for_error(&self) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v["event"] == "error" => return v,
                Ok(_) => {}
                Err(_) => panic!("{}: no error within {DEADLINE:?}", self.name),
            }
        }
    }

    pub fn wait_page(&self, page: u64) {
        self.wait_for(&format!("page {page}"), |v| {
            v["event"] == "page" && v["page"] == page
        });
    }

    /// Every line until the process exits (stdin kept open), and how it exited; panics if it
    /// is still running after `within`.
    pub fn lines_until_exit(&mut self, within: Duration) -> (Vec<Value>, std::process::ExitStatus) {
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends with the pipe: take what it still holds.
                let mut lines = Vec::new();
                while let Ok(v) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    lines.push(v);
                }
                return (lines, status);
            }
            assert!(
                Instant::now() < end,
                "{}: still running after {within:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
