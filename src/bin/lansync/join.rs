//! `lansync join`: a choir follower, on [`lansync::Join`]. Joins by the master's QR link or by
//! session code (as the argument, with `--code`, or pasted on stdin), or — with nothing given —
//! rejoins the session stored in `--state-dir` by a previous run. A join that cannot succeed
//! (refused, unknown code, master unreachable) says why in one sentence and exits 1.

use crate::console::{self, InputLines, Out, Role};
use lansync::node::FilesEvent;
use lansync::protocol::FollowMode;
use lansync::session::{Event, FollowerConfig};
use lansync::transport::TransportConfig;
use lansync::{AppEvent, Error, Join, JoinHow, JoinOptions};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// Options of `lansync join`.
#[derive(clap::Args, Clone)]
pub struct JoinArgs {
    /// The master's join link (`lansync://join?…`, from its QR code) or its session code
    /// (`ABCD-EFGH`). Without it (and with nothing stored to rejoin) it is read from stdin.
    #[arg(value_name = "LINK_OR_CODE")]
    target: Option<String>,
    /// Join by session code (the session is found with mDNS).
    #[arg(long)]
    code: Option<String>,
    /// The session's password, with a session code.
    #[arg(long)]
    password: Option<String>,
    /// This device's name.
    #[arg(long, default_value = "Singer")]
    name: String,
    /// Start in free mode (navigate on your own; song changes still apply).
    #[arg(long)]
    free: bool,
    /// One JSON object per line on stdout; JSON commands on stdin.
    #[arg(long)]
    json: bool,
    /// Use only the loopback interface (master on this machine).
    #[arg(long)]
    loopback: bool,
    /// Where the membership is kept for automatic rejoin (default: `join` in this user's
    /// lansync data directory).
    #[arg(long = "state-dir")]
    state_dir: Option<PathBuf>,
    /// Where the session's files are downloaded (default: `files` in the state directory).
    #[arg(long)]
    download: Option<PathBuf>,
    /// How long to look for a session code on the LAN, in seconds.
    #[arg(long = "mdns-timeout", default_value_t = 5)]
    mdns_timeout: u64,
}

/// Said to a person joining by code without a password (PROTOCOL.md §9.6).
const OPEN_JOIN: &str = "Open session: joining by code without a password cannot tell the real \
master from an impostor on this network; ask the master for a password or its QR code.";

/// Asked when neither a link nor a code was given and nothing is stored.
const PROMPT: &str = "Paste the join link or session code:";

/// Runs `lansync join`; returns whether it ended well.
pub async fn run(args: JoinArgs) -> bool {
    let out = Out::new(args.json);
    // Held until the program ends.
    let held = match crate::state::claim(args.state_dir.as_ref(), "join") {
        Ok(held) => held,
        Err(e) => {
            report(&out, &e);
            return false;
        }
    };
    let dir = held.dir().to_path_buf();
    out.ready(Role::Follower, Some(&dir));
    // One reader for the whole run: what a pasted line leaves buffered stays for the session.
    let mut stdin = InputLines::stdin();
    let join = match start(&args, dir, &out, &mut stdin).await {
        Ok(join) => join,
        Err(e) => {
            report(&out, &e);
            return false;
        }
    };
    if let Some(bad) = join.bad_record() {
        console::bad_record(&out, bad);
    }
    let mut join = join;
    let (session, files) = split(join.events());
    let node = join.node().clone();
    // `join` lives until the console is done: it keeps the network watcher going.
    let ok = console::session(&out, node, session, Some(files), stdin, Role::Follower).await;
    drop(join);
    ok
}

async fn start(
    args: &JoinArgs,
    dir: PathBuf,
    out: &Out,
    stdin: &mut InputLines,
) -> Result<Join, Error> {
    let how = match (&args.target, &args.code) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidArgument(
                "give a join link or a session code, not both".into(),
            ))
        }
        (Some(text), None) => JoinHow::parse(text, args.password.clone())?,
        (None, Some(code)) => JoinHow::Code {
            code: code.clone(),
            password: args.password.clone(),
        },
        (None, None) if Join::has_stored_session(&dir) => JoinHow::Rejoin,
        (None, None) => read_how(out, stdin, args.password.clone())
            .await
            .ok_or(Error::NothingToRejoin { dir: dir.clone() })?,
    };
    if matches!(&how, JoinHow::Code { password: None, .. }) {
        out.emit(json!({"event":"open_session","message":OPEN_JOIN}), || {
            OPEN_JOIN.to_string()
        });
    }
    let mut follower = FollowerConfig::new(""); // the id kept in the state directory
    follower.device_name = args.name.clone();
    if args.free {
        follower.follow_mode = FollowMode::Free;
    }
    let opts = JoinOptions {
        follower,
        state_dir: Some(dir),
        download_dir: args.download.clone(),
        transport: TransportConfig {
            loopback_only: args.loopback,
            ..TransportConfig::default()
        },
        mdns_timeout: Duration::from_secs(args.mdns_timeout),
        ..JoinOptions::default()
    };
    Join::start(how, opts).await
}

/// Reads how to join from stdin: a pasted link or code (people), or a
/// `{"cmd":"join","code"|"link":…}` line (`--json`). A line that is neither is answered with
/// what is expected, and the next is read. `None` at the end of input.
async fn read_how(out: &Out, stdin: &mut InputLines, password: Option<String>) -> Option<JoinHow> {
    loop {
        if !out.json() {
            print!("{PROMPT} ");
            let _ = std::io::stdout().flush();
        }
        let Some(line) = stdin.next_line().await else {
            if !out.json() {
                println!(); // the end of input: what follows goes below the prompt
            }
            return None;
        };
        let line = match line {
            Ok(line) => line,
            Err(bad) => {
                out.error("bad-command", &bad.message());
                continue;
            }
        };
        let parsed = if out.json() {
            join_command(&line, password.clone())
        } else if line.trim().is_empty() {
            continue;
        } else {
            JoinHow::parse(&line, password.clone())
        };
        match parsed {
            Ok(how) => return Some(how),
            Err(e) => out.error(e.code(), &e.to_string()),
        }
    }
}

/// `{"cmd":"join","code":"ABCD-EFGH","password":"…"}` or `{"cmd":"join","link":"lansync://…"}`.
fn join_command(line: &str, password: Option<String>) -> Result<JoinHow, Error> {
    let expected = || {
        Error::InvalidArgument(
            "expected {\"cmd\":\"join\",\"code\":\"ABCD-EFGH\"} or {\"cmd\":\"join\",\"link\":\"lansync://join?…\"}"
                .into(),
        )
    };
    let v: Value = serde_json::from_str(line).map_err(|_| expected())?;
    if v["cmd"] != "join" {
        return Err(expected());
    }
    let password = v["password"].as_str().map(str::to_string).or(password);
    match (v["link"].as_str(), v["code"].as_str()) {
        (Some(link), None) if link.trim_start().starts_with("lansync:") => {
            JoinHow::parse(link, None)
        }
        (None, Some(code)) => match JoinHow::parse(code, password)? {
            how @ JoinHow::Code { .. } => Ok(how),
            _ => Err(expected()),
        },
        _ => Err(expected()),
    }
}

/// A failed join in one sentence, with its code. In `--json` a refusal is also told as the
/// `rejected` event a session reports.
fn report(out: &Out, e: &Error) {
    let reason = match e {
        Error::Rejected(reason) => Some(*reason),
        Error::PasswordRequired => Some(lansync::protocol::RejectReason::InvalidPassword),
        _ => None,
    };
    if let (Some(reason), true) = (reason, out.json()) {
        let rejected = serde_json::to_value(Event::Rejected { reason }).unwrap_or(Value::Null);
        out.emit(rejected, String::new);
    }
    let sentence = match e {
        Error::PasswordRequired => {
            "this session needs a password: ask the master for it and give it with --password"
                .to_string()
        }
        e => e.to_string(),
    };
    out.error(e.code(), &sentence);
}

/// The join's one stream as the console reads it: session events and file events apart.
fn split(
    mut events: lansync::Events,
) -> (
    mpsc::UnboundedReceiver<Event>,
    mpsc::UnboundedReceiver<FilesEvent>,
) {
    let (session_tx, session) = mpsc::unbounded_channel();
    let (files_tx, files) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            match e {
                AppEvent::Session(e) => {
                    let _ = session_tx.send(e);
                }
                AppEvent::Files(e) => {
                    let _ = files_tx.send(e);
                }
                AppEvent::Lagged { missed } => {
                    tracing::warn!(missed, "the console fell behind; events were dropped")
                }
            }
        }
    });
    (session, files)
}
