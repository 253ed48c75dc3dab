//! How a remembered pair finds itself again (PROTOCOL.md §6.1, §9, §10.3): the waiting side's
//! redial endpoint (the join endpoint of §9, whose door is the solo machine's: only the partner
//! proving the pair secret gets in), and the dialing side's dialer, which reads the remembered
//! pair from `solo.json` and tries the addresses the partner's mDNS advert names, then the
//! endpoints it gave on the last link.

use super::join_dial::first_verified;
use super::state_files::StateDir;
use super::{load_record, DialFuture, Dialer, JoinTarget, Node};
use crate::protocol::RejectReason;
use crate::session::{JoinCredentials, Record, SoloRecord};
use crate::signaling::{self, Door, JoinServer, SignalingError};
use crate::transport::{self, TransportConfig};
use crate::Error;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The file of a remembered pair in the state directory.
pub(super) const RECORD_FILE: &str = "solo.json";
/// How long a redialled link may take to open after its answer.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// Most endpoints told to the partner (PROTOCOL.md §6.1, PAIR_BOND).
const MAX_ENDPOINTS: usize = crate::protocol::MAX_BOND_ENDPOINTS;

/// The remembered pair kept in `dir`, if any (a bad record is set aside by [`load_record`]).
pub(super) fn read_pair(dir: &Path) -> Result<Option<SoloRecord>, Error> {
    match load_record(&dir.join(RECORD_FILE)) {
        Ok(Some(Record::Solo(rec))) => Ok(Some(rec)),
        Ok(Some(Record::Cleared)) | Ok(None) => Ok(None),
        Ok(Some(_)) => {
            let bad = super::set_aside(&dir.join(RECORD_FILE), "it is not a pair's record".into());
            Err(Error::InvalidArgument(bad.to_string()))
        }
        Err(bad) => Err(Error::InvalidArgument(format!(
            "{bad}; pair again with codes"
        ))),
    }
}

/// The waiting side's redial endpoint: the join endpoint of PROTOCOL.md §9 on the port kept in
/// the state directory (any free one if that is taken), asking the solo machine's door, taking
/// only offers whose fingerprint is the partner's. The node is set once it exists; until then
/// the door is closed.
pub(super) struct RedialEndpoint {
    pub(super) server: JoinServer,
    pub(super) node: Arc<OnceLock<Node>>,
    /// Where the partner can reach it (sent in PAIR_BOND).
    pub(super) endpoints: Vec<SocketAddr>,
}

impl RedialEndpoint {
    pub(super) async fn start(
        dir: &StateDir,
        transport: &TransportConfig,
        partner_fingerprint: String,
    ) -> Result<RedialEndpoint, Error> {
        let node: Arc<OnceLock<Node>> = Arc::default();
        let asking = node.clone();
        let door: Door = Arc::new(move |query| {
            let node = asking.get().cloned();
            Box::pin(async move {
                match node {
                    Some(node) => node.door(query).await,
                    None => crate::session::DoorReply::closed(),
                }
            })
        });
        let ip = if transport.loopback_only {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let (cfg, accepting) = (transport.clone(), node.clone());
        let on_offer = move |offer: signaling::OfferIn| {
            let (cfg, node, expected) =
                (cfg.clone(), accepting.clone(), partner_fingerprint.clone());
            async move {
                if !crate::auth::sdp_names_fingerprint(&offer.offer_sdp, &expected) {
                    tracing::warn!("refusing a redial from a device that is not the partner");
                    return Err(RejectReason::InvalidToken);
                }
                let node = node.get().cloned().ok_or(RejectReason::Unknown)?;
                let (answer, mut link) = transport::accept_offer(&cfg, &offer.offer_sdp)
                    .await
                    .map_err(|e| {
                        tracing::warn!(%e, "cannot answer the partner's offer");
                        RejectReason::Unknown
                    })?;
                let (held, device_id) = (offer.pending.hold(), offer.device_id.clone());
                tokio::spawn(async move {
                    match held.run(link.wait_open(OPEN_TIMEOUT)).await {
                        Some(Ok(())) => node.add_admitted_link(link, device_id),
                        Some(Err(e)) => tracing::info!(%e, "the partner's link never opened"),
                        None => tracing::info!("the partner's link did not open in time"),
                    }
                });
                Ok(answer)
            }
        };
        let on_offer = Arc::new(on_offer);
        let serve = |port: u16| {
            let (door, on_offer) = (door.clone(), on_offer.clone());
            signaling::serve(SocketAddr::new(ip, port), door, move |o| on_offer(o))
        };
        let server = match serve(dir.port()).await {
            Ok(s) => s,
            Err(e) if dir.port() != 0 => {
                tracing::info!(%e, "the pair's usual port is taken; using another");
                serve(0).await.map_err(unreachable(ip))?
            }
            Err(e) => return Err(unreachable(ip)(e)),
        };
        let port = server.local_addr().port();
        dir.save_port(port);
        let ips = if transport.loopback_only {
            vec![ip]
        } else {
            transport::lan_addresses()
        };
        let endpoints = ips
            .into_iter()
            .take(MAX_ENDPOINTS)
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        Ok(RedialEndpoint {
            server,
            node,
            endpoints,
        })
    }
}

fn unreachable(ip: IpAddr) -> impl Fn(SignalingError) -> Error {
    move |e| Error::Unreachable {
        addr: ip.to_string(),
        detail: e.to_string(),
    }
}

/// The dialing side's dialer: reads the remembered pair from `record` at each dial (the machine
/// keeps it up to date), tries the addresses the partner's advert named (`found`), then the
/// endpoints it named on the last link, and takes the first answer that verifies — its MAC proves the pair secret, its
/// fingerprint is the partner's (PROTOCOL.md §9.4). `reached` hears which address answered.
pub(super) fn pair_dialer(
    record: PathBuf,
    transport: TransportConfig,
    (device_id, device_name): (String, String),
    found: Arc<Mutex<Vec<SocketAddr>>>,
) -> Dialer {
    Box::new(move |creds: JoinCredentials| {
        let (record, cfg, found) = (record.clone(), transport.clone(), found.clone());
        let (id, name) = (device_id.clone(), device_name.clone());
        let fut: DialFuture = Box::pin(async move {
            let dir = record.parent().unwrap_or(Path::new("."));
            let rec = read_pair(dir)
                .map_err(|e| e.to_string())?
                .ok_or("this pair is not remembered")?;
            let fp = rec
                .partner_fingerprint
                .clone()
                .ok_or("the remembered pair has no partner fingerprint")?;
            // The advert's addresses first, newest first: they are the freshest news (a partner
            // that moved is found at once, not after a connect timeout at its old address);
            // then the endpoints the partner named on the last link (no advert heard: multicast
            // filtered, or not yet).
            let mut targets = found.lock().unwrap_or_else(|e| e.into_inner()).clone();
            for a in &rec.partner_endpoints {
                if !targets.contains(a) {
                    targets.push(*a);
                }
            }
            if targets.is_empty() {
                return Err("the partner's address is not known yet".into());
            }
            let targets: Vec<JoinTarget> = targets
                .into_iter()
                .map(|addr| JoinTarget {
                    addr,
                    fingerprint: Some(fp.clone()),
                })
                .collect();
            let who = ("the partner", "no endpoint answered as the partner");
            first_verified(&cfg, &creds, (&id, &name), &targets, who, |_| {}).await
        });
        fut
    })
}
