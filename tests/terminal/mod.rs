//! The binary in a real terminal: a pseudo-terminal of a chosen size, what a person types, and
//! the screen's lines as they arrive (colour escapes stripped). Used by the new-user walk-through.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A process attached to a pseudo-terminal.
pub struct Terminal {
    child: Child,
    writer: std::fs::File,
    lines: mpsc::Receiver<String>,
    /// Every line seen so far.
    pub seen: Vec<String>,
}

impl Terminal {
    /// Runs the lansync binary with `args` in a `cols`×`rows` terminal, in `dir`.
    pub fn spawn(args: &[&str], cols: u16, rows: u16, dir: &std::path::Path) -> Terminal {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lansync"));
        cmd.args(args);
        Terminal::run(cmd, cols, rows, dir)
    }

    /// Runs `script` with `sh -c` in a terminal (a command line as a person pastes it).
    pub fn spawn_shell(script: &str, cols: u16, rows: u16, dir: &std::path::Path) -> Terminal {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        Terminal::run(cmd, cols, rows, dir)
    }

    fn run(mut cmd: Command, cols: u16, rows: u16, dir: &std::path::Path) -> Terminal {
        let (master, slave) = open_pty(cols, rows);
        let slave_file = std::fs::File::from(slave);
        cmd.current_dir(dir)
            .env("COLUMNS", cols.to_string())
            .env("LINES", rows.to_string())
            .env("TERM", "xterm-256color")
            .stdin(Stdio::from(slave_file.try_clone().unwrap()))
            .stdout(Stdio::from(slave_file.try_clone().unwrap()))
            .stderr(Stdio::from(slave_file));
        unsafe {
            use std::os::unix::process::CommandExt;
            // A session of its own with the terminal as its controlling terminal, as a shell
            // would start it (so Ctrl-C typed on the terminal reaches it).
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("run lansync in a terminal");
        let master = std::fs::File::from(master);
        let mut reader = master.try_clone().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut pending = Vec::new();
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                // Cut at the last row boundary; a partial UTF-8 character or escape waits.
                let Some(end) = pending.iter().rposition(|&b| b == b'\n' || b == b'\r') else {
                    continue;
                };
                let text = String::from_utf8_lossy(&pending[..=end]).into_owned();
                pending.drain(..=end);
                for seg in drawn_segments(&text) {
                    if tx.send(seg).is_err() {
                        return;
                    }
                }
            }
        });
        Terminal {
            child,
            writer: master,
            lines,
            seen: Vec::new(),
        }
    }

    /// Types `text` (a newline is not added).
    pub fn type_text(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    /// Waits (up to `limit`) for a line `pred` accepts; returns it.
    pub fn wait_line(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let end = Instant::now() + limit;
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return Some(l.clone());
        }
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return Some(l);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Waits (up to `limit`) for the process to exit; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Drain what is left to read.
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open_pty(cols: u16, rows: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// The pieces of text drawn on one output line, split where the program moved the cursor back
/// or erased (a carriage return, `ESC[…K`, `ESC[…A`, `ESC[…G`, `ESC[…J`), without colours.
/// Each piece is what the terminal showed at once on one row, so one longer than the terminal is
/// wide would have wrapped.
pub fn drawn_segments(s: &str) -> Vec<String> {
    let mut segments = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // Parameters and intermediates, then one final byte in @..~.
                    let mut last = ' ';
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            last = c;
                            break;
                        }
                    }
                    if matches!(last, 'K' | 'A' | 'G' | 'J' | 'H') {
                        segments.push(String::new());
                    }
                } else {
                    chars.next();
                }
            }
            '\r' | '\n' => segments.push(String::new()),
            c => segments.last_mut().unwrap().push(c),
        }
    }
    segments.retain(|s| !s.trim().is_empty());
    segments
}

/// The drawn pieces in which a progress bar (a row with a percentage) runs on to the next row of
/// a `cols`-wide terminal. Text wider than the terminal wraps (the terminal's autowrap, which
/// progress-bar libraries rely on for long messages); a bar must not.
pub fn wrapped_bars(segments: &[String], cols: usize) -> Vec<String> {
    let mut wrapped = Vec::new();
    for seg in segments {
        let chars: Vec<char> = seg.chars().collect();
        let rows: Vec<String> = chars.chunks(cols).map(|r| r.iter().collect()).collect();
        for pair in rows.windows(2) {
            let is_bar = pair[0].contains('%');
            let runs_on = !pair[1].trim().is_empty() && !pair[1].contains('%');
            if is_bar && runs_on {
                wrapped.push(seg.clone());
                break;
            }
        }
    }
    wrapped
}
