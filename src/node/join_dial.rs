//! How a follower reaches its master: the target kept in the state directory, the candidates of a
//! join by code (every advert of the code, PROTOCOL.md §9.6, §10.1), and a dialer that tries them
//! in turn.

use super::{DialError, DialFuture, Dialer, JoinTarget};
use crate::discovery::DiscoveredSession;
use crate::session::JoinCredentials;
use crate::signaling::{self, SignalingError};
use crate::transport::{self, Link, TransportConfig};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a master's link may take to open after its answer arrived.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the master was reached, kept beside the membership record (`target.json`).
#[derive(Serialize, Deserialize)]
struct SavedTarget {
    addr: SocketAddr,
    fingerprint: Option<String>,
}

/// The target kept by an earlier run, if any.
pub(super) fn read_target(path: &Path) -> Option<JoinTarget> {
    let bytes = std::fs::read(path).ok()?;
    // A real target is well under a KiB: anything larger is not one of ours.
    if bytes.len() > 4096 {
        return None;
    }
    let saved: SavedTarget = serde_json::from_slice(&bytes).ok()?;
    Some(JoinTarget {
        addr: saved.addr,
        fingerprint: saved.fingerprint,
    })
}

/// Keeps the target for a later rejoin (best effort: without it only a new link or code joins).
pub(super) fn save_target(path: &Path, target: &JoinTarget) {
    let saved = SavedTarget {
        addr: target.addr,
        fingerprint: target.fingerprint.clone(),
    };
    if let Err(e) = std::fs::write(path, serde_json::to_vec(&saved).unwrap_or_default()) {
        tracing::warn!(%e, path = %path.display(), "cannot keep the master's address");
    }
}

/// Every address of every compatible advert of the code, those whose fingerprint hint matches
/// the master known from an earlier join first (the hint is unauthenticated: it only orders the
/// tries).
pub(super) fn code_candidates(
    mut found: Vec<DiscoveredSession>,
    known: Option<&str>,
) -> Vec<SocketAddr> {
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
pub(super) fn code_dialer(
    candidates: Vec<SocketAddr>,
    transport: TransportConfig,
    (device_id, device_name): (String, String),
    target_path: Option<PathBuf>,
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
            let verified = |target: &JoinTarget| {
                if let Some(path) = &path {
                    save_target(path, target);
                }
                *pinned.lock().unwrap_or_else(|e| e.into_inner()) = Some(target.clone());
            };
            let who = ("a master", "no advertised master gave a verified answer");
            first_verified(&cfg, &creds, (&id, &name), &targets, who, verified).await
        });
        fut
    })
}

/// Offers to each target in turn and takes the first answer that verifies (PROTOCOL.md §9.4):
/// `on_verified` hears that target (with the fingerprint its answer named), and the link is
/// returned once open. A target whose answer does not verify is skipped, one that refuses
/// remembered: the dial is refused only if every target refused, else it failed. `who` names the
/// peer in the logs and says what failed when no target answered at all.
pub(super) async fn first_verified(
    cfg: &TransportConfig,
    creds: &JoinCredentials,
    (id, name): (&str, &str),
    targets: &[JoinTarget],
    (who, none_verified): (&str, &str),
    on_verified: impl FnOnce(&JoinTarget),
) -> Result<Link, DialError> {
    let pending = transport::create_offer(cfg)
        .await
        .map_err(|e| e.to_string())?;
    let (mut refused, mut failed) = (None, None);
    for t in targets {
        let fp = t.fingerprint.as_deref();
        match signaling::request_join(t.addr, creds, fp, id, name, pending.sdp()).await {
            Ok(verified) => {
                on_verified(&JoinTarget {
                    addr: t.addr,
                    fingerprint: Some(verified.fingerprint),
                });
                let mut link = pending
                    .accept_answer(&verified.answer)
                    .await
                    .map_err(|e| e.to_string())?;
                link.wait_open(OPEN_TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(addr = %t.addr, "reached {who}");
                return Ok(link);
            }
            Err(SignalingError::Rejected(reason)) => {
                tracing::info!(addr = %t.addr, reason = reason.code(), "{who} refused");
                refused.get_or_insert(reason);
            }
            Err(SignalingError::BadBinding) => {
                tracing::warn!(addr = %t.addr, "skipping {who} whose answer does not verify");
            }
            Err(e) => {
                tracing::info!(addr = %t.addr, %e, "{who} could not be asked");
                failed.get_or_insert(e.to_string());
            }
        }
    }
    Err(match (refused, failed) {
        (Some(reason), None) => DialError::Refused(reason),
        (_, Some(e)) => DialError::Failed(e),
        (None, None) => DialError::Failed(none_verified.to_string()),
    })
}

/// Wraps a dialer so the facade hears why the latest dial failed (the node only tells the
/// machine that it did). A watch channel: it holds one value, so nothing piles up once the
/// facade stops listening.
pub(super) fn report_failures(
    mut inner: Dialer,
    failures: watch::Sender<Option<String>>,
) -> Dialer {
    Box::new(move |creds: JoinCredentials| {
        let dial = inner(creds);
        let failures = failures.clone();
        let fut: DialFuture = Box::pin(async move {
            let result = dial.await;
            if let Err(DialError::Failed(e)) = &result {
                failures.send_replace(Some(e.clone()));
            }
            result
        });
        fut
    })
}
