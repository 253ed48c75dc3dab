//! `lansync join`: a choir follower. Joins by the master's QR link, or by session code (found
//! with mDNS, plus a password if the session has one), or — with no argument — rejoins the
//! session stored in `--state-dir` by a previous run. Keeps its page when the master is gone and
//! rejoins by itself when it returns.

use crate::console::{self, Out, Role};
use crate::host::device_id as stable_device_id;
use lansync::discovery::Discovery;
use lansync::invite::JoinLink;
use lansync::node::{
    follower_dialer, load_record, Clock, Files, FilesOptions, JoinTarget, Node, NodeOptions,
};
use lansync::protocol::FollowMode;
use lansync::session::{Command, Follower, FollowerConfig, JoinCredentials, Record};
use lansync::transport::TransportConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
        let discovery = Discovery::new().map_err(|e| ("mdns-unavailable", e.to_string()))?;
        let found = discovery
            .find(code, Duration::from_secs(args.mdns_timeout))
            .await
            .map_err(|e| (e.code(), e.to_string()))?;
        let ip = *found.addrs.first().ok_or((
            "session-not-found",
            "the session has no address".to_string(),
        ))?;
        let target = JoinTarget {
            addr: SocketAddr::new(ip, found.port),
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
        let saved: SavedTarget = std::fs::read(&target_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or((
                "missing-session-code",
                "give a join link or --code (no stored session to rejoin)".to_string(),
            ))?;
        let target = JoinTarget {
            addr: saved.addr,
            fingerprint: saved.fingerprint,
        };
        (target, None)
    };
    let saved = SavedTarget {
        addr: target.addr,
        fingerprint: target.fingerprint.clone(),
    };
    let _ = std::fs::write(&target_path, serde_json::to_vec(&saved).unwrap_or_default());

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
        dialer: Some(follower_dialer(
            target,
            transport,
            cfg.device_id.clone(),
            cfg.device_name.clone(),
        )),
        record_path: Some(record_path),
    };
    let (node, events) = Node::spawn(machine, opts);
    // An interface coming back (Wi-Fi rejoined, cable in) redials at once, not after the backoff.
    let watcher = node.clone();
    if let Err(e) = lansync::netwatch::watch(move || watcher.network_changed()) {
        tracing::info!(%e, "no network change notifications; relying on the backoff");
    }
    if let Some(creds) = creds {
        node.command(Command::Join(creds));
    }
    let stdin = console::InputLines::stdin();
    Ok(console::session(out, node, events, Some(files_events), stdin, Role::Follower).await)
}
