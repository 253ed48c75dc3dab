//! The mDNS checks: a self-test on this device, and the other device's listener advert.
//!
//! Both use the throwaway service type [`SERVICE_TYPE`], never lansync's own
//! `_lansync._tcp.local.` (PROTOCOL.md §10), so `lansync sessions` never lists them.

use std::net::SocketAddr;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use serde_json::json;
use tokio::time::Instant;

use super::{Check, Status};

/// The doctor's service type: self-test adverts and `lansync doctor --listen`.
pub const SERVICE_TYPE: &str = "_lansync-doctor._udp.local.";

const FALLBACK: &str = "Join by QR link, or by typing the link the host shows \
                        (`lansync join 'lansync://join?…'`): it carries the host's address, so \
                        it needs no mDNS.";

fn random_hex() -> String {
    let mut b = [0u8; 6];
    // Only keeps names apart: a clock-based fallback is good enough.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        b.copy_from_slice(&t.to_be_bytes()[2..]);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A registered advert on its own daemon.
pub(crate) struct Advert {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Advert {
    /// Advertises `prefix-<random>` on every interface, addresses kept up to date.
    fn register(prefix: &str, port: u16) -> Result<Advert, mdns_sd::Error> {
        let daemon = ServiceDaemon::new()?;
        let tag = random_hex();
        let instance = format!("{prefix}-{tag}");
        let host = format!("ldoctor-{tag}.local.");
        let info = ServiceInfo::new(SERVICE_TYPE, &instance, &host, (), port, &[("v", "1")][..])?
            .enable_addr_auto();
        let fullname = info.get_fullname().to_string();
        daemon.register(info)?;
        Ok(Advert { daemon, fullname })
    }

    /// The listener's advert (`listen-<random>`) on `port`.
    pub(crate) fn start(port: u16) -> Result<Advert, mdns_sd::Error> {
        Advert::register("listen", port)
    }

    /// Unregisters (a goodbye goes out) and stops the daemon.
    pub(crate) async fn stop(self) {
        if let Ok(rx) = self.daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(Duration::from_millis(500), rx.recv_async()).await;
        }
        let _ = self.daemon.shutdown();
    }
}

/// The `mdns` check when there is no network to test it on, and the `peer_mdns` one.
pub(crate) fn skipped() -> Check {
    Check::new("mdns", Status::Warning, "mDNS was not tested: no network.")
        .action("Connect to the Wi-Fi the other devices use.")
}

pub(crate) fn peer_skipped() -> Check {
    Check::new(
        "peer_mdns",
        Status::Warning,
        "The other device's mDNS advert was not looked for: no network.",
    )
    .action("Connect to the Wi-Fi the other devices use.")
}

/// The `peer_mdns` check when the listener answered neither TCP nor UDP: its advert missing
/// then says nothing about multicast.
pub(crate) fn peer_unjudged(peer: SocketAddr) -> Check {
    Check::new(
        "peer_mdns",
        Status::Warning,
        format!(
            "Whether mDNS crosses the network is unknown: no `lansync doctor --listen` answered at {peer}."
        ),
    )
    .action("Fix the address first (see above), then run the doctor again.")
}

/// Advertises a throwaway service from one daemon and browses for it from a second one, up to
/// `wait`; with `peer`, also looks for the advert of the listener at that address and port.
pub(crate) async fn run(wait: Duration, peer: Option<SocketAddr>) -> (Check, Option<Check>) {
    let start = Instant::now();
    let (seen_self, seen_peer) = match browse(start, wait, peer).await {
        Ok(seen) => seen,
        Err(e) => {
            let own = Check::new(
                "mdns",
                Status::Warning,
                format!("mDNS could not start on this device ({e})."),
            )
            .action(FALLBACK);
            return (own, peer.map(|_| peer_check(None, false, wait)));
        }
    };
    let wait_ms = wait.as_millis() as u64;
    let own = match seen_self {
        Some(t) => Check::new(
            "mdns",
            Status::Ok,
            format!(
                "mDNS works on this device: a test advert came back in {} ms.",
                t.as_millis()
            ),
        ),
        None => Check::new(
            "mdns",
            Status::Warning,
            format!(
                "mDNS does not work on this device: a test advert did not come back within {:.1} s, so multicast is filtered or off here.",
                wait.as_secs_f64()
            ),
        )
        .action(format!(
            "{FALLBACK} To fix mDNS, allow UDP port 5353 and multicast (224.0.0.251) in this device's firewall."
        )),
    }
    .facts(json!({"seen": seen_self.is_some(), "elapsed_ms": seen_self.map(|t| t.as_millis() as u64), "wait_ms": wait_ms}));
    (
        own,
        peer.map(|_| peer_check(seen_peer, seen_self.is_some(), wait)),
    )
}

fn peer_check(seen: Option<Duration>, self_ok: bool, wait: Duration) -> Check {
    let facts = json!({"seen": seen.is_some(), "elapsed_ms": seen.map(|t| t.as_millis() as u64),
                       "wait_ms": wait.as_millis() as u64});
    match seen {
        Some(t) => Check::new(
            "peer_mdns",
            Status::Ok,
            format!(
                "The other device's mDNS advert reached this device in {} ms: sessions can be found by code.",
                t.as_millis()
            ),
        ),
        None if self_ok => Check::new(
            "peer_mdns",
            Status::Warning,
            format!(
                "The other device's mDNS advert did not reach this device within {:.1} s: the network likely filters multicast between devices (common on guest and office Wi-Fi).",
                wait.as_secs_f64()
            ),
        )
        .action(FALLBACK),
        None => Check::new(
            "peer_mdns",
            Status::Warning,
            "The other device's mDNS advert did not reach this device, and mDNS does not work here either.",
        )
        .action(FALLBACK),
    }
    .facts(facts)
}

/// `(self advert seen after, peer advert seen after)`.
async fn browse(
    start: Instant,
    wait: Duration,
    peer: Option<SocketAddr>,
) -> Result<(Option<Duration>, Option<Duration>), mdns_sd::Error> {
    let browser = ServiceDaemon::new()?;
    // Browse first, so the advert's first announcement is already heard.
    let events = match browser.browse(SERVICE_TYPE) {
        Ok(rx) => rx,
        Err(e) => {
            let _ = browser.shutdown();
            return Err(e);
        }
    };
    let advert = match Advert::register("self", 9) {
        Ok(a) => a,
        Err(e) => {
            let _ = browser.shutdown();
            return Err(e);
        }
    };
    let deadline = start + wait;
    let (mut seen_self, mut seen_peer) = (None, None);
    while seen_self.is_none() || (peer.is_some() && seen_peer.is_none()) {
        let event = match tokio::time::timeout_at(deadline, events.recv_async()).await {
            Ok(Ok(event)) => event,
            _ => break, // the deadline, or the daemon stopped
        };
        let ServiceEvent::ServiceResolved(info) = event else {
            continue;
        };
        if info.get_fullname().eq_ignore_ascii_case(&advert.fullname) {
            seen_self.get_or_insert(start.elapsed());
        } else if let Some(p) = peer {
            let at_peer = info.get_port() == p.port()
                && info
                    .get_addresses()
                    .iter()
                    .any(|a| a.to_ip_addr() == p.ip());
            if at_peer {
                seen_peer.get_or_insert(start.elapsed());
            }
        }
    }
    advert.stop().await;
    let _ = browser.shutdown();
    Ok((seen_self, seen_peer))
}
