//! `lansync join`: a choir follower. Joins by the master's QR link, or by session code (found
//! with mDNS, plus a password if the session has one), or — with no argument — rejoins the
//! session stored in `--state-dir` by a previous run. Keeps its page when the master is gone and
//! rejoins by itself when it returns.

use crate::console::{self, Out, Role};
use crate::host::device_id as stable_device_id;
use lansync::discovery::{DiscoveredSession, Discovery};
use lansync::invite::JoinLink;
use lansync::node::{
    follower_dialer, load_record, Clock, DialError, DialFuture, Dialer, Files, FilesOptions,
    JoinTarget, Node, NodeOptions,
};
use lansync::protocol::FollowMode;
use lansync::session::{Command, Follower, FollowerConfig, JoinCredentials, Record};
use lansync::signaling::{self, SignalingError};
use lansync::transport::{self, TransportConfig};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a master's link may take to open after its answer arrived.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Options of `lansync join`.
#[derive(clap::Args, Clone)]
pub struct JoinArgs {
    /// The master's join link (from its QR code): `lansync://join?…`.
    link: Option<String>,
    /// Join by session code instead (the session is found with mDNS).
    #[arg(long)]
    code: Option<String>,
    /// The session's password, with `--code`.
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
    /// Where the membership is kept for automatic rejoin.
    #[arg(long = "state-dir", default_value = "lansync-join")]
    state_dir: PathBuf,
    /// Where the session's files are downloaded (default: `files` in the state directory).
    #[arg(long)]
    download: Option<PathBuf>,
    /// How long to look for a session code on the LAN, in seconds.
    #[arg(long = "mdns-timeout", default_value_t = 5)]
    mdns_timeout: u64,
}

/// Where the master was reached, kept beside the membership record.
#[derive(Serialize, Deserialize)]
struct SavedTarget {
    addr: SocketAddr,
    fingerprint: Option<String>,
}

/// Runs `lansync join`; returns whether it ended well.
pub async fn run(args: JoinArgs) -> bool {
    let out = Out::new(args.json);
    out.ready(Role::Follower, Some(&args.state_dir));
    match join(&args, &out).await {
        Ok(ok) => ok,
        Err((code, msg)) => {
            out.error(code, &msg);
            false
        }
    }
}

async fn join(args: &JoinArgs, out: &Out) -> Result<bool, (&'static str, String)> {
    let dir = &args.state_dir;
    std::fs::create_dir_all(dir).map_err(|e| ("state-dir", format!("{}: {e}", dir.display())))?;
    let record_path = dir.join("follower.json");
    let target_path = dir.join("target.json");
    let mut candidates = Vec::new();
    let (target, creds) = if let Some(link) = &args.link {
        let link = JoinLink::parse(link).map_err(|e| ("invalid-join-link", e.to_string()))?;
        let target = JoinTarget {
            addr: link.socket_addr(),
            fingerprint: Some(link.fingerprint.clone()),
        };
        let creds = JoinCredentials {
            token: Some(link.token.clone()),
            ..Default::default()
        };
        (target, Some(creds))
    } else if let Some(code) = &args.code {
        let known = read_target(&target_path).and_then(|t| t.fingerprint);
        let discovery = Discovery::new().map_err(|e| ("mdns-unavailable", e.to_string()))?;
        let found = discovery
            .find_all(code, Duration::from_secs(args.mdns_timeout))
            .await
            .map_err(|e| (e.code(), e.to_string()))?;
        candidates = code_candidates(found, known.as_deref());
        let first = *candidates.first().ok_or((
            "version-mismatch",
            "the session with this code speaks another protocol version: update lansync"
                .to_string(),
        ))?;
        if args.password.is_none() {
            out.emit(json!({"event":"open_session","message":OPEN_JOIN}), || {
                OPEN_JOIN.to_string()
            });
        }
        // Not stored yet: only a master whose answer verifies becomes the target.
        let target = JoinTarget {
            addr: first,
            fingerprint: None,
        };
        let creds = JoinCredentials {
            session_code: Some(code.clone()),
            password: args.password.clone(),
            ..Default::default()
        };
        (target, Some(creds))
    } else {
        // No link, no code: rejoin what a previous run stored.
        let saved = read_target(&target_path).ok_or((
            "missing-session-code",
            "give a join link or --code (no stored session to rejoin)".to_string(),
        ))?;
        let target = JoinTarget {
            addr: saved.addr,
            fingerprint: saved.fingerprint,
        };
        (target, None)
    };
    if candidates.is_empty() {
        save_target(&target_path, &target);
    }

    let mut cfg = FollowerConfig::new(stable_device_id(dir, "singer"));
    cfg.device_name = args.name.clone();
    if args.free {
        cfg.follow_mode = FollowMode::Free;
    }
    let mut seed = [0u8; 8];
    let _ = getrandom::fill(&mut seed);
    let seed = u64::from_le_bytes(seed);
    let stored = load_record(&record_path).unwrap_or_else(|bad| {
        console::bad_record(out, &bad);
        None
    });
    let machine = match (&creds, stored) {
        (None, Some(Record::Follower(rec))) => {
            Follower::restore(cfg.clone(), seed, Clock::new().now(), rec)
        }
        (None, _) => {
            return Err((
                "missing-session-code",
                "the stored session has ended; give a join link or --code".to_string(),
            ))
        }
        (Some(_), _) => Follower::new(cfg.clone(), seed),
    };
    let transport = TransportConfig {
        loopback_only: args.loopback,
        ..TransportConfig::default()
    };
    let mut files_opts = FilesOptions::new(cfg.device_id.clone());
    files_opts.download_dir = Some(args.download.clone().unwrap_or_else(|| dir.join("files")));
    let (files, files_events) = Files::spawn(files_opts);
    let opts = NodeOptions {
        files: Some(files),
        dialer: Some(if candidates.is_empty() {
            follower_dialer(
                target,
                transport,
                cfg.device_id.clone(),
                cfg.device_name.clone(),
            )
        } else {
            code_dialer(
                candidates,
                transport,
                (cfg.device_id.clone(), cfg.device_name.clone()),
                target_path,
            )
        }),
        record_path: Some(record_path),
    };
    let (node, events) = Node::spawn(machine, opts);
    // An interface coming back (Wi-Fi rejoined, cable in) redials at once, not after the backoff.
    let watcher = node.clone();
    if let Err(e) = lansync::netwatch::watch(move || watcher.network_changed()) {
        tracing::info!(%e, "no network change notifications; relying on the backoff");
    }
    if let Some(creds) = creds {
        let _ = node.command(Command::Join(creds));
    }
    let stdin = console::InputLines::stdin();
    Ok(console::session(out, node, events, Some(files_events), stdin, Role::Follower).await)
}

/// Said to a person joining by code without a password (PROTOCOL.md §9.6).
const OPEN_JOIN: &str = "Open session: joining by code without a password cannot tell the real \
master from an impostor on this network; ask the master for a password or its QR code.";

fn read_target(path: &Path) -> Option<SavedTarget> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn save_target(path: &Path, target: &JoinTarget) {
    let saved = SavedTarget {
        addr: target.addr,
        fingerprint: target.fingerprint.clone(),
    };
    let _ = std::fs::write(path, serde_json::to_vec(&saved).unwrap_or_default());
}

/// Every address of every advert of the code, those whose fingerprint hint matches the master
/// known from an earlier join first (the hint is unauthenticated: it only orders the tries).
fn code_candidates(mut found: Vec<DiscoveredSession>, known: Option<&str>) -> Vec<SocketAddr> {
    found.sort_by_key(|s| !known.is_some_and(|fp| s.matches_fingerprint(fp)));
    let mut addrs = Vec::new();
    for s in found.iter().filter(|s| s.is_compatible()) {
        for ip in &s.addrs {
            let addr = SocketAddr::new(*ip, s.port);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    addrs
}

/// A dialer for a join by code: tries every advertised master until one answers with a
/// verified answer (PROTOCOL.md §9.4), then keeps that one — its address and the fingerprint
/// the answer names — in `target_path` and for every later dial. An advert whose answer does
/// not verify, or that refuses, is skipped; the join is refused only if every master refused.
fn code_dialer(
    candidates: Vec<SocketAddr>,
    transport: TransportConfig,
    (device_id, device_name): (String, String),
    target_path: PathBuf,
) -> Dialer {
    let pinned: Arc<Mutex<Option<JoinTarget>>> = Arc::default();
    Box::new(move |creds: JoinCredentials| {
        let targets = match pinned.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(t) => vec![t],
            None => candidates
                .iter()
                .map(|addr| JoinTarget {
                    addr: *addr,
                    fingerprint: None,
                })
                .collect(),
        };
        let (cfg, pinned, path) = (transport.clone(), pinned.clone(), target_path.clone());
        let (id, name) = (device_id.clone(), device_name.clone());
        let fut: DialFuture = Box::pin(async move {
            let pending = transport::create_offer(&cfg)
                .await
                .map_err(|e| e.to_string())?;
            let (mut refused, mut failed) = (None, None);
            for t in &targets {
                let fp = t.fingerprint.as_deref();
                match signaling::request_join(t.addr, &creds, fp, &id, &name, pending.sdp()).await {
                    Ok(verified) => {
                        let target = JoinTarget {
                            addr: t.addr,
                            fingerprint: Some(verified.fingerprint),
                        };
                        save_target(&path, &target);
                        *pinned.lock().unwrap_or_else(|e| e.into_inner()) = Some(target);
                        let mut link = pending
                            .accept_answer(&verified.answer)
                            .await
                            .map_err(|e| e.to_string())?;
                        link.wait_open(OPEN_TIMEOUT)
                            .await
                            .map_err(|e| e.to_string())?;
                        return Ok(link);
                    }
                    Err(SignalingError::Rejected(reason)) => {
                        tracing::info!(addr = %t.addr, reason = reason.code(), "a master refused");
                        refused.get_or_insert(reason);
                    }
                    Err(SignalingError::BadBinding) => {
                        tracing::warn!(addr = %t.addr, "skipping an advert whose answer does not verify");
                    }
                    Err(e) => {
                        tracing::info!(addr = %t.addr, %e, "a master could not be asked");
                        failed.get_or_insert(e.to_string());
                    }
                }
            }
            Err(match (refused, failed) {
                (Some(reason), None) => DialError::Refused(reason),
                (_, Some(e)) => DialError::Failed(e),
                (None, None) => {
                    DialError::Failed("no advertised master gave a verified answer".into())
                }
            })
        });
        fut
    })
}
