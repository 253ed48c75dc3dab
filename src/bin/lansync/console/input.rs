//! Lines of input for the console: standard input read off the runtime, each line capped and
//! checked on its own.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, ReadBuf};
use tokio::sync::mpsc;

/// Longest line of input read, in bytes (newline excluded). A longer line is skipped up to its
/// newline without being buffered, and reported.
pub const MAX_LINE: usize = 64 * 1024;

/// Why a line of input was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadLine {
    /// Longer than [`MAX_LINE`] bytes.
    TooLong,
    /// Not UTF-8.
    NotUtf8,
}

impl BadLine {
    /// One sentence for the `bad-command` error.
    pub fn message(&self) -> String {
        match self {
            BadLine::TooLong => format!("line longer than {MAX_LINE} bytes ignored"),
            BadLine::NotUtf8 => "line that is not UTF-8 ignored".to_string(),
        }
    }
}

/// This process's standard input, read by a plain thread in chunks of at most 8 KiB, at most
/// four chunks ahead. Not tokio's `Stdin`: its read blocks a runtime thread that the runtime
/// waits for when it shuts down, so a program that quit while a terminal was still open would
/// hang until the next key.
pub struct StdinChunks {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl StdinChunks {
    fn spawn() -> StdinChunks {
        let (tx, rx) = mpsc::channel(4);
        let reader = move || {
            use std::io::Read;
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 8 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("stdin".into())
            .spawn(reader)
        {
            tracing::warn!(%e, "cannot read standard input");
        }
        StdinChunks {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl AsyncRead for StdinChunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at == this.chunk.len() {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => (this.chunk, this.at) = (chunk, 0),
                Poll::Ready(None) => return Poll::Ready(Ok(())), // end of input
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = out.remaining().min(this.chunk.len() - this.at);
        out.put_slice(&this.chunk[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

/// Lines of input read as bytes: each line is capped at [`MAX_LINE`] and checked for UTF-8 on
/// its own, so one bad line never stops the lines after it. Cancel-safe (`next_line` may be
/// dropped in a `select!` without losing input).
pub struct InputLines<R = StdinChunks> {
    reader: BufReader<R>,
    /// The line read so far (empty once it is known to be too long).
    line: Vec<u8>,
    /// The current line went over [`MAX_LINE`]: the rest is skipped.
    too_long: bool,
}

impl InputLines<StdinChunks> {
    /// This process's standard input.
    pub fn stdin() -> Self {
        Self::new(StdinChunks::spawn())
    }
}

impl<R: AsyncRead + Unpin> InputLines<R> {
    /// Lines of `reader`.
    pub fn new(reader: R) -> Self {
        InputLines {
            reader: BufReader::new(reader),
            line: Vec::new(),
            too_long: false,
        }
    }

    /// The next line without its line ending; `None` at the end of input (or on a read error).
    pub async fn next_line(&mut self) -> Option<Result<String, BadLine>> {
        loop {
            let avail = match self.reader.fill_buf().await {
                Ok(b) => b,
                Err(_) => return None,
            };
            if avail.is_empty() {
                // End of input: a last line without a newline still counts.
                if self.line.is_empty() && !self.too_long {
                    return None;
                }
                break;
            }
            let newline = avail.iter().position(|&b| b == b'\n');
            let part = &avail[..newline.unwrap_or(avail.len())];
            if !self.too_long {
                if self.line.len() + part.len() > MAX_LINE {
                    self.too_long = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            let used = newline.map_or(avail.len(), |i| i + 1);
            self.reader.consume(used);
            if newline.is_some() {
                break;
            }
        }
        let line = std::mem::take(&mut self.line);
        if std::mem::take(&mut self.too_long) {
            return Some(Err(BadLine::TooLong));
        }
        let mut text = String::from_utf8(line).map_err(|_| BadLine::NotUtf8);
        if let Ok(t) = &mut text {
            if t.ends_with('\r') {
                t.pop();
            }
        }
        Some(text)
    }
}
