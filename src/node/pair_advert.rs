//! The private mDNS advert of a remembered pair (PROTOCOL.md §10.3): the waiting side publishes
//! its redial endpoint under an instance name only the partner can recognise (it changes every
//! hour and is derived from the pair secret), the dialing side browses for it and is told when
//! its partner appears (or restarted: a new boot nonce), so it redials at once.
//!
//! The name and TXT rules are pure functions (unit-tested); the two small tasks around an
//! `mdns-sd` daemon carry them out.

use hmac::{Hmac, Mac};
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;

/// The DNS-SD service type of a pair's redial endpoint: separate from the sessions' type, so
/// `lansync sessions` never lists it.
pub const PAIR_SERVICE_TYPE: &str = "_lansync-pair._udp.local.";
/// The label of the instance name's HMAC.
const ADVERT_LABEL: &[u8] = b"lansync pair advert\0";
/// How long one instance name is used.
const WINDOW_SECS: u64 = 3600;
/// Most addresses kept from one advert.
const MAX_ADDRS: usize = 8;
/// How often the advertising side checks its addresses, in seconds (mdns-sd's default is 5).
const ADDRESS_CHECK_SECS: u32 = 1;

/// The instance name for the hour window `window` (`unix_seconds / 3600`): the first 16 hex
/// digits of HMAC-SHA256 keyed with the pair secret's 32 hex digits (ASCII) over
/// `"lansync pair advert\0" ‖ decimal(window)`.
pub fn instance_name(pair_secret: &str, window: u64) -> String {
    let key = pair_secret.to_ascii_lowercase();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(ADVERT_LABEL);
    mac.update(window.to_string().as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..8])
}

/// The hour window of `unix_secs`.
pub fn window_of(unix_secs: u64) -> u64 {
    unix_secs / WINDOW_SECS
}

/// Whether `instance` (the instance label, or a full name under [`PAIR_SERVICE_TYPE`]) is the
/// pair's name of the current, previous or next window (clocks of two tablets may disagree).
pub fn is_partner_instance(instance: &str, pair_secret: &str, unix_secs: u64) -> bool {
    // DNS names compare case-insensitively.
    let instance = instance.to_ascii_lowercase();
    let label = instance
        .strip_suffix(PAIR_SERVICE_TYPE)
        .map(|l| l.trim_end_matches('.'))
        .unwrap_or(&instance);
    // Another device advertising the same name (an impostor copying it off the air) makes the
    // partner's mDNS rename its own instance `NAME (2)` (RFC 6763 §4.1, conflict resolution):
    // still the partner's, so the suffix is ignored — the dial proves who answers.
    let label = strip_conflict_suffix(label);
    if label.len() != 16 {
        return false;
    }
    let now = window_of(unix_secs);
    [now.saturating_sub(1), now, now + 1]
        .iter()
        .any(|w| label.eq_ignore_ascii_case(&instance_name(pair_secret, *w)))
}

/// `NAME (N)` → `NAME`, for a decimal `N` of at most 4 digits; anything else unchanged.
fn strip_conflict_suffix(label: &str) -> &str {
    let Some(open) = label.rfind(" (") else {
        return label;
    };
    let n = &label[open + 2..];
    match n.strip_suffix(')') {
        Some(d) if (1..=4).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) => {
            &label[..open]
        }
        _ => label,
    }
}

/// The TXT of a pair advert: `v=1`, `b=<boot nonce>`.
pub fn txt(boot_nonce: &str) -> Vec<(&'static str, String)> {
    vec![("v", "1".into()), ("b", boot_nonce.to_string())]
}

/// The boot nonce of a TXT read from the network, when it is a version-1 pair advert: `b` must be
/// 8 hex digits. `txt(key)` returns the raw value of a key.
pub fn parse_txt<'a>(txt: impl Fn(&str) -> Option<&'a [u8]>) -> Option<String> {
    if txt("v")? != b"1" {
        return None;
    }
    let b = txt("b")?;
    (b.len() == 8 && b.iter().all(u8::is_ascii_hexdigit))
        .then(|| String::from_utf8_lossy(b).to_ascii_lowercase())
}

/// A new random boot nonce (8 hex digits), one per process start.
pub fn boot_nonce() -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A running advert (waiting side) or browse (dialing side); stops, with a goodbye for an
/// advert, on [`stop`](Self::stop) or drop.
pub struct PairMdns {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl PairMdns {
    /// Stops and waits (briefly) for the advert's goodbye to leave.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
    }
}

impl Drop for PairMdns {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Publishes the redial endpoint on `port` under the pair's name of the current hour, renamed
/// at every hour, withdrawn (goodbye) when stopped.
pub fn advertise(pair_secret: &str, port: u16) -> Result<PairMdns, String> {
    let daemon = ServiceDaemon::new().map_err(|e| e.to_string())?;
    // A device that moves to a new address (a new DHCP lease, another access point) announces
    // it within a second instead of mdns-sd's default five: its partner redials on the news.
    if let Err(e) = daemon.set_ip_check_interval(ADDRESS_CHECK_SECS) {
        tracing::debug!(%e, "cannot shorten the address check of the pair advert");
    }
    let (stop, mut stopped) = oneshot::channel();
    let (secret, nonce) = (pair_secret.to_string(), boot_nonce());
    let task = tokio::spawn(async move {
        loop {
            let now = unix_secs();
            let name = instance_name(&secret, window_of(now));
            let host = format!("{name}.local.");
            let info =
                ServiceInfo::new(PAIR_SERVICE_TYPE, &name, &host, (), port, &txt(&nonce)[..])
                    .map(ServiceInfo::enable_addr_auto);
            let fullname = match info {
                Ok(info) => {
                    let fullname = info.get_fullname().to_string();
                    if let Err(e) = daemon.register(info) {
                        tracing::warn!(%e, "cannot advertise the pair");
                    }
                    fullname
                }
                Err(e) => {
                    tracing::warn!(%e, "cannot advertise the pair");
                    String::new()
                }
            };
            let next_window = (window_of(now) + 1) * WINDOW_SECS;
            let wait = Duration::from_secs(next_window.saturating_sub(now).max(1));
            let stop_now = tokio::select! {
                _ = &mut stopped => true,
                _ = tokio::time::sleep(wait) => false,
            };
            if let Ok(rx) = daemon.unregister(&fullname) {
                let _ = tokio::time::timeout(Duration::from_secs(1), rx.recv_async()).await;
            }
            if stop_now {
                // The daemon repeats the goodbye shortly after for peers that missed the first.
                tokio::time::sleep(Duration::from_millis(150)).await;
                let _ = daemon.shutdown();
                return;
            }
        }
    });
    Ok(PairMdns {
        stop: Some(stop),
        task: Some(task),
    })
}

/// Browses for the partner's advert: every address of a matching instance goes into `found`
/// (newest first), and `on_new` runs when an instance appears, its boot nonce changes (the
/// partner came back, or restarted) or it names an address not seen before (it moved).
pub fn browse(
    pair_secret: &str,
    found: Arc<Mutex<Vec<SocketAddr>>>,
    on_new: impl Fn() + Send + 'static,
) -> Result<PairMdns, String> {
    let daemon = ServiceDaemon::new().map_err(|e| e.to_string())?;
    let events = daemon
        .browse(PAIR_SERVICE_TYPE)
        .map_err(|e| e.to_string())?;
    let (stop, mut stopped) = oneshot::channel();
    let secret = pair_secret.to_string();
    let task = tokio::spawn(async move {
        // Instance (lower case) → boot nonce and addresses last seen.
        let mut seen: HashMap<String, (String, Vec<IpAddr>)> = HashMap::new();
        loop {
            let event = tokio::select! {
                _ = &mut stopped => break,
                e = events.recv_async() => match e {
                    Ok(e) => e,
                    Err(_) => break,
                },
            };
            match event {
                ServiceEvent::ServiceResolved(info) => {
                    let name = info.get_fullname().to_ascii_lowercase();
                    if !is_partner_instance(&name, &secret, unix_secs()) {
                        continue;
                    }
                    let props = info.get_properties();
                    let Some(nonce) = parse_txt(|k| props.get_property_val(k).flatten()) else {
                        continue;
                    };
                    let addrs = usable(info.get_addresses().iter().map(|a| a.to_ip_addr()));
                    if addrs.is_empty() || info.get_port() == 0 {
                        continue; // not resolved yet: a later event brings the address
                    }
                    {
                        let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                        for ip in addrs.iter().rev() {
                            let addr = SocketAddr::new(*ip, info.get_port());
                            f.retain(|a| *a != addr);
                            f.insert(0, addr);
                        }
                        f.truncate(MAX_ADDRS);
                    }
                    // News: the partner appeared, restarted (a new boot nonce) or moved to an
                    // address not seen before (the path of its current link may be gone).
                    let news = match seen.get(&name) {
                        None => true,
                        Some((n, known)) => *n != nonce || addrs.iter().any(|a| !known.contains(a)),
                    };
                    if news {
                        tracing::info!(instance = %name, "the partner's advert appeared or changed");
                        let known = seen.entry(name).or_default();
                        if known.0 != nonce {
                            known.1.clear();
                        }
                        known.0 = nonce;
                        for a in &addrs {
                            if !known.1.contains(a) && known.1.len() < 4 * MAX_ADDRS {
                                known.1.push(*a);
                            }
                        }
                        on_new();
                    }
                }
                ServiceEvent::ServiceRemoved(_, fullname) => {
                    seen.remove(&fullname.to_ascii_lowercase());
                }
                _ => {}
            }
        }
        let _ = daemon.shutdown();
    });
    Ok(PairMdns {
        stop: Some(stop),
        task: Some(task),
    })
}

/// The addresses worth dialing: no unspecified, multicast or link-local IPv6 (no scope).
fn usable(addrs: impl Iterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = addrs
        .filter(|a| !a.is_unspecified() && !a.is_multicast())
        .filter(|a| match a {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
            IpAddr::V4(_) => true,
        })
        .collect();
    v.sort_by_key(|a| (a.is_loopback(), a.is_ipv6(), *a));
    v.dedup();
    v.truncate(MAX_ADDRS);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn the_instance_name_is_the_documented_hmac() {
        // The test vector of PROTOCOL.md §10.3.
        assert_eq!(
            instance_name(SECRET, 493_000),
            instance_name(SECRET, 493_000)
        );
        assert_eq!(instance_name(SECRET, 493_000).len(), 16);
        assert_eq!(instance_name(SECRET, 493_000), VECTOR);
        assert_ne!(instance_name(SECRET, 493_001), VECTOR);
        assert_ne!(
            instance_name("ffeeddccbbaa99887766554433221100", 493_000),
            VECTOR
        );
    }

    const VECTOR: &str = "4683fb6453a0a0e6";

    #[test]
    fn a_partner_instance_matches_the_neighbouring_hours_only() {
        let t = 493_000 * 3600 + 10;
        for w in [492_999, 493_000, 493_001] {
            let full = format!("{}.{PAIR_SERVICE_TYPE}", instance_name(SECRET, w));
            assert!(is_partner_instance(&full, SECRET, t), "{w}");
            assert!(is_partner_instance(&full.to_ascii_uppercase(), SECRET, t));
        }
        for w in [492_998, 493_002] {
            assert!(!is_partner_instance(&instance_name(SECRET, w), SECRET, t));
        }
        let other = "ffeeddccbbaa99887766554433221100";
        assert!(!is_partner_instance(
            &instance_name(other, 493_000),
            SECRET,
            t
        ));
        assert!(!is_partner_instance("", SECRET, t));
        assert!(!is_partner_instance(
            "lansync-ABCD-EFGH._lansync._tcp.local.",
            SECRET,
            t
        ));
    }

    #[test]
    fn a_partner_renamed_by_an_mdns_conflict_is_still_the_partner() {
        let t = 493_000 * 3600 + 10;
        let name = instance_name(SECRET, 493_000);
        for renamed in [format!("{name} (2)"), format!("{name} (13)")] {
            let full = format!("{renamed}.{PAIR_SERVICE_TYPE}");
            assert!(is_partner_instance(&full, SECRET, t), "{full}");
        }
        for not in [
            format!("{name} (x)"),
            format!("{name} (12345)"),
            format!("{name}(2)"),
            format!("{name} (2) (3)x"),
        ] {
            assert!(!is_partner_instance(&not, SECRET, t), "{not}");
        }
    }

    #[test]
    fn only_a_version_1_txt_with_an_8_hex_boot_nonce_is_read() {
        let read = |pairs: &[(&str, &[u8])]| {
            let pairs = pairs.to_vec();
            parse_txt(move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v))
        };
        assert_eq!(
            read(&[("v", b"1"), ("b", b"0A1b2c3d")]),
            Some("0a1b2c3d".into())
        );
        assert_eq!(read(&[("v", b"2"), ("b", b"0a1b2c3d")]), None);
        assert_eq!(read(&[("b", b"0a1b2c3d")]), None);
        assert_eq!(read(&[("v", b"1"), ("b", b"0a1b2c3")]), None);
        assert_eq!(read(&[("v", b"1"), ("b", b"0a1b2c3g")]), None);
        assert_eq!(read(&[("v", b"1")]), None);
        let nonce = boot_nonce();
        let published = txt(&nonce);
        let back = parse_txt(|k| {
            published
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_bytes())
        });
        assert_eq!(back, Some(nonce));
    }
}
