//! The interactive part every role shares: commands in (keys or JSON lines on stdin), events
//! out (text or JSON lines on stdout), until quit, Ctrl-C, or the end of typed input.

mod input;
mod words;

pub use input::InputLines;

use crate::files_ui::{self, Bars};
use lansync::node::{FilesEvent, Node};
use lansync::protocol::{FollowMode, Parity, PlaybackOp, Rate};
use lansync::session::{Command, Event, FollowerState, LinkState, RoleState};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

pub use words::bytes;

/// How long a quitting follower waits for its goodbye (`LEAVE_SESSION`) to be sent.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);
/// After the goodbye is queued the node keeps the link 200 ms so queued messages leave: the
/// process stays that long, and a little more, before exiting.
const LEAVE_LINGER: Duration = Duration::from_millis(300);

/// Which keys make sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A solo device: pages, songs, layout.
    Solo,
    /// A choir master: pages, songs, end.
    Master,
    /// A choir follower: local pages, follow/free, leave.
    Follower,
}

impl Role {
    fn help(self) -> &'static str {
        match self {
            Role::Solo => "Keys: n / p: next / previous page, a number: go to that page (1 is the first), s NAME: song, odd / even: lead the layout, q: quit",
            Role::Master => "Keys: n / p: next / previous page, a number: go to that page (1 is the first), s NAME: song, pack DIR / media DIR: publish files, stream FILE / clear: streamed score, load NAME / play / pause / seek SECS / rate X / timer 90s: shared playback, e: end the session for everyone, q: stop hosting (the session can be resumed)",
            Role::Follower => "Keys: n / p / a number (1 is the first page): look at a page, f: follow / free, play / pause: ask the master (shared-pause mode), r: retry now, l: leave the session, q: leave and quit",
        }
    }

    /// One line of the keys used most, for the start (a 24-row terminal also shows a QR code).
    fn short_help(self) -> &'static str {
        match self {
            Role::Solo => "Keys: n / p, a page number, s SONG, q quit, h help",
            Role::Master => "Keys: n / p, a page number, s SONG, e end, q stop, h help",
            Role::Follower => "Keys: n / p, a page number, f follow / free, q leave, h help",
        }
    }

    /// The role's name in the `ready` event.
    fn name(self) -> &'static str {
        match self {
            Role::Solo => "solo",
            Role::Master => "master",
            Role::Follower => "follower",
        }
    }
}

/// Where a command's output goes: JSON lines (`--json`) or text for people.
pub struct Out {
    json: bool,
}

impl Out {
    /// JSON lines when `json`.
    pub fn new(json: bool) -> Out {
        Out { json }
    }

    /// Whether output is JSON lines.
    pub fn json(&self) -> bool {
        self.json
    }

    /// One event: `v` as a JSON line, or `human()` as text.
    pub fn emit(&self, v: Value, human: impl FnOnce() -> String) {
        if self.json {
            println!("{v}");
        } else {
            println!("{}", human());
        }
    }

    /// The first line of every role: `{"event":"ready","version":…,"role":…,"page_base":0}` (pages
    /// in JSON count from 0), with the state directory when there is one; people see the state
    /// directory only.
    pub fn ready(&self, role: Role, state_dir: Option<&Path>) {
        let dir = state_dir.map(|d| d.display().to_string());
        if self.json {
            let mut v = json!({"event":"ready","version":env!("CARGO_PKG_VERSION"),
                               "role":role.name(),"page_base":0});
            if let Some(dir) = &dir {
                v["state_dir"] = json!(dir);
            }
            println!("{v}");
        } else if let Some(dir) = dir {
            println!("State kept in {dir}");
        }
    }

    /// An `error` event with a stable code.
    pub fn error(&self, code: &str, message: &str) {
        self.emit(
            json!({"event":"error","code":code,"message":message}),
            || format!("error ({code}): {message}"),
        );
    }
}

/// Reports a state record found unusable at start (moved aside; the program goes on without it).
pub fn bad_record(out: &Out, bad: &lansync::node::BadRecord) {
    out.emit(
        json!({"event":"error","code":"bad-record","message":bad.to_string(),
               "path":bad.path.display().to_string(),"problem":bad.problem,
               "moved_to":bad.moved_to.as_ref().map(|p| p.display().to_string())}),
        || format!("{bad}."),
    );
}

/// What the keyboard loop remembers between lines.
struct Keys {
    role: Role,
    page: u32,
    mode: FollowMode,
}

/// What a line of input asks for.
enum Line {
    Session(Command),
    Files(files_ui::FileCommand),
    Help,
    Quit,
}

/// Runs until quit or the node stops: commands in, events out (file events too, when the
/// node has a file service). Quitting — `q`, `{"cmd":"quit"}`, Ctrl-C, or the end of input
/// typed at a terminal (Ctrl-D) — says goodbye first: a follower leaves the session
/// (`LEAVE_SESSION`, PROTOCOL.md §6.2) so the master sees it at once; a master only stops, and
/// its session stays resumable. Input that is not a terminal (a pipe, `/dev/null`) may end
/// without quitting: a sidecar may close stdin and just watch.
pub async fn session(
    out: &Out,
    node: Node,
    mut events: UnboundedReceiver<Event>,
    mut files: Option<UnboundedReceiver<FilesEvent>>,
    mut stdin: InputLines,
    role: Role,
) -> bool {
    let mut bars = Bars::default();
    let mut files_ok = true;
    let mut keys = Keys {
        role,
        page: 0,
        mode: FollowMode::Follow,
    };
    // The master's link that opened last: the next `participant_joined` names it.
    let mut newest_link = None;
    // A follower in no session has nobody to say goodbye to.
    let mut in_session = role != Role::Follower;
    let mut stdin_open = true;
    let typed = std::io::stdin().is_terminal();
    let ctrl_c = interrupted();
    tokio::pin!(ctrl_c);
    if !out.json {
        println!("{}", role.short_help());
    }
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            line = stdin.next_line(), if stdin_open => {
                let line = match line {
                    Some(Ok(line)) => line,
                    Some(Err(bad)) => {
                        out.error("bad-command", &bad.message());
                        continue;
                    }
                    None if typed => break,
                    None => {
                        stdin_open = false; // keep running: a sidecar may close stdin and just watch
                        continue;
                    }
                };
                match keys.parse(out.json, &line) {
                    Ok(Line::Session(cmd)) => {
                        if node.command(cmd).is_err() {
                            return false;
                        }
                    }
                    Ok(Line::Files(cmd)) => {
                        files_ui::run(out, &node, cmd).await;
                    }
                    Ok(Line::Quit) => break,
                    Ok(Line::Help) => bars.println(&format!("{}.", role.help())),
                    Err(msg) => out.error("bad-command", &msg),
                }
            }
            ev = recv_files(&mut files) => match ev {
                Some(ev) => {
                    files_ok = !matches!(ev, FilesEvent::Failed { .. });
                    bars.show(out, &ev);
                }
                // The file service ended its events (a one-off send or receive is over).
                None => return files_ok,
            },
            ev = events.recv() => {
                let Some(ev) = ev else { return true };
                match &ev {
                    Event::Page { page, .. } => keys.page = *page,
                    Event::FollowMode { mode } => keys.mode = *mode,
                    Event::State { state, .. } => {
                        in_session = *state != RoleState::Follower(FollowerState::IdleLocal)
                    }
                    Event::Link { peer, state: LinkState::Connected } => newest_link = Some(*peer),
                    Event::ParticipantJoined(p) => {
                        if let Some(peer) = newest_link.take() {
                            bars.name_peer(peer, if p.name.is_empty() { &p.id } else { &p.name });
                        }
                    }
                    _ => {}
                }
                show(out, &bars, &ev, role);
            }
        }
    }
    goodbye(out, &node, &mut events, role, in_session).await;
    true
}

/// Ctrl-C (SIGINT), listened for from this call on — not from the first poll, so one that comes
/// while the key line is printed is not lost to the default handler (which kills the process).
fn interrupted() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let sigint = signal(SignalKind::interrupt());
        async move {
            match sigint {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One session event: a JSON line, or words (above the progress bars) when there are any.
fn show(out: &Out, bars: &Bars, ev: &Event, role: Role) {
    if out.json {
        out.emit(serde_json::to_value(ev).unwrap_or(Value::Null), String::new);
    } else if let Some(text) = words::describe(ev, role) {
        bars.println(&text);
    }
}

/// What quitting does besides stopping: a follower leaves the session (and waits, briefly, for
/// the goodbye to go out); a master says how to resume.
async fn goodbye(
    out: &Out,
    node: &Node,
    events: &mut UnboundedReceiver<Event>,
    role: Role,
    in_session: bool,
) {
    match role {
        Role::Follower if !in_session => {
            out.emit(json!({"event":"quit","left":false}), || "Bye.".into())
        }
        Role::Follower => {
            // A stopped node has no link left to say goodbye on.
            if node.command(Command::Leave).is_ok() {
                let left = async {
                    while let Some(ev) = events.recv().await {
                        if matches!(
                            &ev,
                            Event::State {
                                state: RoleState::Follower(FollowerState::IdleLocal),
                                ..
                            }
                        ) {
                            return;
                        }
                    }
                };
                let _ = tokio::time::timeout(LEAVE_TIMEOUT, left).await;
                tokio::time::sleep(LEAVE_LINGER).await;
            }
            out.emit(json!({"event":"quit","left":true}), || {
                "You left the session. To come back, join again with its link or code.".into()
            });
        }
        Role::Master => out.emit(json!({"event":"quit","resumable":true}), || {
            "Stopped hosting; the session is not ended. Run `lansync host` again with the same \
             state directory to resume it: followers rejoin by themselves. (`e` ends it for \
             everyone.)"
                .into()
        }),
        Role::Solo => {
            if out.json {
                out.emit(json!({"event":"quit"}), String::new);
            }
        }
    }
}

/// A typed playback key: `play`, `pause` (anyone; a follower's is a request), and for the
/// master `load NAME`, `seek SECS`, `rate X`, `timer 90s`.
fn playback_key(line: &str, role: Role) -> Result<Option<PlaybackOp>, String> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    let number = || {
        rest.parse::<f64>()
            .map_err(|_| format!("{word}: not a number: {rest:?}"))
    };
    Ok(Some(match (word, role) {
        ("play", _) => PlaybackOp::Play,
        ("pause", _) => PlaybackOp::Pause,
        ("load", Role::Master) => PlaybackOp::Load {
            media_id: rest.to_string(),
        },
        ("seek", Role::Master) => PlaybackOp::Seek {
            position_us: (number()?.max(0.0) * 1e6) as u64,
        },
        ("rate", Role::Master) => PlaybackOp::SetRate {
            rate: Rate::new(number()?),
        },
        ("timer", Role::Master) => PlaybackOp::Timer {
            duration_us: parse_duration(rest)?.as_micros() as u64,
            phase: String::new(),
        },
        _ => return Ok(None),
    }))
}

/// `90`, `90s`, `2m`, `1m30s`, `1h`: a duration for people.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("not a duration: {text:?} (try 90s, 2m, 1m30s)");
    let (mut total, mut digits) = (0u64, String::new());
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
    }
    if !digits.is_empty() {
        total += digits.parse::<u64>().map_err(|_| bad())?;
    }
    if total == 0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
}

/// The next file event; `None` once when the stream ends; never when there is none.
async fn recv_files(
    files: &mut Option<tokio::sync::mpsc::UnboundedReceiver<FilesEvent>>,
) -> Option<FilesEvent> {
    match files {
        Some(rx) => {
            let e = rx.recv().await;
            if e.is_none() {
                *files = None;
            }
            e
        }
        None => std::future::pending().await,
    }
}

impl Keys {
    /// One line of input as a command.
    fn parse(&self, json: bool, line: &str) -> Result<Line, String> {
        let line = line.trim();
        if json {
            let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
            if v["cmd"] == "quit" {
                return Ok(Line::Quit);
            }
            if let Some(cmd) = files_ui::parse(&v) {
                return Ok(Line::Files(cmd));
            }
            return serde_json::from_value(v)
                .map(Line::Session)
                .map_err(|e| format!("unknown command: {e}"));
        }
        if self.role == Role::Master {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            let v = match word {
                "pack" => Some(json!({"cmd":"publish_pack","dir":rest.trim()})),
                "media" => Some(json!({"cmd":"publish_media","dir":rest.trim()})),
                "stream" => Some(json!({"cmd":"stream","path":rest.trim()})),
                "clear" => Some(json!({"cmd":"clear_stream"})),
                _ => None,
            };
            if let Some(cmd) = v.as_ref().and_then(files_ui::parse) {
                return Ok(Line::Files(cmd));
            }
        }
        if let Some(op) = playback_key(line, self.role)? {
            return Ok(Line::Session(Command::Playback(op)));
        }
        let page = self.page;
        let cmd = match (line, self.role) {
            ("q" | "quit", _) => return Ok(Line::Quit),
            ("h" | "help" | "?", _) => return Ok(Line::Help),
            ("r" | "retry", _) => Command::Retry,
            ("n" | "", _) => Command::SetPage {
                page: page.saturating_add(1),
            },
            ("p", _) => Command::SetPage {
                page: page.saturating_sub(1),
            },
            ("odd" | "even", Role::Solo) => Command::SetParity {
                leader: String::new(),
                parity: if line == "odd" {
                    Parity::Odd
                } else {
                    Parity::Even
                },
            },
            ("e", Role::Master) => Command::End,
            ("f", Role::Follower) => Command::SetFollowMode {
                mode: match self.mode {
                    FollowMode::Follow => FollowMode::Free,
                    FollowMode::Free => FollowMode::Follow,
                },
            },
            ("l", Role::Follower) => Command::Leave,
            (_, Role::Solo | Role::Master) if line.starts_with("s ") => Command::SetSong {
                song_id: line[2..].trim().to_string(),
            },
            // People count pages from 1; the session (and `--json`) from 0.
            _ => match line.parse::<u32>() {
                Ok(0) => return Err("pages count from 1: type 1 for the first page".into()),
                Ok(p) => Command::SetPage { page: p - 1 },
                Err(_) => return Err(format!("unknown key {line:?}. {}", self.role.help())),
            },
        };
        Ok(Line::Session(cmd))
    }
}

/// The front door's one stream as the console reads it: session events and file events apart
/// (the file events end on their own when a one-off send or receive is over).
pub fn split(
    mut events: lansync::Events,
) -> (UnboundedReceiver<Event>, UnboundedReceiver<FilesEvent>) {
    let (session_tx, session_rx) = tokio::sync::mpsc::unbounded_channel();
    let (files_tx, files_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            match e {
                lansync::AppEvent::Session(e) => {
                    let _ = session_tx.send(e);
                }
                lansync::AppEvent::Files(e) => {
                    let _ = files_tx.send(e);
                }
                lansync::AppEvent::Lagged { missed } => {
                    tracing::warn!(missed, "the console fell behind; events were dropped")
                }
            }
        }
    });
    (session_rx, files_rx)
}
