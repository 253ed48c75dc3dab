//! A remembered pair (PROTOCOL.md §6.1): the node of a pair with its record file, its dialer or
//! redial endpoint and its private mDNS advert (§10.3); resuming it with no code
//! ([`Pair::resume`]) and forgetting it.

use super::pair::{Pair, PairOptions, Prepared};
use super::pair_advert::{self, PairMdns};
use super::pair_redial::{pair_dialer, read_pair, RedialEndpoint, RECORD_FILE};
use super::state_files::random_seed;
use super::{Clock, Events, Node, NodeOptions};
use crate::session::{Event, Solo};
use crate::transport::Link;
use crate::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// What a pair starts with: its machine, the link of a pairing by codes (none on a resume), the
/// waiting side's endpoint, and whether the pair is remembered already (a resume).
pub(super) struct Launch {
    pub(super) machine: Solo,
    pub(super) link: Option<Link>,
    pub(super) redial: Option<RedialEndpoint>,
    pub(super) remembered: bool,
}

/// Starts the pair's node, wired to its record file, dialer or endpoint, mDNS and the network
/// watcher.
pub(super) fn launch(prepared: Prepared, launch: Launch) -> Pair {
    let Launch {
        machine,
        link,
        redial,
        remembered,
    } = launch;
    let cfg = prepared.solo;
    let dir = prepared.kept.as_ref().map(|d| d.path(RECORD_FILE));
    let state_dir = dir.as_ref().and_then(|p| p.parent()).map(Path::to_path_buf);
    let initiator = machine_is_initiator(&machine, cfg.initiator);
    let loopback = prepared.transport.loopback_only;
    let found: Arc<Mutex<Vec<SocketAddr>>> = Arc::default();
    let dialer = match (&dir, initiator) {
        (Some(record), true) => Some(pair_dialer(
            record.clone(),
            prepared.transport.clone(),
            (cfg.device_id.clone(), cfg.device_name.clone()),
            found.clone(),
        )),
        _ => None,
    };
    let (files, files_events) = match prepared.files {
        Some((f, e)) => (Some(f), Some(e)),
        None => (None, None),
    };
    let (node, session_events) = Node::spawn(
        machine,
        NodeOptions {
            dialer,
            record_path: dir.clone(),
            files: files.clone(),
        },
    );
    let port = redial.as_ref().map(|r| r.server.local_addr().port());
    if let Some(r) = &redial {
        let _ = r.node.set(node.clone());
    }
    if let Some(link) = link {
        node.add_link(link);
    }
    let watched = Arc::new(node.clone());
    let weak = Arc::downgrade(&watched);
    // An interface coming back (Wi-Fi rejoined, cable in) redials at once, not after the backoff.
    let netwatched = weak.clone();
    if let Err(e) = crate::netwatch::watch(move || match netwatched.upgrade() {
        Some(node) => {
            node.network_changed();
            true
        }
        None => false,
    }) {
        tracing::info!(%e, "no network change notifications; relying on the backoff");
    }
    let mdns: Arc<Mutex<Option<PairMdns>>> = Arc::default();
    let wants_mdns = match (&state_dir, loopback) {
        (Some(dir), false) => Some(Mdns {
            dir: dir.clone(),
            port: if initiator { None } else { port },
            found,
            node: weak,
            slot: mdns.clone(),
        }),
        _ => None,
    };
    if remembered {
        if let Some(m) = &wants_mdns {
            m.start();
        }
    }
    let session_events = watch_for_remembered(session_events, wants_mdns);
    Pair {
        node,
        events: Some(Events::merge(session_events, files_events)),
        files,
        sends: prepared.sends,
        device_id: cfg.device_id,
        state_dir,
        redial: redial.map(|r| r.server),
        mdns,
        _watched: watched,
    }
}

fn machine_is_initiator(machine: &Solo, configured: bool) -> bool {
    machine.record().map_or(configured, |r| r.initiator)
}

/// What starting the pair's mDNS needs: the waiting side advertises its endpoint's `port`, the
/// dialing side browses and pokes the node when the partner's advert appears.
struct Mdns {
    dir: PathBuf,
    port: Option<u16>,
    found: Arc<Mutex<Vec<SocketAddr>>>,
    node: Weak<Node>,
    slot: Arc<Mutex<Option<PairMdns>>>,
}

impl Mdns {
    /// Starts the advert or the browse, once the pair secret is on disk.
    fn start(&self) {
        let secret = match read_pair(&self.dir) {
            Ok(Some(rec)) => rec.pair_secret,
            _ => {
                tracing::warn!("the remembered pair cannot be read; no mDNS for it");
                return;
            }
        };
        let started = match self.port {
            Some(port) => pair_advert::advertise(&secret, port),
            None => {
                let node = self.node.clone();
                pair_advert::browse(&secret, self.found.clone(), move || {
                    if let Some(node) = node.upgrade() {
                        node.network_changed();
                    }
                })
            }
        };
        match started {
            Ok(m) => {
                let old = self
                    .slot
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .replace(m);
                drop(old);
            }
            Err(e) => tracing::warn!(%e, "no mDNS for the pair; only its last address is tried"),
        }
    }
}

/// Passes the session's events on, starting the pair's mDNS when the pair becomes remembered.
fn watch_for_remembered(
    mut events: mpsc::UnboundedReceiver<Event>,
    mdns: Option<Mdns>,
) -> mpsc::UnboundedReceiver<Event> {
    let Some(mdns) = mdns else {
        return events;
    };
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut started = mdns
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        while let Some(e) = events.recv().await {
            if !started && matches!(e, Event::PairRemembered { .. }) {
                started = true;
                // The record is written just before the event is told: give the file a moment.
                for _ in 0..20 {
                    if matches!(read_pair(&mdns.dir), Ok(Some(_))) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                mdns.start();
            }
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    rx
}

impl Pair {
    /// Resumes the pair remembered in `opts.state_dir` (no code): the device shows what it
    /// showed, the dialing side dials its partner at once, the waiting side listens and
    /// advertises (PROTOCOL.md §6.1, §10.3). [`Error::NothingToRejoin`] when the directory
    /// holds no pair; a bad record is moved aside and reported as an error, never replaced.
    pub async fn resume(mut opts: PairOptions) -> Result<Pair, Error> {
        let Some(dir) = opts.state_dir.clone() else {
            return Err(Error::InvalidArgument(
                "resuming a pair needs the state directory it was paired with".into(),
            ));
        };
        let record = read_pair(&dir)?.ok_or(Error::NothingToRejoin { dir: dir.clone() })?;
        // The bond is made: no half to send.
        opts.solo.bond_half = None;
        let mut prepared = Prepared::new(opts).await?;
        prepared.solo.bond_half = None;
        prepared.solo.partner_fingerprint = record.partner_fingerprint.clone();
        prepared.solo.pair_id = record.pair_id.clone();
        prepared.solo.initiator = record.initiator;
        let redial = match (
            &prepared.kept,
            record.initiator,
            &record.partner_fingerprint,
        ) {
            (Some(kept), false, Some(fp)) => {
                let r = RedialEndpoint::start(kept, &prepared.transport, fp.clone()).await?;
                prepared.solo.own_endpoints = r.endpoints.clone();
                Some(r)
            }
            _ => None,
        };
        let machine = Solo::restore(
            prepared.solo.clone(),
            record,
            Clock::new().now(),
            random_seed()?,
        );
        Ok(launch(
            prepared,
            Launch {
                machine,
                link: None,
                redial,
                remembered: true,
            },
        ))
    }

    /// Whether `state_dir` holds a remembered pair to [`resume`](Self::resume). Only looks: a
    /// bad record is moved aside (and reported) by `resume`.
    pub fn has_remembered(state_dir: &Path) -> bool {
        let path = state_dir.join(RECORD_FILE);
        std::fs::metadata(&path).is_ok_and(|m| m.len() < 1024 * 1024)
            && std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<crate::session::Record>(&b).ok())
                .is_some_and(|r| matches!(r, crate::session::Record::Solo(_)))
    }

    /// The name (else the id) of the partner remembered in `state_dir`, if any.
    pub fn remembered_partner(state_dir: &Path) -> Option<String> {
        let path = state_dir.join(RECORD_FILE);
        if !std::fs::metadata(&path).is_ok_and(|m| m.len() < 1024 * 1024) {
            return None;
        }
        let bytes = std::fs::read(&path).ok()?;
        let crate::session::Record::Solo(mut rec) = serde_json::from_slice(&bytes).ok()? else {
            return None;
        };
        rec.validate().ok()?;
        Some(if rec.partner_name.is_empty() {
            rec.partner_id
        } else {
            rec.partner_name
        })
    }

    /// Forgets the pair remembered in `state_dir` (its record is deleted; the device id and
    /// identity stay). `Ok(false)` when there was none.
    pub fn forget_in(state_dir: &Path) -> Result<bool, Error> {
        let path = state_dir.join(RECORD_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Says goodbye ([`close`](Self::close)), then forgets the pair: next time only new codes
    /// pair these devices.
    pub async fn forget(self) -> Result<bool, Error> {
        let dir = self.state_dir.clone();
        self.close().await;
        match dir {
            Some(dir) => Pair::forget_in(&dir),
            None => Ok(false),
        }
    }

    /// Whether the pair is remembered (its secret agreed and kept in the state directory).
    pub fn remembered(&self) -> bool {
        self.state_dir.as_deref().is_some_and(Pair::has_remembered)
    }

    /// The state directory, if the pair keeps one.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }
}
