//! A choir master on the LAN: its node and its HTTP join endpoint, which asks the node's session
//! machine who may join (PROTOCOL.md §9.3). Followers reach it with [`follower_dialer`].

use super::state_files::open_with_id;
use super::{DialError, DialFuture, Dialer, Events, Node, NodeOptions, PublishedFiles};
use crate::discovery::{Discovery, SessionAdvert};
use crate::invite::JoinLink;
use crate::node::{load_record, set_aside, BadRecord, Clock};
use crate::protocol::RejectReason;
use crate::session::{Command, JoinCredentials, Master, MasterConfig, MasterRecord, Record};
use crate::signaling::{self, Door, JoinServer, RateLimit, SignalingError};
use crate::transport::{self, Identity, TransportConfig};
use crate::Error;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a follower's link may take to open after its answer was sent.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start a host. `HostOptions::default()` hosts a fresh session on every interface, with
/// nothing kept on disk; set [`state_dir`](Self::state_dir) so a restart resumes the session.
pub struct HostOptions {
    /// The master's settings. An empty `device_id` (the default) means: the one kept in
    /// `state_dir`, else a new random one.
    pub master: MasterConfig,
    /// Where the session record, DTLS identity, device id and port are kept (created if
    /// missing): a restart with the same directory resumes the session, and its QR links stay
    /// valid.
    pub state_dir: Option<PathBuf>,
    /// Where the session record lives, if not `state_dir/master.json`: an existing, not-ended
    /// record is resumed.
    pub record_path: Option<PathBuf>,
    /// The master's DTLS identity; `None`: the one kept in `state_dir`, else a new one.
    pub identity: Option<Identity>,
    /// Address of the join endpoint. Port 0 (the default) takes the port used last time (kept
    /// in `state_dir`), else any free one.
    pub bind: SocketAddr,
    /// Link settings (the identity is set from `identity`).
    pub transport: TransportConfig,
    /// Per-address rate limit of the join endpoint.
    pub rate: RateLimit,
    /// The file service that serves the session's pack, media and streamed score; `None`: the
    /// host starts its own, whose events come with the host's [`events`](Host::events).
    pub files: Option<super::Files>,
    /// Advertise the session with mDNS so followers can join by session code (PROTOCOL.md
    /// §10); never on a loopback-only transport. The advert is withdrawn when the session ends.
    pub advertise: bool,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            master: MasterConfig::new(""),
            state_dir: None,
            record_path: None,
            identity: None,
            bind: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
            transport: TransportConfig::default(),
            rate: RateLimit::default(),
            files: None,
            advertise: true,
        }
    }
}

impl HostOptions {
    /// Everything on loopback (tests, a demo on one machine): the endpoint listens on
    /// 127.0.0.1, links use only loopback, and the per-address rate limit is opened wide (every
    /// follower has the same address there).
    pub fn loopback() -> Self {
        HostOptions {
            bind: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0),
            transport: TransportConfig {
                loopback_only: true,
                ..TransportConfig::default()
            },
            rate: RateLimit {
                per_sec: 1000.0,
                burst: 1000.0,
            },
            ..HostOptions::default()
        }
    }
}

/// A running choir master.
pub struct Host {
    /// The master's node: the low-level handle every typed method below uses.
    pub node: Node,
    events: Option<Events>,
    server: JoinServer,
    record: MasterRecord,
    fingerprint: String,
    bad_record: Option<BadRecord>,
    state_dir: Option<PathBuf>,
    loopback: bool,
    advert: Advert,
}

/// The host's mDNS advert: running (withdrawn by a task when the session ends), not wanted, or
/// failed (followers can still join by QR link).
enum Advert {
    Running(tokio::task::JoinHandle<()>, oneshot::Sender<()>),
    Off,
    Failed(String),
}

impl Host {
    /// Starts (or resumes, from `state_dir` or `record_path`) the session, its node and its
    /// join endpoint.
    ///
    /// ```
    /// use lansync::session::Event;
    /// use lansync::{AppEvent, Host, HostOptions};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// // A session on this machine only; `HostOptions::default()` serves the LAN.
    /// let mut host = Host::start(HostOptions::loopback()).await?;
    /// println!("join with {}", host.lan_join_link()?.to_url());
    /// host.set_song("ave-maria")?;
    /// host.set_page(2)?;
    ///
    /// // One stream tells the session's and the files' events, in order.
    /// let mut events = host.events();
    /// while let Some(event) = events.recv().await {
    ///     if let AppEvent::Session(Event::Page { page: 2, .. }) = event {
    ///         break; // every follower now shows page 3 (pages count from 0)
    ///     }
    /// }
    /// host.shutdown().await;
    /// # Ok::<(), lansync::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn start(mut opts: HostOptions) -> Result<Host, Error> {
        let now = Clock::new().now();
        let kept = open_with_id(
            opts.state_dir.as_deref(),
            &mut opts.master.device_id,
            "master",
        )?;
        let identity = match (opts.identity.take(), &kept) {
            (Some(id), _) => id,
            (None, Some(dir)) => dir.identity()?,
            (None, None) => Identity::generate().map_err(|e| Error::Transport(e.to_string()))?,
        };
        if let (0, Some(dir)) = (opts.bind.port(), &kept) {
            opts.bind.set_port(dir.port());
        }
        let record_path = opts
            .record_path
            .clone()
            .or_else(|| kept.as_ref().map(|d| d.path("master.json")));
        // A bad record is reported (Host::bad_record) and moved aside; the session starts anew.
        let (resumed, bad_record) = match record_path.as_deref() {
            Some(path) => match load_record(path) {
                // Another role's record is not this session's: set aside, never overwritten.
                Ok(Some(rec)) if !matches!(rec, Record::Master(_)) => (
                    None,
                    Some(set_aside(path, "it is not a master's record".into())),
                ),
                Ok(rec) => (rec, None),
                Err(bad) => (None, Some(bad)),
            },
            None => (None, None),
        };
        let mut entropy = [0u8; 32];
        getrandom::fill(&mut entropy)
            .map_err(|e| Error::Transport(format!("no random source: {e}")))?;
        let machine = match resumed {
            Some(Record::Master(rec)) if !rec.ended => {
                Master::restore(opts.master.clone(), now, rec, entropy)
            }
            _ => Master::new(opts.master.clone(), now, entropy),
        };
        let record = machine.record().clone();
        let (files, files_events) = match opts.files.clone() {
            Some(files) => (files, None),
            None => {
                let (f, e) =
                    super::Files::spawn(super::FilesOptions::new(opts.master.device_id.clone()));
                (f, Some(e))
            }
        };
        let node_opts = NodeOptions {
            dialer: None,
            record_path,
            files: Some(files),
        };
        let (node, session_events) = Node::spawn(machine, node_opts);
        // The session machine is the one authority on who may join.
        let asking = node.clone();
        let door: Door = Arc::new(move |query| {
            let node = asking.clone();
            Box::pin(async move { node.door(query).await })
        });
        let cfg = TransportConfig {
            certificate: Some(identity.clone()),
            ..opts.transport
        };
        // The join endpoint's caps, not the default descriptor limit, bound its connections.
        if let Err(e) = signaling::raise_fd_limit() {
            tracing::warn!(%e, "cannot raise the open-file limit");
        }
        let accepting = node.clone();
        let server = signaling::serve_with_rate_limit(opts.bind, door, opts.rate, move |offer| {
            let (cfg, node) = (cfg.clone(), accepting.clone());
            let device_id = offer.device_id.clone();
            async move {
                let (answer, mut link) = transport::accept_offer(&cfg, &offer.offer_sdp)
                    .await
                    .map_err(|e| {
                        tracing::warn!(%e, "cannot answer a follower's offer");
                        RejectReason::Unknown
                    })?;
                // The follower hears the answer first; the link joins the node once it opens,
                // bound to the device id it was admitted as, holding its pending-answer slot
                // until then (PROTOCOL.md §9.3).
                let held = offer.pending.hold();
                tokio::spawn(async move {
                    match held.run(link.wait_open(OPEN_TIMEOUT)).await {
                        Some(Ok(())) => node.add_admitted_link(link, device_id),
                        Some(Err(e)) => tracing::info!(%e, "a follower's link never opened"),
                        None => tracing::info!("a follower's link did not open in time"),
                    }
                });
                Ok(answer)
            }
        })
        .await
        .map_err(|e| Error::Unreachable {
            addr: opts.bind.to_string(),
            detail: e.to_string(),
        })?;
        let port = server.local_addr().port();
        if let Some(dir) = &kept {
            dir.save_port(port);
        }
        let fingerprint = identity.fingerprint();
        let (ended_tx, ended_rx) = oneshot::channel();
        let loopback = opts.transport.loopback_only;
        let advert = if opts.advertise && !loopback {
            let advert = SessionAdvert::new(
                record.session_code.as_str(),
                &record.session_name,
                &fingerprint,
                port,
            );
            advertise(&advert, ended_rx)
        } else {
            Advert::Off
        };
        Ok(Host {
            node,
            events: Some(Events::merge_watching_end(
                session_events,
                files_events,
                Some(ended_tx),
            )),
            server,
            record,
            fingerprint,
            bad_record,
            state_dir: opts.state_dir,
            loopback,
            advert,
        })
    }

    /// Why the session is not advertised with mDNS, if it was meant to be (followers can still
    /// join by QR link, or by typing the endpoint's address).
    pub fn advert_problem(&self) -> Option<&str> {
        match &self.advert {
            Advert::Failed(why) => Some(why),
            _ => None,
        }
    }

    /// The join link for followers on the LAN: at this machine's first LAN address (loopback
    /// on a loopback-only host). [`Error::NoNetwork`] when there is no LAN address.
    pub fn lan_join_link(&self) -> Result<JoinLink, Error> {
        if self.loopback {
            return Ok(self.join_link(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)));
        }
        let addr = transport::lan_addresses()
            .into_iter()
            .next()
            .ok_or(Error::NoNetwork)?;
        Ok(self.join_link(addr))
    }

    /// The session's events and those of the host's own file service, in one bounded stream
    /// (see [`Events`] for what happens when the application does not keep up). Taken once; a
    /// second call gets a stream that has already ended.
    pub fn events(&mut self) -> Events {
        self.events.take().unwrap_or_else(Events::ended)
    }

    /// Shows `song_id` on every device (page 0 of it).
    pub fn set_song(&self, song_id: impl Into<String>) -> Result<(), Error> {
        self.node.command(Command::SetSong {
            song_id: song_id.into(),
        })
    }

    /// Turns every following device to `page` (zero-based).
    pub fn set_page(&self, page: u32) -> Result<(), Error> {
        self.node.command(Command::SetPage { page })
    }

    /// Ends the session: followers are told, its token and codes are refused from now on.
    pub fn end(&self) -> Result<(), Error> {
        self.node.command(Command::End)
    }

    /// Publishes the regular files of `dir` as the session pack: every follower downloads and
    /// verifies it (PROTOCOL.md §11).
    pub async fn publish_pack(&self, dir: impl Into<PathBuf>) -> Result<PublishedFiles, Error> {
        self.node.publish_pack(dir.into()).await
    }

    /// The state directory, if the host keeps one.
    pub fn state_dir(&self) -> Option<&std::path::Path> {
        self.state_dir.as_deref()
    }

    /// The record file found unusable at start (moved aside; the session started anew), if any.
    pub fn bad_record(&self) -> Option<&BadRecord> {
        self.bad_record.as_ref()
    }

    /// The session as it started (id, token, code, name).
    pub fn record(&self) -> &MasterRecord {
        &self.record
    }

    /// The join endpoint's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The master's DTLS fingerprint (`sha-256 AB:…`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The link a QR code carries, for followers reaching the endpoint at `addr`.
    pub fn join_link(&self, addr: IpAddr) -> JoinLink {
        JoinLink {
            addr,
            port: self.local_addr().port(),
            session_code: self.record.session_code.as_str().to_string(),
            token: self.record.token.clone(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// Stops the join endpoint and the node, and withdraws the mDNS advert (its goodbye sent
    /// before this returns). Every follower's link is closed so that it notices at once (and
    /// rejoins when the host is back: the session is not ended, see [`end`](Self::end)).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        self.node.shutdown().await;
        if let Advert::Running(task, stop) = self.advert {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
    }
}

/// Publishes the advert; a task withdraws it (with a goodbye) when the session ends or the host
/// shuts down.
fn advertise(advert: &SessionAdvert, ended: oneshot::Receiver<()>) -> Advert {
    let published = Discovery::new().and_then(|d| d.advertise(advert, &[]).map(|a| (d, a)));
    match published {
        Ok((discovery, advertisement)) => {
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let task = tokio::spawn(async move {
                tokio::select! {
                    _ = ended => {}
                    _ = stop_rx => {}
                }
                advertisement.stop().await;
                drop(discovery);
            });
            Advert::Running(task, stop_tx)
        }
        Err(e) => {
            tracing::warn!(%e, "cannot advertise the session with mDNS");
            Advert::Failed(e.to_string())
        }
    }
}

/// Where a follower dials: a master's join endpoint, and its fingerprint when known (from a QR
/// link), checked against the answer so no other device can pose as the master.
#[derive(Debug, Clone)]
pub struct JoinTarget {
    /// The endpoint.
    pub addr: SocketAddr,
    /// The master's DTLS fingerprint, if known.
    pub fingerprint: Option<String>,
}

/// A dialer for a follower: offer → the master's join endpoint → answer → open link. A refusal
/// by the endpoint (wrong token, session ended, …) is reported as such, so the follower stops.
pub fn follower_dialer(
    target: JoinTarget,
    transport: TransportConfig,
    device_id: String,
    device_name: String,
) -> Dialer {
    Box::new(move |creds: JoinCredentials| {
        let (target, cfg) = (target.clone(), transport.clone());
        let (id, name) = (device_id.clone(), device_name.clone());
        let fut: DialFuture = Box::pin(async move {
            let pending = transport::create_offer(&cfg)
                .await
                .map_err(|e| e.to_string())?;
            let answer = signaling::request_join(
                target.addr,
                &creds,
                target.fingerprint.as_deref(),
                &id,
                &name,
                pending.sdp(),
            )
            .await
            .map_err(|e| match e {
                SignalingError::Rejected(reason) => DialError::Refused(reason),
                other => DialError::Failed(other.to_string()),
            })?;
            let mut link = pending
                .accept_answer(&answer.answer)
                .await
                .map_err(|e| e.to_string())?;
            link.wait_open(OPEN_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            Ok(link)
        });
        fut
    })
}
