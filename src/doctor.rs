//! `lansync doctor`: why devices don't see each other (feature `native`).
//!
//! [`run`] makes a list of [`Check`]s, each with a [`Status`], one plain sentence and what to
//! do:
//! - `interfaces`: the addresses lansync would use (up, not loopback); none means no network;
//! - `mdns`: a throwaway service advertised by one mDNS daemon and browsed by a second one of
//!   this process, within a short deadline: does multicast work on this device?
//! - `firewall`: input rules of this device's firewall that drop or reject (read only);
//! - `join_endpoint` (given a join link): is a lansync host's join endpoint answering there?
//! - `peer_tcp`, `peer_udp`, `peer_mdns` (given the address of a [`Listener`] on the other
//!   device): TCP to it, UDP round trips and loss, and whether its mDNS advert reaches us;
//! - `isolation` (a peer was tested and nothing came back): a likely cause, as a hint.
//!
//! The [`Listener`] (`lansync doctor --listen`) answers the doctor's probes. Its UDP probe/echo
//! and TCP greeting ([`probe`]) are a diagnostic aid only, **not part of the session protocol**
//! of PROTOCOL.md: no lansync session ever sends or answers them.

mod firewall;
mod mdns;
mod net;
mod peer;
pub mod probe;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::invite::JoinLink;

pub use probe::{Listener, DEFAULT_PORT};

/// How a check came out; ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Something may get in the way, or a fallback is needed.
    Warning,
    /// This keeps devices from seeing each other.
    Problem,
}

/// One check's result. Field names are stable (`--json` prints them as they are).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// Which check: `interfaces`, `mdns`, `firewall`, `join_endpoint`, `peer_tcp`, `peer_udp`,
    /// `peer_mdns`, `isolation`.
    pub id: &'static str,
    /// The outcome.
    pub status: Status,
    /// One plain sentence for a person.
    pub message: String,
    /// What to do, when there is something to do.
    pub action: Option<String>,
    /// Measured values, per check (documented in README).
    pub facts: Value,
}

impl Check {
    fn new(id: &'static str, status: Status, message: impl Into<String>) -> Check {
        Check {
            id,
            status,
            message: message.into(),
            action: None,
            facts: Value::Object(Default::default()),
        }
    }

    fn action(mut self, action: impl Into<String>) -> Check {
        self.action = Some(action.into());
        self
    }

    fn facts(mut self, facts: Value) -> Check {
        self.facts = facts;
        self
    }
}

/// Every check of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The worst status of all checks.
    pub status: Status,
    /// The checks, in the order they are shown.
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        let status = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
        Report { status, checks }
    }

    /// Whether some check found a problem (the CLI then exits with status 1).
    pub fn has_problem(&self) -> bool {
        self.status == Status::Problem
    }

    /// The check with this id, if it ran.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// What [`run`] tests besides this device.
#[derive(Debug, Clone)]
pub struct Options {
    /// A host's join link: its join endpoint is tested over TCP and HTTP.
    pub join_link: Option<JoinLink>,
    /// The address of `lansync doctor --listen` on the other device: TCP, UDP and its mDNS
    /// advert are tested.
    pub peer: Option<SocketAddr>,
    /// How long to wait for mDNS adverts and for the last UDP echoes.
    pub wait: Duration,
    /// UDP probes sent to the peer.
    pub probes: u32,
}

impl Default for Options {
    /// No peer; a 3 s wait; 20 probes.
    fn default() -> Self {
        Options {
            join_link: None,
            peer: None,
            wait: Duration::from_secs(3),
            probes: 20,
        }
    }
}

/// Runs every check that `opts` calls for, concurrently; never fails (a check that cannot run
/// says so in its sentence). Must be called inside a tokio runtime.
pub async fn run(opts: &Options) -> Report {
    let interfaces = net::interfaces();
    let has_network = !interfaces.usable.is_empty();
    let wait = opts
        .wait
        .clamp(Duration::from_millis(100), Duration::from_secs(60));
    let probes = opts.probes.clamp(1, probe::MAX_PROBES);

    let mdns = async {
        if has_network {
            mdns::run(wait, opts.peer).await
        } else {
            (mdns::skipped(), opts.peer.map(|_| mdns::peer_skipped()))
        }
    };
    let endpoint = async {
        match &opts.join_link {
            Some(link) => Some(peer::join_endpoint(link.socket_addr()).await),
            None => None,
        }
    };
    let listener = async {
        match opts.peer {
            Some(addr) => {
                let (tcp, udp) = tokio::join!(
                    peer::listener_tcp(addr),
                    peer::listener_udp(addr, probes, wait)
                );
                Some((tcp, udp))
            }
            None => None,
        }
    };
    let (firewall, (mdns_self, mut mdns_peer), endpoint, listener) =
        tokio::join!(firewall::check(), mdns, endpoint, listener);
    if let (Some(peer), Some((tcp, udp))) = (opts.peer, &listener) {
        let reached = tcp.check.status == Status::Ok || udp.check.status != Status::Problem;
        if !reached && mdns_peer.as_ref().is_some_and(|c| c.status != Status::Ok) {
            mdns_peer = Some(mdns::peer_unjudged(peer));
        }
    }

    // Isolation: only when a peer was tested and nothing at all came back from it.
    let mut silent: Option<SocketAddr> = None;
    if let Some((addr, answered)) = endpoint.as_ref().map(|e| (e.addr, e.answered)) {
        if !answered {
            silent = Some(addr);
        }
    }
    if let Some((tcp, udp)) = &listener {
        if tcp.answered || udp.answered {
            silent = None;
        } else if silent.is_none() {
            silent = Some(tcp.addr);
        }
    }
    let isolation = match silent {
        Some(addr) => Some(peer::isolation(addr, &interfaces).await),
        None => None,
    };

    let mut checks = vec![interfaces.check, mdns_self, firewall];
    checks.extend(endpoint.map(|e| e.check));
    if let Some((tcp, udp)) = listener {
        checks.push(tcp.check);
        checks.push(udp.check);
    }
    checks.extend(mdns_peer);
    checks.extend(isolation);
    Report::new(checks)
}

/// This device's own state for a listener to show: its addresses and its firewall.
pub async fn local_checks() -> Vec<Check> {
    let interfaces = net::interfaces();
    vec![interfaces.check, firewall::check().await]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_status_wins_and_only_a_problem_fails() {
        let ok = Check::new("a", Status::Ok, "fine");
        let warn = Check::new("b", Status::Warning, "hm");
        let bad = Check::new("c", Status::Problem, "no");
        let r = Report::new(vec![ok.clone(), warn.clone()]);
        assert_eq!(r.status, Status::Warning);
        assert!(!r.has_problem());
        let r = Report::new(vec![warn, bad, ok]);
        assert!(r.has_problem());
        assert_eq!(r.check("c").map(|c| c.status), Some(Status::Problem));
        assert!(Report::new(Vec::new()).status == Status::Ok);
    }

    #[test]
    fn checks_serialise_with_their_stable_field_names() {
        let c = Check::new("peer_udp", Status::Problem, "lost").action("do this");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["id"], "peer_udp");
        assert_eq!(v["status"], "problem");
        assert_eq!(v["message"], "lost");
        assert_eq!(v["action"], "do this");
        assert!(v["facts"].is_object());
    }
}
