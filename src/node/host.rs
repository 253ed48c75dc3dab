//! A choir master on the LAN: its node and its HTTP join endpoint, which asks the node's session
//! machine who may join (PROTOCOL.md §9.3). Followers reach it with [`follower_dialer`].

use super::{DialError, DialFuture, Dialer, Node, NodeOptions};
use crate::invite::JoinLink;
use crate::node::{load_record, set_aside, BadRecord, Clock};
use crate::protocol::RejectReason;
use crate::session::{Event, JoinCredentials, Master, MasterConfig, MasterRecord, Record};
use crate::signaling::{self, Door, JoinServer, RateLimit, SignalingError};
use crate::transport::{self, Identity, TransportConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a follower's link may take to open after its answer was sent.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start a host.
pub struct HostOptions {
    /// The master's settings.
    pub master: MasterConfig,
    /// Where the session record lives: an existing, not-ended record is resumed.
    pub record_path: Option<PathBuf>,
    /// The master's DTLS identity: keep it across restarts so QR links stay valid.
    pub identity: Identity,
    /// Address of the join endpoint (port 0 picks one).
    pub bind: SocketAddr,
    /// Link settings (the identity is set from `identity`).
    pub transport: TransportConfig,
    /// Per-address rate limit of the join endpoint.
    pub rate: RateLimit,
    /// The file service that serves the session's pack, media and streamed score, if any.
    pub files: Option<super::Files>,
}

/// A running choir master.
pub struct Host {
    /// The master's node: send it commands.
    pub node: Node,
    /// Its events.
    pub events: mpsc::UnboundedReceiver<Event>,
    server: JoinServer,
    record: MasterRecord,
    fingerprint: String,
    bad_record: Option<BadRecord>,
}

impl Host {
    /// Starts (or resumes) the session, its node and its join endpoint.
    pub async fn start(opts: HostOptions) -> Result<Host, String> {
        let now = Clock::new().now();
        // A bad record is reported (Host::bad_record) and moved aside; the session starts anew.
        let (resumed, bad_record) = match opts.record_path.as_deref() {
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
        getrandom::fill(&mut entropy).map_err(|e| format!("no random source: {e}"))?;
        let machine = match resumed {
            Some(Record::Master(rec)) if !rec.ended => {
                Master::restore(opts.master.clone(), now, rec, entropy)
            }
            _ => Master::new(opts.master.clone(), now, entropy),
        };
        let record = machine.record().clone();
        let node_opts = NodeOptions {
            dialer: None,
            record_path: opts.record_path.clone(),
            files: opts.files.clone(),
        };
        let (node, events) = Node::spawn(machine, node_opts);
        // The session machine is the one authority on who may join.
        let asking = node.clone();
        let door: Door = Arc::new(move |query| {
            let node = asking.clone();
            Box::pin(async move { node.door(query).await })
        });
        let cfg = TransportConfig {
            certificate: Some(opts.identity.clone()),
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
        .map_err(|e| e.to_string())?;
        Ok(Host {
            node,
            events,
            server,
            record,
            fingerprint: opts.identity.fingerprint(),
            bad_record,
        })
    }

    /// The record file found unusable at start (moved aside; the session started anew), if any.
    pub fn bad_record(&self) -> Option<&BadRecord> {
        self.bad_record.as_ref()
    }

    /// Takes the event stream (once; later calls get a closed stream).
    pub fn take_events(&mut self) -> mpsc::UnboundedReceiver<Event> {
        std::mem::replace(&mut self.events, mpsc::unbounded_channel().1)
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

    /// Stops the join endpoint and the node (links close).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
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
