//! mDNS discovery of choir sessions on the LAN (feature `native`).
//!
//! A master advertises its signaling endpoint as a DNS-SD service of type [`SERVICE_TYPE`]
//! (`_lansync._tcp.local.`) whose TXT record carries the session code, name, protocol version and
//! a hash of the master's DTLS fingerprint (PROTOCOL.md §10). Followers browse, list sessions, and
//! see them go when the master leaves: at once on a goodbye (the advert dropped), or when the
//! records expire (SRV TTL 120 s) after a crash.
//!
//! [`Discovery`] is a cloneable handle to a small actor: one `mdns-sd` daemon thread plus one
//! tokio task that owns the table of sessions seen and fans events out to every subscriber. Joining
//! by QR link never needs it; [`Discovery::find`] answers from the table at once when the session
//! is already known.
//!
//! Everything read from the network is validated: an advert with a malformed code, version,
//! fingerprint hash or port is ignored; the session name is clamped like every display string.

use crate::protocol::{clamp_name, PROTOCOL_VERSION};
use crate::session::SessionCode;
use mdns_sd::{IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The DNS-SD service type of a lansync master's signaling endpoint.
pub const SERVICE_TYPE: &str = "_lansync._tcp.local.";
/// TXT key: the session code, `XXXX-XXXX`.
pub const TXT_CODE: &str = "code";
/// TXT key: the session name (display string, at most 48 bytes).
pub const TXT_NAME: &str = "name";
/// TXT key: the protocol version, decimal.
pub const TXT_VERSION: &str = "v";
/// TXT key: the fingerprint hash, 16 lower-case hex digits.
pub const TXT_FINGERPRINT: &str = "fp";
/// TXT key: the signaling port, decimal (the SRV port is authoritative).
pub const TXT_PORT: &str = "port";
/// Length of a fingerprint hash in hex digits (the first 8 bytes of a SHA-256).
pub const FINGERPRINT_HASH_LEN: usize = 16;
/// How long [`Discovery::find_all`] listens for more adverts of a code after the first: a master
/// that is still announcing answers a query within about a second (PROTOCOL.md §10.2).
pub const FIND_ALL_SETTLE: Duration = Duration::from_millis(1500);
/// Longest TXT value read from the network; a longer one makes the advert malformed (the name
/// alone is clamped, since a long name is harmless).
const MAX_TXT_VALUE: usize = 64;
/// Longest session name read before clamping; beyond it the advert is treated as garbage.
const MAX_TXT_NAME: usize = 250;
/// Most addresses kept for one session.
const MAX_ADDRS: usize = 16;
/// Longest instance full name accepted (a DNS name is at most 255 bytes).
const MAX_INSTANCE_LEN: usize = 255;

/// TXT key/value pairs as published.
type TxtProps = Vec<(&'static str, String)>;

/// What a master publishes about its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAdvert {
    /// The human session code, `XXXX-XXXX` (any spelling [`SessionCode::parse`] accepts).
    pub session_code: String,
    /// The session's display name; clamped to 48 bytes.
    pub session_name: String,
    /// The protocol version the master speaks, normally [`PROTOCOL_VERSION`].
    pub protocol_version: u64,
    /// [`fingerprint_hash`] of the master's DTLS fingerprint: 16 hex digits.
    pub fingerprint_hash: String,
    /// The TCP port of the master's signaling endpoint.
    pub port: u16,
}

impl SessionAdvert {
    /// A version-1 advert for this build's protocol version.
    pub fn new(session_code: &str, session_name: &str, fingerprint: &str, port: u16) -> Self {
        SessionAdvert {
            session_code: session_code.into(),
            session_name: session_name.into(),
            protocol_version: PROTOCOL_VERSION,
            fingerprint_hash: fingerprint_hash(fingerprint),
            port,
        }
    }

    /// The normalised code and the TXT properties, or why the advert cannot be published.
    fn to_txt(&self) -> Result<(SessionCode, TxtProps), DiscoveryError> {
        let code = SessionCode::parse(&self.session_code)
            .ok_or_else(|| DiscoveryError::InvalidAdvert("session code is not XXXX-XXXX".into()))?;
        let fp = self.fingerprint_hash.to_ascii_lowercase();
        if !is_fingerprint_hash(&fp) {
            return Err(DiscoveryError::InvalidAdvert(
                "fingerprint hash is not 16 hex digits".into(),
            ));
        }
        if self.port == 0 {
            return Err(DiscoveryError::InvalidAdvert("port 0".into()));
        }
        let mut name = self.session_name.clone();
        clamp_name(&mut name);
        let txt = vec![
            (TXT_VERSION, self.protocol_version.to_string()),
            (TXT_CODE, code.as_str().to_string()),
            (TXT_NAME, name),
            (TXT_FINGERPRINT, fp),
            (TXT_PORT, self.port.to_string()),
        ];
        Ok((code, txt))
    }
}

/// A session seen on the LAN, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiscoveredSession {
    /// The DNS-SD instance full name, e.g. `lansync-ABCD-EFGH._lansync._tcp.local.`: the key
    /// that a later [`DiscoveryEvent::Lost`] names.
    pub instance: String,
    /// The session code, normalised to `XXXX-XXXX`.
    pub session_code: String,
    /// The session name, clamped (control characters removed, at most 48 bytes).
    pub session_name: String,
    /// The master's protocol version; may differ from [`PROTOCOL_VERSION`] (show "update").
    pub protocol_version: u64,
    /// First 16 hex digits (lower case) of SHA-256 of the master's DTLS fingerprint.
    pub fingerprint_hash: String,
    /// The master's addresses, never empty: IPv4 first, loopback and link-local last; at most
    /// 16. IPv6 link-local addresses are left out (they need a scope `IpAddr` cannot carry).
    pub addrs: Vec<IpAddr>,
    /// The signaling port.
    pub port: u16,
}

impl DiscoveredSession {
    /// Whether this build can join it (same protocol version).
    pub fn is_compatible(&self) -> bool {
        self.protocol_version == PROTOCOL_VERSION
    }

    /// Whether the master's DTLS fingerprint (as in SDP, `"sha-256 AB:CD:…"`) matches the hash
    /// advertised. The hash is only a hint for picking the right master: the full fingerprint
    /// from the QR/invite or the signaling answer is what authenticates the link.
    pub fn matches_fingerprint(&self, fingerprint: &str) -> bool {
        fingerprint_hash(fingerprint) == self.fingerprint_hash
    }
}

/// A change in the set of sessions seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A session appeared, or its advert changed (same `instance`, new content).
    Found(DiscoveredSession),
    /// The session advertised under `instance` went away (goodbye, expiry, or now malformed).
    Lost {
        /// The instance full name of an earlier [`DiscoveryEvent::Found`].
        instance: String,
    },
}

/// Errors of discovery.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The mDNS daemon could not start or refused a request.
    #[error("mDNS is unavailable: {0}")]
    Mdns(String),
    /// [`Discovery::new`] was called outside a tokio runtime.
    #[error("discovery must be started inside a tokio runtime")]
    NoRuntime,
    /// The advert given to [`Discovery::advertise`] cannot be published.
    #[error("cannot advertise this session: {0}")]
    InvalidAdvert(String),
    /// The text given to [`Discovery::find`] cannot be a session code.
    #[error("{0:?} is not a session code (expected XXXX-XXXX)")]
    BadCode(String),
    /// No session with this code was seen in time.
    #[error("no session with code {code} was found on the network within {waited:?}")]
    NotFound {
        /// The normalised code looked for.
        code: String,
        /// How long it was looked for.
        waited: Duration,
    },
    /// The discovery actor has stopped (its daemon shut down).
    #[error("the discovery service has stopped")]
    Stopped,
}

impl DiscoveryError {
    /// The stable error code (PROTOCOL.md §8) for `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            DiscoveryError::Mdns(_) | DiscoveryError::Stopped => "network-unavailable",
            DiscoveryError::NotFound { .. } | DiscoveryError::BadCode(_) => "session-not-found",
            DiscoveryError::NoRuntime | DiscoveryError::InvalidAdvert(_) => "internal",
        }
    }
}

fn mdns_err(e: mdns_sd::Error) -> DiscoveryError {
    DiscoveryError::Mdns(e.to_string())
}

/// The fingerprint hash advertised in TXT `fp`: the first 16 hex digits (lower case) of SHA-256
/// over the ASCII bytes of the master's DTLS certificate fingerprint in canonical form: lower-case
/// hex digits, no colons, no algorithm name (the join link's `f` form). Any spelling is accepted
/// and canonicalised first: `"sha-256 AB:CD:…"` as in SDP, `"AB:CD:…"` or `"abcd…"`.
pub fn fingerprint_hash(fingerprint: &str) -> String {
    let mut fp = fingerprint.trim();
    // `get` rather than slicing: the input may have a multi-byte character at byte 8.
    if let (Some(algo), Some(rest)) = (fp.get(..8), fp.get(8..)) {
        if algo.eq_ignore_ascii_case("sha-256 ") {
            fp = rest.trim_start();
        }
    }
    let canonical: String = fp
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let digest = Sha256::digest(canonical.as_bytes());
    hex::encode(&digest[..FINGERPRINT_HASH_LEN / 2])
}

fn is_fingerprint_hash(s: &str) -> bool {
    s.len() == FINGERPRINT_HASH_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses a decimal TXT number strictly: ASCII digits only, no sign, no spaces, fits in `u64`.
fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Builds a session from what was resolved for `instance`, or says why the advert is ignored.
/// `txt(key)` returns the raw value of a TXT key (`None` when absent or value-less).
/// Pure, so the rules are unit-tested without a network.
pub(crate) fn parse_advert<'a>(
    instance: &str,
    srv_port: u16,
    addrs: impl IntoIterator<Item = IpAddr>,
    txt: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<DiscoveredSession, &'static str> {
    if instance.is_empty() || instance.len() > MAX_INSTANCE_LEN {
        return Err("instance name length");
    }
    let value = |key: &str| -> Result<&'a [u8], &'static str> {
        let v = txt(key).ok_or("missing TXT key")?;
        if v.len() > MAX_TXT_VALUE {
            return Err("TXT value too long");
        }
        Ok(v)
    };
    let protocol_version = parse_decimal(value(TXT_VERSION)?).ok_or("bad version")?;
    let code = std::str::from_utf8(value(TXT_CODE)?).map_err(|_| "code not UTF-8")?;
    let session_code = SessionCode::parse(code).ok_or("bad session code")?;
    let fp = std::str::from_utf8(value(TXT_FINGERPRINT)?)
        .map_err(|_| "fingerprint not UTF-8")?
        .to_ascii_lowercase();
    if !is_fingerprint_hash(&fp) {
        return Err("bad fingerprint hash");
    }
    // A missing name is harmless (shown empty); an absurdly long one is garbage.
    let raw_name = txt(TXT_NAME).unwrap_or_default();
    if raw_name.len() > MAX_TXT_NAME {
        return Err("name too long");
    }
    let mut session_name = String::from_utf8_lossy(raw_name).into_owned();
    clamp_name(&mut session_name);
    // The SRV port is authoritative; TXT `port` helps resolvers that only hand out TXT.
    let port = match srv_port {
        0 => txt(TXT_PORT)
            .and_then(parse_decimal)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .ok_or("no port")?,
        p => p,
    };
    // An IPv6 link-local address is useless without its scope (interface), which `IpAddr`
    // does not carry, so it is dropped.
    let mut addrs: Vec<IpAddr> = addrs
        .into_iter()
        .filter(|a| !a.is_unspecified() && !a.is_multicast())
        .filter(|a| !(a.is_ipv6() && is_link_local(a)))
        .collect();
    if addrs.is_empty() {
        // Not resolved yet (mdns-sd may report the link-local IPv6 address first).
        return Err("no usable address");
    }
    // Most useful first: a follower dials the first address that answers.
    addrs.sort_by_key(|a| (a.is_loopback(), is_link_local(a), a.is_ipv6(), *a));
    addrs.dedup();
    addrs.truncate(MAX_ADDRS);
    Ok(DiscoveredSession {
        instance: instance.to_string(),
        session_code: session_code.as_str().to_string(),
        session_name,
        protocol_version,
        fingerprint_hash: fp,
        addrs,
        port,
    })
}

fn is_link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn parse_resolved(info: &ResolvedService) -> Result<DiscoveredSession, &'static str> {
    let props = info.get_properties();
    parse_advert(
        info.get_fullname(),
        info.get_port(),
        info.get_addresses().iter().map(|a| a.to_ip_addr()),
        |key| props.get_property_val(key).flatten(),
    )
}

/// A cloneable handle to the discovery actor. Clones share one mDNS daemon; it stops when the
/// last handle and the last [`Advertisement`] are dropped. Make one per process and clone it:
/// each `new` starts another daemon thread and another socket pair on port 5353.
#[derive(Clone)]
pub struct Discovery {
    inner: Arc<Inner>,
}

struct Inner {
    daemon: ServiceDaemon,
    cmds: mpsc::UnboundedSender<Cmd>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Queued after any unregister, so goodbyes go out before the daemon exits.
        let _ = self.daemon.shutdown();
    }
}

enum Cmd {
    Subscribe(mpsc::UnboundedSender<DiscoveryEvent>),
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

impl Discovery {
    /// Starts the mDNS daemon (port 5353, every interface, no configuration) and the actor task.
    /// Must be called inside a tokio runtime.
    pub fn new() -> Result<Discovery, DiscoveryError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
        let daemon = ServiceDaemon::new().map_err(mdns_err)?;
        let (cmds, cmd_rx) = mpsc::unbounded_channel();
        rt.spawn(actor(daemon.clone(), cmd_rx));
        Ok(Discovery {
            inner: Arc::new(Inner { daemon, cmds }),
        })
    }

    /// Publishes `advert` under the instance `lansync-XXXX-XXXX` (one per session code, so a
    /// master restarted after a crash replaces its own stale records). `addrs` restricts the
    /// advert to the interfaces holding these addresses; empty means every interface, with
    /// addresses kept up to date. Dropping the returned [`Advertisement`] sends the goodbye.
    pub fn advertise(
        &self,
        advert: &SessionAdvert,
        addrs: &[IpAddr],
    ) -> Result<Advertisement, DiscoveryError> {
        let (code, txt) = advert.to_txt()?;
        let instance = format!("lansync-{}", code.as_str());
        let host = format!("{}.local.", instance.to_ascii_lowercase());
        let info = if addrs.is_empty() {
            ServiceInfo::new(SERVICE_TYPE, &instance, &host, (), advert.port, &txt[..])
                .map_err(mdns_err)?
                .enable_addr_auto()
        } else {
            let mut info =
                ServiceInfo::new(SERVICE_TYPE, &instance, &host, addrs, advert.port, &txt[..])
                    .map_err(mdns_err)?;
            info.set_interfaces(addrs.iter().map(|a| IfKind::Addr(*a)).collect());
            info
        };
        let fullname = info.get_fullname().to_string();
        self.inner.daemon.register(info).map_err(mdns_err)?;
        tracing::debug!(%fullname, "advertising session");
        Ok(Advertisement {
            inner: self.inner.clone(),
            fullname,
            stopped: false,
        })
    }

    /// Subscribes to session events. Sessions already known come first as
    /// [`DiscoveryEvent::Found`]; browsing starts with the first subscriber and goes on while
    /// the daemon runs. The channel closes when the daemon stops.
    pub fn browse(&self) -> Result<mpsc::UnboundedReceiver<DiscoveryEvent>, DiscoveryError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .cmds
            .send(Cmd::Subscribe(tx))
            .map_err(|_| DiscoveryError::Stopped)?;
        Ok(rx)
    }

    /// Waits up to `timeout` for a session with this code and returns the first seen. Anyone can
    /// advertise any code: to join, use [`find_all`](Self::find_all) and try each. The code is normalised as a person
    /// types it: case, spaces and dashes do not matter. A session already seen is returned at
    /// once. The session may speak another protocol version: check
    /// [`DiscoveredSession::is_compatible`].
    pub async fn find(
        &self,
        session_code: &str,
        timeout: Duration,
    ) -> Result<DiscoveredSession, DiscoveryError> {
        let code = SessionCode::parse(session_code)
            .ok_or_else(|| DiscoveryError::BadCode(protocol_truncate(session_code)))?;
        let mut events = self.browse()?;
        let wait = async {
            while let Some(ev) = events.recv().await {
                if let DiscoveryEvent::Found(s) = ev {
                    if s.session_code == code.as_str() {
                        return Ok(s);
                    }
                }
            }
            Err(DiscoveryError::Stopped)
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => Err(DiscoveryError::NotFound {
                code: code.as_str().to_string(),
                waited: timeout,
            }),
        }
    }
    /// Waits up to `timeout` for every session advertising this code: once the first is seen,
    /// goes on listening for [`FIND_ALL_SETTLE`] (within `timeout`) so that other masters
    /// claiming the same code are seen too. Adverts are unauthenticated (PROTOCOL.md §10.1): a
    /// follower joining by code tries each (§9.6) and keeps the one whose answer verifies.
    pub async fn find_all(
        &self,
        session_code: &str,
        timeout: Duration,
    ) -> Result<Vec<DiscoveredSession>, DiscoveryError> {
        let code = SessionCode::parse(session_code)
            .ok_or_else(|| DiscoveryError::BadCode(protocol_truncate(session_code)))?;
        let mut events = self.browse()?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut settle: Option<tokio::time::Instant> = None;
        let mut found: Vec<DiscoveredSession> = Vec::new();
        loop {
            let until = settle.map_or(deadline, |s| s.min(deadline));
            match tokio::time::timeout_at(until, events.recv()).await {
                Err(_) => break,
                Ok(None) if found.is_empty() => return Err(DiscoveryError::Stopped),
                Ok(None) => break,
                Ok(Some(DiscoveryEvent::Found(s))) if s.session_code == code.as_str() => {
                    found.retain(|f| f.instance != s.instance);
                    found.push(s);
                    settle.get_or_insert_with(|| tokio::time::Instant::now() + FIND_ALL_SETTLE);
                }
                Ok(Some(DiscoveryEvent::Lost { instance })) => {
                    found.retain(|f| f.instance != instance)
                }
                Ok(Some(_)) => {}
            }
        }
        if found.is_empty() {
            return Err(DiscoveryError::NotFound {
                code: code.as_str().to_string(),
                waited: timeout,
            });
        }
        Ok(found)
    }
}

/// Keeps an error message short when a person pasted something huge.
fn protocol_truncate(s: &str) -> String {
    crate::protocol::truncate(s, 40).to_string()
}

/// A published advert. Dropping it (or [`Advertisement::stop`]) unregisters it, which multicasts
/// a goodbye (TTL 0) so browsers drop the session within about a second.
pub struct Advertisement {
    inner: Arc<Inner>,
    fullname: String,
    stopped: bool,
}

impl std::fmt::Debug for Advertisement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertisement")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

impl Advertisement {
    /// The instance full name, e.g. `lansync-ABCD-EFGH._lansync._tcp.local.`.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// Unregisters and waits (up to 1 s) until the goodbye has been sent: use it before a
    /// process exits, where a plain drop could lose the goodbye with the daemon thread.
    pub async fn stop(mut self) {
        self.stopped = true;
        let Ok(rx) = self.inner.daemon.unregister(&self.fullname) else {
            return;
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), rx.recv_async()).await;
        // The daemon repeats the goodbye 120 ms later for peers that missed the first.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        if !self.stopped {
            if let Err(e) = self.inner.daemon.unregister(&self.fullname) {
                tracing::debug!(%e, "unregister failed");
            }
        }
    }
}

/// The actor: owns the browse subscription and the table of sessions, fans events out.
async fn actor(daemon: ServiceDaemon, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    let mut subs: Vec<mpsc::UnboundedSender<DiscoveryEvent>> = Vec::new();
    // Keyed by the lower-cased full name: DNS names are case-insensitive.
    let mut known: HashMap<String, DiscoveredSession> = HashMap::new();
    let mut browse: Option<mdns_sd::Receiver<ServiceEvent>> = None;
    loop {
        let next = async {
            match &browse {
                Some(rx) => rx.recv_async().await.ok(),
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            cmd = cmds.recv() => {
                match cmd {
                    None => break, // every handle dropped
                    Some(Cmd::Subscribe(tx)) => {
                        if browse.is_none() {
                            match daemon.browse(SERVICE_TYPE) {
                                Ok(rx) => browse = Some(rx),
                                Err(e) => {
                                    // Dropping `tx` closes the subscriber's channel.
                                    tracing::warn!(%e, "cannot browse for sessions");
                                    continue;
                                }
                            }
                        }
                        for s in known.values() {
                            let _ = tx.send(DiscoveryEvent::Found(s.clone()));
                        }
                        subs.push(tx);
                        continue;
                    }
                }
            }
            ev = next => ev,
        };
        let Some(event) = event else {
            // The daemon stopped: end every subscription.
            tracing::debug!("mDNS daemon stopped");
            browse = None;
            subs.clear();
            known.clear();
            continue;
        };
        let out = match event {
            ServiceEvent::ServiceResolved(info) => match parse_resolved(&info) {
                Ok(s) => {
                    let key = s.instance.to_ascii_lowercase();
                    if known.get(&key) == Some(&s) {
                        None
                    } else {
                        tracing::debug!(instance = %s.instance, code = %s.session_code, "session found");
                        known.insert(key, s.clone());
                        Some(DiscoveryEvent::Found(s))
                    }
                }
                Err(why) => {
                    tracing::debug!(instance = %info.get_fullname(), why, "ignoring malformed advert");
                    known
                        .remove(&info.get_fullname().to_ascii_lowercase())
                        .map(|s| DiscoveryEvent::Lost {
                            instance: s.instance,
                        })
                }
            },
            ServiceEvent::ServiceRemoved(_, fullname) => {
                known.remove(&fullname.to_ascii_lowercase()).map(|s| {
                    tracing::debug!(instance = %s.instance, "session lost");
                    DiscoveryEvent::Lost {
                        instance: s.instance,
                    }
                })
            }
            _ => None,
        };
        if let Some(out) = out {
            subs.retain(|tx| tx.send(out.clone()).is_ok());
        } else {
            subs.retain(|tx| !tx.is_closed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn txt_of<'a>(pairs: &'a [(&'a str, &'a [u8])]) -> impl Fn(&str) -> Option<&'a [u8]> {
        move |k| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
    }

    const FP: &[u8] = b"0123456789abcdef";

    fn good() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("v", b"1"),
            ("code", b"abcd-efgh"),
            ("name", b"Choir"),
            ("fp", FP),
            ("port", b"7000"),
        ]
    }

    fn parse(pairs: &[(&str, &[u8])], port: u16) -> Result<DiscoveredSession, &'static str> {
        let addrs = [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 213, 1, 2)),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ];
        parse_advert("x._lansync._tcp.local.", port, addrs, txt_of(pairs))
    }

    #[test]
    fn good_advert_is_normalised() {
        let s = parse(&good(), 7000).unwrap();
        assert_eq!(s.session_code, "ABCD-EFGH");
        assert_eq!(s.session_name, "Choir");
        assert_eq!(s.protocol_version, 1);
        assert_eq!(s.port, 7000);
        assert_eq!(s.addrs[0], IpAddr::V4(Ipv4Addr::new(10, 213, 1, 2)));
        assert_eq!(s.addrs.len(), 2, "unspecified and fe80:: dropped");
        assert!(s.is_compatible());
    }

    #[test]
    fn malformed_fields_are_ignored_or_clamped() {
        let with = |key: &'static str, val: &'static [u8]| {
            let mut p = good();
            p.retain(|(k, _)| *k != key);
            p.push((key, val));
            parse(&p, 7000)
        };
        assert!(with("v", b"one").is_err());
        assert!(with("v", b"+1").is_err());
        assert!(with("v", b"99999999999999999999999").is_err());
        assert_eq!(with("v", b"2").unwrap().protocol_version, 2);
        assert!(with("code", b"ABCD-EFG0").is_err());
        assert!(with("code", b"\xff\xfe").is_err());
        assert!(with("fp", b"0123").is_err());
        assert!(with("fp", b"0123456789abcdeg").is_err());
        assert_eq!(
            with("fp", b"0123456789ABCDEF").unwrap().fingerprint_hash,
            "0123456789abcdef"
        );
        let long = Box::leak(vec![b'n'; 200].into_boxed_slice());
        assert_eq!(with("name", long).unwrap().session_name.len(), 48);
        let huge = Box::leak(vec![b'n'; 300].into_boxed_slice());
        assert!(with("name", huge).is_err());
        assert_eq!(
            with("name", b"a\x07b\xffc").unwrap().session_name,
            "ab\u{fffd}c"
        );
        // No SRV port: TXT port is used; neither: ignored.
        assert_eq!(parse(&good(), 0).unwrap().port, 7000);
        let mut p = good();
        p.retain(|(k, _)| *k != "port");
        assert!(parse(&p, 0).is_err());
        p.retain(|(k, _)| *k != "v");
        assert!(parse(&p, 7000).is_err());
        // Only a link-local IPv6 address: not usable yet.
        let fe80 = [IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))];
        assert!(parse_advert("x", 7000, fe80, txt_of(&good())).is_err());
    }

    #[test]
    fn advert_is_validated_and_encoded() {
        let mut a = SessionAdvert::new("abcd efgh", "Choir\n of St Mary", "sha-256 AB:CD", 7000);
        let (code, txt) = a.to_txt().unwrap();
        assert_eq!(code.as_str(), "ABCD-EFGH");
        let get = |k: &str| txt.iter().find(|(key, _)| *key == k).unwrap().1.clone();
        assert_eq!(get("name"), "Choir of St Mary");
        assert_eq!(get("v"), PROTOCOL_VERSION.to_string());
        assert_eq!(get("fp"), fingerprint_hash("sha-256 AB:CD"));
        // Round trip through the reader.
        let pairs: Vec<(&str, &[u8])> = txt.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        let s = parse(&pairs, 7000).unwrap();
        assert!(s.matches_fingerprint("sha-256 AB:CD"));
        a.port = 0;
        assert!(a.to_txt().is_err());
        a.port = 1;
        a.fingerprint_hash = "xyz".into();
        assert!(a.to_txt().is_err());
        a.fingerprint_hash = "0123456789abcdef".into();
        a.session_code = "nope".into();
        assert!(a.to_txt().is_err());
    }

    fn hex8(d: &[u8]) -> String {
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn fingerprint_hash_is_16_hex() {
        let h = fingerprint_hash("sha-256 00:11");
        assert!(is_fingerprint_hash(&h));
        assert_ne!(h, fingerprint_hash("sha-256 00:12"));
        // Every spelling of one fingerprint gives one hash.
        assert_eq!(h, fingerprint_hash("SHA-256 00:11"));
        assert_eq!(h, fingerprint_hash("0011"));
        let _ = fingerprint_hash("sha-256é"); // a multi-byte character at byte 7–8
                                              // SHA-256("0011"), first 8 bytes: a fixed vector for other implementations.
        assert_eq!(h, hex8(&Sha256::digest(b"0011")));
        // The vector of PROTOCOL.md §10.
        let sdp: Vec<String> = (0..32).map(|i| format!("{i:02X}")).collect();
        let sdp = format!("sha-256 {}", sdp.join(":"));
        assert_eq!(fingerprint_hash(&sdp), "6c86c6aac5fb24bc");
    }
}
