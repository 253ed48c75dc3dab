//! `lansync pair offer|answer`: solo pairing from codes alone, then page turns in step.
//!
//! Human mode prints a QR code and reads lines: `n` / `p` next / previous page, a number to go
//! there, `s NAME` to change song, `odd` / `even` to lead the layout, `q` to quit.
//! `--json` mode writes one JSON event per line on stdout and reads one JSON command per line on
//! stdin (`{"cmd":"answer","code":…}`, `{"cmd":"set_page","page":3}`, `{"cmd":"quit"}`, and every
//! other `Command` of the library).

use crate::console::{self, Out};
use lansync::invite::{self, CodeFormat, CodeKind};
use lansync::node::{Files, FilesEvent, FilesOptions, Node, NodeOptions};
use lansync::session::{Solo, SoloConfig};
use lansync::transfer::ManifestKind;
use lansync::transport::{self, Link, TransportConfig};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

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
    /// This device's stable id (default: random).
    #[arg(long)]
    id: Option<String>,
    /// Write codes in the lz-string format of JavaScript apps instead of the compact one.
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

/// `lansync pair …`
#[derive(clap::Subcommand, Clone)]
pub enum PairCmd {
    /// Create an invite code, wait for the answer code, then stay paired.
    Offer(PairArgs),
    /// Answer an invite code, then stay paired.
    Answer {
        /// The invite code (or a link containing it).
        code: String,
        #[command(flatten)]
        args: PairArgs,
    },
}

/// How long a silent link of a code pair is kept before the pair falls back to local mode.
const CODE_PAIR_PATIENCE: Duration = Duration::from_secs(300);

fn show_code(out: &Out, kind: CodeKind, code: &str) {
    let event = match kind {
        CodeKind::Offer => "invite",
        CodeKind::Answer => "answer",
    };
    out.emit(json!({"event":event,"code":code}), || {
        let what = match kind {
            CodeKind::Offer => "Invite code — scan or paste it on the other device",
            CodeKind::Answer => "Answer code — scan or paste it on the first device",
        };
        format!("{}\n{what}:\n{code}\n", invite::qr::qr_terminal(code))
    });
}

fn transport_config(args: &PairArgs) -> TransportConfig {
    TransportConfig {
        loopback_only: args.loopback,
        ice_servers: args.ice_servers.clone(),
        ..TransportConfig::default()
    }
}

fn encode(kind: CodeKind, sdp: &str, lz: bool) -> String {
    if lz {
        return invite::encode_lz(kind, sdp);
    }
    invite::encode_compact(kind, sdp).unwrap_or_else(|e| {
        tracing::warn!(%e, "compact code impossible, using lz-string");
        invite::encode_lz(kind, sdp)
    })
}

/// Both devices name the pair after the offer's DTLS fingerprint, which both of them know.
fn pair_id(offer_sdp: &str) -> String {
    let line = offer_sdp
        .lines()
        .find(|l| l.starts_with("a=fingerprint:"))
        .unwrap_or_default();
    let digest = Sha256::digest(line.trim().as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn random_id() -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    format!(
        "dev-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Runs `lansync pair …`; returns whether it ended well.
pub async fn run(cmd: PairCmd) -> bool {
    run_with_files(cmd, FileTransfer::default()).await
}

/// Runs a pairing that also sends or receives files (`lansync send` / `lansync receive`).
pub async fn run_with_files(cmd: PairCmd, transfer: FileTransfer) -> bool {
    let (args, offering) = match &cmd {
        PairCmd::Offer(a) => (a.clone(), true),
        PairCmd::Answer { args, .. } => (args.clone(), false),
    };
    let out = Out::new(args.json);
    out.ready(console::Role::Solo, None);
    let mut stdin = console::InputLines::stdin();
    let cfg = transport_config(&args);
    let paired = match cmd {
        PairCmd::Offer(_) => offer(&cfg, &args, &out, &mut stdin).await,
        PairCmd::Answer { code, .. } => answer(&cfg, &args, &out, &code).await,
    };
    let Some((mut link, pair)) = paired else {
        return false;
    };
    if let Err(e) = link.wait_open(Duration::from_secs(30)).await {
        out.error(
            "transport-unavailable",
            &format!("the link did not open: {e}"),
        );
        return false;
    }
    let mut solo_cfg = SoloConfig::new(args.id.clone().unwrap_or_else(random_id));
    solo_cfg.device_name = args.name.clone();
    solo_cfg.pair_id = pair;
    solo_cfg.initiator = offering;
    // A pair made from codes has no way to dial again, so a silent link is kept for as long as
    // ICE can still bring it back (a Wi-Fi outage, a device asleep) instead of being given up.
    solo_cfg.heartbeat.dead_after = CODE_PAIR_PATIENCE;
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let moves_files = !transfer.send.is_empty() || transfer.receive.is_some();
    let (files, files_events) = if moves_files {
        let mut opts = FilesOptions::new(solo_cfg.device_id.clone());
        opts.download_dir = transfer.receive.clone();
        let (f, e) = Files::spawn(opts);
        (Some(f), Some(e))
    } else {
        (None, None)
    };
    if let (Some(files), false) = (&files, transfer.send.is_empty()) {
        // A pair has no session snapshot to announce it in: the set is simply offered.
        if let Err(e) = files
            .publish(ManifestKind::Pack, Some(transfer.send.clone()))
            .await
        {
            out.error(e.code(), &e.to_string());
            return false;
        }
    }
    let (node, events) = Node::spawn(
        Solo::new(solo_cfg, u64::from_le_bytes(seed)),
        NodeOptions {
            files,
            ..NodeOptions::default()
        },
    );
    node.add_link(link);
    match files_events {
        // Sending or receiving: done when the set is verified on the receiving side.
        Some(fe) => {
            console::session(
                &out,
                node,
                events,
                Some(until_files_done(fe)),
                stdin,
                console::Role::Solo,
            )
            .await
        }
        None => console::session(&out, node, events, None, stdin, console::Role::Solo).await,
    }
}

/// How long a receiver stays after its files are verified, so its TRANSFER_DONE (already
/// queued) crosses the link before the process exits and closes it.
const LINGER: Duration = Duration::from_millis(500);

/// Forwards file events, ending the stream after the first verified or failed set so the
/// session (and the program) ends there.
fn until_files_done(
    mut events: tokio::sync::mpsc::UnboundedReceiver<FilesEvent>,
) -> tokio::sync::mpsc::UnboundedReceiver<FilesEvent> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            let last = matches!(e, FilesEvent::Done { .. } | FilesEvent::Failed { .. });
            let _ = tx.send(e);
            if last {
                tokio::time::sleep(LINGER).await;
                break;
            }
        }
    });
    rx
}

async fn offer(
    cfg: &TransportConfig,
    args: &PairArgs,
    out: &Out,
    stdin: &mut console::InputLines,
) -> Option<(Link, String)> {
    let pending = match transport::create_offer(cfg).await {
        Ok(p) => p,
        Err(e) => {
            out.error("transport-unavailable", &e.to_string());
            return None;
        }
    };
    let pair = pair_id(pending.sdp());
    show_code(
        out,
        CodeKind::Offer,
        &encode(CodeKind::Offer, pending.sdp(), args.lz),
    );
    loop {
        if !out.json() {
            println!("Paste the answer code and press Enter:");
        }
        let line = match stdin.next_line().await? {
            Ok(line) => line,
            Err(bad) => {
                out.error("bad-command", &bad.message());
                continue;
            }
        };
        let text = if out.json() {
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v["cmd"] == "answer" => v["code"].as_str().unwrap_or("").to_string(),
                Ok(v) if v["cmd"] == "quit" => return None,
                _ => {
                    out.error("bad-command", "expected {\"cmd\":\"answer\",\"code\":…}");
                    continue;
                }
            }
        } else {
            line
        };
        let answer = invite::decode(&text)
            .and_then(|inv| invite::expect_kind(&inv, CodeKind::Answer).map(|()| inv));
        match answer {
            Ok(inv) => {
                return match pending.accept_answer(&inv.sdp).await {
                    Ok(link) => Some((link, pair)),
                    Err(e) => {
                        out.error("invalid-answer", &e.to_string());
                        None
                    }
                };
            }
            // A wrong paste is not fatal: the offer stays valid, ask again.
            Err(e) => out.error(invite_error_code(&e), &e.to_string()),
        }
    }
}

async fn answer(
    cfg: &TransportConfig,
    args: &PairArgs,
    out: &Out,
    code: &str,
) -> Option<(Link, String)> {
    let inv = match invite::decode(code)
        .and_then(|inv| invite::expect_kind(&inv, CodeKind::Offer).map(|()| inv))
    {
        Ok(inv) => inv,
        Err(e) => {
            out.error(invite_error_code(&e), &e.to_string());
            return None;
        }
    };
    let pair = pair_id(&inv.sdp);
    // Answer in the format of the invite: a JavaScript app that sent lz reads lz back.
    let lz = args.lz || matches!(invite::code_format(code), Ok(CodeFormat::Lz));
    match transport::accept_offer(cfg, &inv.sdp).await {
        Ok((sdp, link)) => {
            show_code(out, CodeKind::Answer, &encode(CodeKind::Answer, &sdp, lz));
            Some((link, pair))
        }
        Err(e) => {
            out.error("invalid-invite", &e.to_string());
            None
        }
    }
}

fn invite_error_code(e: &invite::InviteError) -> &'static str {
    use invite::InviteError::*;
    match e {
        NotAnOffer => "not-an-offer",
        NotAnAnswer => "not-an-answer",
        BadChecksum => "bad-checksum",
        Truncated => "truncated-code",
        UnsupportedVersion(_) => "unsupported-code-version",
        _ => "invalid-code",
    }
}
