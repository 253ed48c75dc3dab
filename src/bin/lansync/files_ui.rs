//! Files in the terminal: progress bars (indicatif) for people, `files_*` JSON lines for
//! programs, and the file commands (`publish_pack`, `publish_media`, `stream`, …).

use crate::console::Out;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use lansync::node::{FilesEvent, Node};
use lansync::transfer::ManifestKind;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;

/// One bar per set (and per peer on a host).
#[derive(Default)]
pub struct Bars {
    multi: Option<MultiProgress>,
    bars: HashMap<(ManifestKind, Option<u64>), ProgressBar>,
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

    fn bar(&mut self, kind: ManifestKind, peer: Option<u64>, total: u64) -> &ProgressBar {
        let multi = self.multi.get_or_insert_with(MultiProgress::new);
        self.bars.entry((kind, peer)).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(total));
            let who = peer.map(|p| format!(" → peer {p}")).unwrap_or_default();
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{}{who}", kind_name(kind)));
            bar
        })
    }

    /// Shows one files event.
    pub fn show(&mut self, out: &Out, ev: &FilesEvent) {
        if out.json() {
            out.emit(serde_json::to_value(ev).unwrap_or(Value::Null), String::new);
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
            }
            FilesEvent::Done { kind, peer, .. } => {
                if let Some(bar) = self.bars.remove(&(*kind, *peer)) {
                    bar.finish_with_message("verified");
                } else {
                    self.println(&format!("{} verified", kind_name(*kind)));
                }
            }
            FilesEvent::Failed {
                kind,
                peer,
                code,
                message,
            } => {
                let text = format!("{} stopped ({code}): {message}", kind_name(*kind));
                match self.bars.remove(&(*kind, *peer)) {
                    Some(bar) => bar.abandon_with_message(text),
                    None => self.println(&text),
                }
            }
            FilesEvent::FileReceived { path, .. } => {
                self.println(&format!("received {}", path.display()))
            }
            FilesEvent::StartGate { open, .. } => self.println(if *open {
                "ready: every file of the session is here and verified"
            } else {
                "waiting for the session's files before starting"
            }),
            FilesEvent::StreamReady { path, .. } => {
                self.println(&format!("streamed score ready: {}", path.display()))
            }
            FilesEvent::StreamRemoved => self.println("streamed score removed"),
        }
    }
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
