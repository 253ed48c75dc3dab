//! The discovery actor: one `mdns-sd` daemon thread and one tokio task that owns the table of
//! sessions seen and fans events out to every subscriber; the advert's publication and goodbye.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use mdns_sd::{IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

use super::txt::{host_name, instance_name, parse_advert};
use super::{DiscoveredSession, DiscoveryError, SessionAdvert, SERVICE_TYPE};
use crate::session::SessionCode;

/// How long [`Discovery::find_all`] listens for more adverts of a code after the first: a master
/// that is still announcing answers a query within about a second (PROTOCOL.md §10.2).
pub const FIND_ALL_SETTLE: Duration = Duration::from_millis(1500);

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

fn mdns_err(e: mdns_sd::Error) -> DiscoveryError {
    DiscoveryError::Mdns(e.to_string())
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
        let instance = instance_name(&code);
        let host = host_name(&instance);
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
    /// follower joining by code tries each (PROTOCOL.md §9.6) and keeps the one whose answer
    /// verifies.
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
