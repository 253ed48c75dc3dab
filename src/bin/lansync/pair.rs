//! `lansync pair offer|answer`, `send`, `receive`: solo pairing from codes alone (the library's
//! [`Pair`]), then page turns in step, or files. A pairing with a state directory (the default)
//! is remembered: `lansync pair` alone, on both devices, finds the partner again, and
//! `lansync pair --forget` drops it.
//!
//! Human mode prints the code to copy (shell-safe), a ready-to-paste command for the other
//! device and a QR code, and reads lines: `n` / `p` next / previous page, a number to go there,
//! `s NAME` to change song, `odd` / `even` to lead the layout, `q` to quit.
//! `--json` mode writes one JSON event per line on stdout and reads one JSON command per line on
//! stdin (`{"cmd":"answer","code":…}` on the offering side, `{"cmd":"invite","code":…}` on an
//! answering side started without a code, `{"cmd":"set_page","page":3}`, `{"cmd":"quit"}`, and
//! every other `Command` of the library). Whatever ends the session (`q`, the files verified,
//! the console's other exits), the partner is told this device left ([`Pair::close`]).

use crate::console::{self, Out};
use lansync::invite::{self, CodeKind};
use lansync::node::{FilesEvent, PairCode};
use lansync::session::Event;
use lansync::transport::TransportConfig;
use lansync::{AppEvent, CodeStyle, Error, Events, Pair, PairOptions};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

mod resume;
use resume::{resume, resume_command, said_bye, Teller};

/// Options shared by both sides of a pairing.
#[derive(clap::Args, Clone)]
pub struct PairArgs {
    /// One JSON object per line on stdout; JSON commands on stdin.
    #[arg(long)]
    json: bool,
    /// Use only the loopback interface (both devices on this machine).
    #[arg(long)]
    loopback: bool,
    /// This device's name.
    #[arg(long, default_value = "Tablet")]
    name: String,
    /// This device's stable id (default: the one kept in the state directory).
    #[arg(long)]
    id: Option<String>,
    /// Where this device keeps its id, its DTLS identity and the remembered pair (default: the
    /// per-user state directory).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Write codes in the lz-string format of JavaScript apps instead of the compact one. An
    /// lz invite is always answered in lz, with or without this flag (PROTOCOL.md §7).
    #[arg(long)]
    lz: bool,
    /// Optional STUN server(s), e.g. `stun:192.168.1.1:3478`; none by default.
    #[arg(long = "ice-server")]
    ice_servers: Vec<String>,
}

/// What a pairing moves besides pages: files to send once paired, or where received files go.
#[derive(Clone, Default)]
pub struct FileTransfer {
    /// Files to send to the partner (then exit once it has verified them).
    pub send: Vec<PathBuf>,
    /// Where files from the partner go (then exit once they are verified).
    pub receive: Option<PathBuf>,
}

/// `lansync pair [offer|answer CODE] [--forget]`: with no subcommand, resume the remembered
/// pair (or forget it).
#[derive(clap::Args, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PairCli {
    #[command(subcommand)]
    cmd: Option<PairCmd>,
    /// Forget the pair remembered in the state directory, then exit.
    #[arg(long)]
    forget: bool,
    #[command(flatten)]
    args: PairArgs,
}

/// `lansync pair offer|answer`
#[derive(clap::Subcommand, Clone)]
pub enum PairCmd {
    /// Create an invite code, wait for the answer code, then stay paired.
    Offer(PairArgs),
    /// Answer an invite code, then stay paired.
    ///
    /// The answer code is in the invite's format when the invite is lz (from a JavaScript app,
    /// which reads only lz), even without --lz; a compact invite is answered in compact, or in
    /// lz with --lz.
    Answer {
        /// The invite code (or a link containing it); read from the input when left out.
        code: Option<String>,
        #[command(flatten)]
        args: PairArgs,
    },
}

/// Runs `lansync pair …`; returns whether it ended well.
pub async fn run(cli: PairCli) -> bool {
    match cli.cmd {
        Some(cmd) => run_with_files(cmd, FileTransfer::default()).await,
        None if cli.forget => resume::forget(&cli.args),
        None => resume(&cli.args).await,
    }
}

/// What the other device runs with our invite code.
fn partner_command(transfer: &FileTransfer, code: &str, loopback: bool) -> String {
    let verb = if transfer.send.is_empty() {
        "pair answer"
    } else {
        "receive"
    };
    // A pairing on this machine only is answered on this machine only.
    let flag = if loopback { " --loopback" } else { "" };
    format!("lansync {verb}{flag} {}", shell_word(code))
}

/// `text` as one shell word: as it is when no character is special to a shell (the compact
/// code's text form, and lz codes as lansync writes them), else single-quoted.
pub fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-+:/,=@%".contains(c);
    if !text.is_empty() && !text.starts_with('-') && text.chars().all(plain) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn options(args: &PairArgs, transfer: &FileTransfer) -> PairOptions {
    let mut opts = PairOptions::default();
    opts.solo.device_id = args.id.clone().unwrap_or_default();
    opts.solo.device_name = args.name.clone();
    opts.state_dir = args
        .state_dir
        .clone()
        .or_else(|| lansync::node::default_state_dir("pair"));
    opts.transport = TransportConfig {
        loopback_only: args.loopback,
        ice_servers: args.ice_servers.clone(),
        ..TransportConfig::default()
    };
    opts.style = if args.lz {
        CodeStyle::Lz
    } else {
        CodeStyle::Compact
    };
    opts.send = transfer.send.clone();
    opts.receive_dir = transfer.receive.clone();
    // A one-off send or receive is not a pair to find again.
    opts.remember = transfer.send.is_empty() && transfer.receive.is_none();
    opts
}

/// Prints an error in one sentence (with the `--loopback` hint when the network is missing).
fn fail(out: &Out, e: &Error) {
    let mut message = e.to_string();
    if matches!(e, Error::NoNetwork) {
        message.push_str(", or pass --loopback to try both devices on this machine");
    }
    out.error(e.code(), &message);
}

fn show_code(out: &Out, kind: CodeKind, code: &PairCode, command: Option<&str>) {
    let event = match kind {
        CodeKind::Offer => "invite",
        CodeKind::Answer => "answer",
    };
    out.emit(
        json!({"event":event,"code":code.text(),"qr":code.qr(),"command":command}),
        || {
            let what = match kind {
                CodeKind::Offer => "Invite code — scan it, or copy it to the other device",
                CodeKind::Answer => "Answer code — scan it, or paste it on the first device",
            };
            // The QR first: on a short terminal the text to copy stays on screen, at the bottom.
            let mut text = format!(
                "{}{what}:\n  {}",
                invite::qr::qr_terminal_compact(code.qr()),
                code.text()
            );
            if let Some(cmd) = command {
                text.push_str(&format!("\nOn the other device run:  {cmd}"));
            }
            text
        },
    );
}

/// What a line of input says before pairing.
enum Said {
    Code(String),
    Quit,
    Other,
}

/// Reads one line before pairing: a code (`cmd` names the JSON command that carries it), a
/// quit, or something else (reported). `None`: the input ended.
async fn read_code(out: &Out, stdin: &mut console::InputLines, cmds: &[&str]) -> Option<Said> {
    let line = match stdin.next_line().await? {
        Ok(line) => line,
        Err(bad) => {
            out.error("bad-command", &bad.message());
            return Some(Said::Other);
        }
    };
    if !out.json() {
        return Some(match line.trim() {
            "q" | "quit" => Said::Quit,
            "" => Said::Other,
            // A code pasted with the quotes of a shell command around it.
            code => Said::Code(code.trim_matches(|c| c == '\'' || c == '"').to_string()),
        });
    }
    let said = match serde_json::from_str::<Value>(&line) {
        Ok(v) if v["cmd"] == "quit" => Said::Quit,
        Ok(v) if cmds.iter().any(|c| v["cmd"] == *c) => {
            Said::Code(v["code"].as_str().unwrap_or("").to_string())
        }
        _ => {
            let expected = format!(
                "expected {{\"cmd\":\"{}\",\"code\":…}} or {{\"cmd\":\"quit\"}}",
                cmds[0]
            );
            out.error("bad-command", &expected);
            Said::Other
        }
    };
    Some(said)
}

/// The end of the input before a code was given: Ctrl-D at a terminal quits; a script's input
/// that ended can give no code any more (a failure, said in one sentence).
fn input_ended(out: &Out, what: &str) -> bool {
    if std::io::stdin().is_terminal() {
        return true;
    }
    out.error(
        "bad-command",
        &format!("the input ended before {what} was given"),
    );
    false
}

/// How a pairing attempt ended before the session.
enum Start {
    Paired(Pair),
    /// Quit by the person (a success) or failed (reported).
    Over(bool),
}

/// Runs a pairing that also sends or receives files (`lansync send` / `lansync receive`).
pub async fn run_with_files(cmd: PairCmd, transfer: FileTransfer) -> bool {
    let (args, code) = match &cmd {
        PairCmd::Offer(a) => (a.clone(), None),
        PairCmd::Answer { args, code } => (args.clone(), Some(code.clone())),
    };
    let out = Out::new(args.json);
    // Held until the program ends: `send` and `receive` on one machine are two devices.
    let held = match crate::state::claim(args.state_dir.as_ref(), "pair") {
        Ok(held) => held,
        Err(e) => {
            fail(&out, &e);
            return false;
        }
    };
    let mut opts = options(&args, &transfer);
    opts.state_dir = Some(held.dir().to_path_buf());
    out.ready(console::Role::Solo, opts.state_dir.as_deref());
    let mut stdin = console::InputLines::stdin();
    let start = match code {
        None => offer(opts, &out, &mut stdin, &transfer).await,
        Some(code) => answer(code, opts, &out, &mut stdin).await,
    };
    let mut pair = match start {
        Start::Paired(pair) => pair,
        Start::Over(ok) => return ok,
    };
    let moves_files = !transfer.send.is_empty() || transfer.receive.is_some();
    let tell = pair.state_dir().map(|dir| Teller {
        out: Out::new(args.json),
        dir: dir.to_path_buf(),
        retry: resume_command(&args, dir),
        apart: false,
    });
    let (session, files) = split(pair.events(), moves_files, tell);
    let ok = console::session(
        &out,
        pair.node.clone(),
        session,
        files,
        stdin,
        console::Role::Solo,
    )
    .await;
    let remembered = pair.remembered();
    let dir = pair.state_dir().map(Path::to_path_buf);
    pair.close().await;
    if let Some(dir) = dir {
        said_bye(&out, remembered, &resume_command(&args, &dir));
    }
    ok
}

async fn offer(
    opts: PairOptions,
    out: &Out,
    stdin: &mut console::InputLines,
    transfer: &FileTransfer,
) -> Start {
    let loopback = opts.transport.loopback_only;
    let mut offer = match Pair::offer(opts).await {
        Ok(o) => o,
        Err(e) => {
            fail(out, &e);
            return Start::Over(false);
        }
    };
    let command = partner_command(transfer, offer.code().text(), loopback);
    show_code(out, CodeKind::Offer, offer.code(), Some(&command));
    loop {
        if !out.json() {
            println!("Paste the answer code here and press Enter (q to quit):");
        }
        let text = match read_code(out, stdin, &["answer"]).await {
            None => return Start::Over(input_ended(out, "an answer code")),
            Some(Said::Quit) => return Start::Over(true),
            Some(Said::Other) => continue,
            Some(Said::Code(text)) => text,
        };
        match offer.accept(&text).await {
            Ok(pair) => return Start::Paired(pair),
            // A wrong paste is not fatal: the offer stays valid, ask again.
            Err(e @ Error::Invite(_)) => fail(out, &e),
            Err(e) => {
                fail(out, &e);
                return Start::Over(false);
            }
        }
    }
}

async fn answer(
    code: Option<String>,
    opts: PairOptions,
    out: &Out,
    stdin: &mut console::InputLines,
) -> Start {
    let answer = match code {
        Some(code) => Pair::answer(&code, opts).await,
        None => loop {
            if !out.json() {
                println!("Paste the invite code and press Enter (q to quit):");
            }
            let text = match read_code(out, stdin, &["invite", "answer"]).await {
                None => return Start::Over(input_ended(out, "an invite code")),
                Some(Said::Quit) => return Start::Over(true),
                Some(Said::Other) => continue,
                Some(Said::Code(text)) => text,
            };
            match Pair::answer(&text, opts.clone()).await {
                // A wrong paste: ask again.
                Err(e @ Error::Invite(_)) => fail(out, &e),
                other => break other,
            }
        },
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            fail(out, &e);
            return Start::Over(false);
        }
    };
    show_code(out, CodeKind::Answer, answer.code(), None);
    if !out.json() {
        println!("Waiting for the first device to take the answer code (q to quit)…");
    }
    // The person may give up while the link opens: the input is read meanwhile. Its end
    // quits only when typed at a terminal (Ctrl-D); a script may give the code as an argument
    // and no input at all (the open deadline still bounds the wait).
    let typed = std::io::stdin().is_terminal();
    let mut reading = true;
    let opening = answer.open();
    tokio::pin!(opening);
    loop {
        tokio::select! {
            opened = &mut opening => return match opened {
                Ok(pair) => Start::Paired(pair),
                Err(e) => {
                    fail(out, &e);
                    Start::Over(false)
                }
            },
            said = read_code(out, stdin, &["quit"]), if reading => match said {
                Some(Said::Quit) => return Start::Over(true),
                None if typed => return Start::Over(true),
                None => reading = false,
                Some(_) => out.error("bad-command", "not paired yet: wait for the link, or quit"),
            },
        }
    }
}

/// How long a receiver stays after its files are verified, so its TRANSFER_DONE (already
/// queued) crosses the link before the session ends.
const LINGER: Duration = Duration::from_millis(500);

/// The console's two streams from the pair's one. When files move, the file stream ends after
/// the first verified or failed set, so the session (and the program) ends there.
fn split(
    mut events: Events,
    moves_files: bool,
    mut tell: Option<Teller>,
) -> (
    mpsc::UnboundedReceiver<Event>,
    Option<mpsc::UnboundedReceiver<FilesEvent>>,
) {
    let (stx, srx) = mpsc::unbounded_channel();
    let (ftx, frx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut files = Some(ftx);
        while let Some(e) = events.recv().await {
            match e {
                AppEvent::Session(e) => {
                    let e = match &mut tell {
                        Some(t) => t.tell(e),
                        None => Some(e),
                    };
                    if let Some(e) = e {
                        let _ = stx.send(e);
                    }
                }
                AppEvent::Files(e) => {
                    let last = moves_files
                        && matches!(e, FilesEvent::Done { .. } | FilesEvent::Failed { .. });
                    if let Some(tx) = &files {
                        let _ = tx.send(e);
                    }
                    if last {
                        tokio::time::sleep(LINGER).await;
                        files = None;
                    }
                }
                AppEvent::Lagged { missed } => {
                    tracing::warn!(missed, "events dropped: the console fell behind")
                }
            }
        }
    });
    (srx, Some(frx))
}
