//! Files in the terminal: progress bars (indicatif) for people, `files_*` JSON lines for
//! programs, and the file commands (`publish_pack`, `publish_media`, `stream`, …).

use crate::console::{bytes, Out};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use lansync::node::{FilesEvent, Node, ProgressView};
use lansync::transfer::ManifestKind;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;

/// A bar's fixed part, at most 37 columns: who (16, cut to fit), the bar (16), the percentage.
/// The message after it (sizes, rate, time left; then `verified` or why it stopped) takes the
/// rest of the line and is cut to the terminal's width, so a bar never wraps.
const RUNNING: &str = "{prefix:16!} {bar:16} {percent:>3}% {wide_msg}";
/// A finished bar: who, then the outcome cut to fit.
const FINISHED: &str = "{prefix:16!} {wide_msg}";

/// One bar per set (and per peer on a host), with the names of the host's peers.
#[derive(Default)]
pub struct Bars {
    multi: Option<MultiProgress>,
    bars: HashMap<(ManifestKind, Option<u64>), ProgressBar>,
    names: HashMap<u64, String>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

fn kind_name(kind: ManifestKind) -> &'static str {
    match kind {
        ManifestKind::Pack => "pack",
        ManifestKind::Media => "media",
        ManifestKind::Stream => "stream",
    }
}

impl Bars {
    /// Prints a line of text above the bars.
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(m) if !self.bars.is_empty() => {
                let _ = m.println(line);
            }
            _ => println!("{line}"),
        }
    }

    /// Names the host's link `peer` (from the participant that joined on it).
    pub fn name_peer(&mut self, peer: u64, name: &str) {
        self.names.insert(peer, name.to_string());
    }

    /// Who a host's link is, for people.
    fn who(&self, peer: u64) -> String {
        self.names
            .get(&peer)
            .cloned()
            .unwrap_or_else(|| format!("follower {peer}"))
    }

    fn bar(&mut self, kind: ManifestKind, peer: Option<u64>, total: u64) -> &ProgressBar {
        let who = peer
            .map(|p| format!(" → {}", self.who(p)))
            .unwrap_or_default();
        let multi = self.multi.get_or_insert_with(MultiProgress::new);
        self.bars.entry((kind, peer)).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(total));
            bar.set_style(style(RUNNING));
            bar.set_prefix(format!("{}{who}", kind_name(kind)));
            bar
        })
    }

    /// A files event as a JSON object; on a host, `name` says whose link `peer` is.
    fn json(&self, ev: &FilesEvent) -> Value {
        let mut v = serde_json::to_value(ev).unwrap_or(Value::Null);
        if let Some(peer) = v.get("peer").and_then(Value::as_u64) {
            v["name"] = json!(self.names.get(&peer));
        }
        v
    }

    /// Shows one files event.
    pub fn show(&mut self, out: &Out, ev: &FilesEvent) {
        if out.json() {
            out.emit(self.json(ev), String::new);
            return;
        }
        match ev {
            FilesEvent::FilesProgress {
                kind,
                peer,
                progress,
            } => {
                let bar = self.bar(*kind, *peer, progress.bytes_total);
                bar.set_length(progress.bytes_total);
                bar.set_position(progress.bytes_done);
                bar.set_message(progress_words(progress));
            }
            FilesEvent::Done { kind, peer, .. } => {
                if let Some(bar) = self.bars.remove(&(*kind, *peer)) {
                    bar.set_style(style(FINISHED));
                    bar.finish_with_message("verified");
                } else {
                    let who = peer
                        .map(|p| format!(" by {}", self.who(p)))
                        .unwrap_or_default();
                    self.println(&format!("{} verified{who}", title(kind_name(*kind))));
                }
            }
            FilesEvent::Failed {
                kind,
                peer,
                code,
                message,
            } => {
                let text = format!("{} stopped: {message} ({code})", title(kind_name(*kind)));
                match self.bars.remove(&(*kind, *peer)) {
                    Some(bar) => {
                        bar.set_style(style(FINISHED));
                        bar.abandon_with_message(text);
                    }
                    None => self.println(&text),
                }
            }
            // The name only: the download directory is said once, and a full path would wrap.
            FilesEvent::FileReceived { path, .. } => self.println(&format!(
                "Received {}",
                path.file_name()
                    .unwrap_or(path.as_os_str())
                    .to_string_lossy()
            )),
            FilesEvent::StartGate { open, .. } => self.println(if *open {
                "Ready: every file of the session is here and verified"
            } else {
                "Waiting for the session's files before starting"
            }),
            FilesEvent::StreamReady { path, .. } => {
                self.println(&format!("Streamed score ready: {}", path.display()))
            }
            FilesEvent::StreamRemoved => self.println("Streamed score removed"),
        }
    }
}

/// `pack` → `Pack`.
fn title(word: &str) -> String {
    let mut c = word.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Sizes, rate and time left: `12.1 MB of 96.0 MB, 4.2 MB/s, 20 s left`.
fn progress_words(p: &ProgressView) -> String {
    let mut text = format!("{} of {}", bytes(p.bytes_done), bytes(p.bytes_total));
    if let Some(rate) = p.rate.filter(|&r| r > 0) {
        text.push_str(&format!(", {}/s", bytes(rate)));
    }
    if let Some(ms) = p.eta_ms.filter(|_| p.bytes_done < p.bytes_total) {
        text.push_str(&format!(", {} s left", ms.div_ceil(1000)));
    }
    text
}

/// A file command: the set, its files (or `None` to withdraw it), or a directory to list.
pub type FileCommand = (ManifestKind, Option<Vec<PathBuf>>, Option<PathBuf>);

/// A file command from a JSON line or a typed line, if `v` is one: `publish_pack {dir}`,
/// `publish_media {dir}`, `reset_media`, `stream {path}`, `clear_stream`.
pub fn parse(v: &Value) -> Option<FileCommand> {
    let path = |k: &str| v[k].as_str().map(PathBuf::from);
    match v["cmd"].as_str()? {
        "publish_pack" => Some((ManifestKind::Pack, None, path("dir"))),
        "publish_media" => Some((ManifestKind::Media, None, path("dir"))),
        "reset_media" => Some((ManifestKind::Media, None, None)),
        "stream" => Some((ManifestKind::Stream, path("path").map(|p| vec![p]), None)),
        "clear_stream" => Some((ManifestKind::Stream, None, None)),
        _ => None,
    }
}

/// Carries out a file command on `node`, reporting the result.
pub async fn run(out: &Out, node: &Node, (kind, paths, dir): FileCommand) -> bool {
    let result = match dir {
        Some(dir) => match lansync::node::list_files(&dir, kind) {
            Ok(paths) => node.publish(kind, Some(paths)).await,
            Err(e) => Err(e.into()),
        },
        None => node.publish(kind, paths).await,
    };
    match result {
        Ok(p) => {
            out.emit(
                json!({"event":"files_published","kind":kind,
                       "files":serde_json::to_value(&p.files).unwrap_or(Value::Null),
                       "stream":serde_json::to_value(&p.stream).unwrap_or(Value::Null)}),
                || match (&p.files.pack, &p.files.media, &p.stream) {
                    (_, _, Some(s)) if kind == ManifestKind::Stream => {
                        format!("streaming {} ({} bytes)", s.name, s.size)
                    }
                    (Some(pk), _, _) if kind == ManifestKind::Pack => {
                        format!(
                            "published the pack: {} bytes, hash {}",
                            pk.size,
                            &pk.hash[..12]
                        )
                    }
                    (_, Some(m), _) if kind == ManifestKind::Media => format!(
                        "published the media: {} files, {} bytes",
                        m.files_count, m.total_bytes
                    ),
                    _ => format!("{} withdrawn", kind_name(kind)),
                },
            );
            true
        }
        Err(e) => {
            out.error(e.code(), &e.to_string());
            false
        }
    }
}
