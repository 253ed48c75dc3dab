//! Making a link: bind sockets and gather candidates, write our description, read the peer's,
//! and start the connection with its driver task (the offer/answer exchange of transport.rs).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::invite::compact::SetupRole;

use super::connection::{Connection, ConnectionConfig, Side};
use super::driver::{self, Shared};
use super::ice_dtls::{IceCandidate, IceDtlsConfig};
use super::identity::Identity;
use super::link::Link;
use super::{
    net, sdp, webrtc_err, TransportConfig, TransportError, CONTROL_STREAM_ID, ICE_CHECK_INTERVAL,
    ICE_MAX_BINDING_REQUESTS, MAX_CONTROL_MESSAGE, RECEIVE_WINDOW, SCTP_MTU, SCTP_MTU_LOOPBACK,
};

/// An offer made by [`create_offer`], waiting for the peer's answer. It holds the bound sockets;
/// dropping it abandons the attempt.
pub struct PendingOffer {
    sdp: String,
    setup: Setup,
}

impl fmt::Debug for PendingOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingOffer")
            .field("sdp_len", &self.sdp.len())
            .finish()
    }
}

impl PendingOffer {
    /// The complete offer SDP (all gathered candidates included) to hand to the other device.
    pub fn sdp(&self) -> &str {
        &self.sdp
    }

    /// Applies the peer's answer and starts connecting. Returns at once; use
    /// [`Link::wait_open`] to wait for the channels.
    pub async fn accept_answer(self, answer_sdp: &str) -> Result<Link, TransportError> {
        let remote = sdp::read(answer_sdp)?;
        // The answerer picks the DTLS role: `passive` makes us the client; `active` (what
        // lansync and browsers answer) makes us the server.
        let dtls_client = remote.setup == SetupRole::Passive;
        self.setup.start(Side::Offerer, remote, dtls_client)
    }
}

/// Everything a link needs before the peer's description is known.
struct Setup {
    identity: Identity,
    sockets: Vec<net::HostSocket>,
    candidates: Vec<IceCandidate>,
    ufrag: String,
    pwd: String,
    cfg: TransportConfig,
}

/// Fresh ICE credentials of the RFC 8445 minimum lengths (4 and 22 characters, 24 and 132
/// random bits): short credentials are what keeps an invite code under 100 characters.
fn ice_credentials() -> Result<(String, String), TransportError> {
    const ICE_CHARS: &[u8; 64] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = [0u8; 26];
    getrandom::fill(&mut bytes).map_err(webrtc_err)?;
    let text: String = bytes
        .iter()
        .map(|b| ICE_CHARS[usize::from(b % 64)] as char)
        .collect();
    Ok((text[..4].to_string(), text[4..].to_string()))
}

impl Setup {
    /// Binds sockets and gathers candidates.
    async fn new(cfg: &TransportConfig) -> Result<Self, TransportError> {
        let identity = match &cfg.certificate {
            Some(id) => id.clone(),
            None => Identity::process_default()?,
        };
        let sockets = net::bind_host_sockets(cfg.loopback_only)?;
        let srflx = net::gather_srflx(&sockets, &cfg.ice_servers, cfg.gather_timeout).await;
        let hosts: Vec<_> = sockets.iter().map(|s| s.addr).collect();
        let candidates = sdp::local_candidates(&hosts, &srflx);
        let (ufrag, pwd) = ice_credentials()?;
        Ok(Self {
            identity,
            sockets,
            candidates,
            ufrag,
            pwd,
            cfg: cfg.clone(),
        })
    }

    /// Our description with this `a=setup`.
    fn sdp(&self, setup: SetupRole) -> String {
        sdp::write(
            &self.ufrag,
            &self.pwd,
            self.identity.fingerprint_bytes(),
            setup,
            &self.candidates,
        )
    }

    /// Builds the connection and spawns its driver task.
    fn start(
        self,
        side: Side,
        remote: sdp::Remote,
        dtls_client: bool,
    ) -> Result<Link, TransportError> {
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed).map_err(webrtc_err)?;
        let sctp = crate::sctp::Config {
            mtu: SCTP_MTU,
            // Only a peer that says an oversized record is harmless to it is probed (a padded
            // probe makes Chromium fail the whole DTLS connection).
            probe_mtu: (self.cfg.loopback_only && remote.mtu_probe).then_some(SCTP_MTU_LOOPBACK),
            max_message_size: MAX_CONTROL_MESSAGE,
            receive_window: RECEIVE_WINDOW,
            priority_streams: vec![CONTROL_STREAM_ID],
            ..Default::default()
        };
        let ice = IceDtlsConfig {
            local_ufrag: self.ufrag,
            local_pwd: self.pwd,
            remote_ufrag: remote.ufrag,
            remote_pwd: remote.pwd,
            local_candidates: self.candidates,
            remote_candidates: remote.candidates,
            controlling: side == Side::Offerer,
            dtls_client,
            certificate: self.identity.cert.dtls_certificate.clone(),
            remote_fingerprint: remote.fingerprint,
            check_interval: ICE_CHECK_INTERVAL,
            max_binding_requests: ICE_MAX_BINDING_REQUESTS,
            failed_timeout: self.cfg.ice_failed_timeout,
        };
        let conn = Connection::new(
            ConnectionConfig {
                ice,
                side,
                sctp,
                seed,
                remote_max_message_size: remote.max_message_size,
            },
            Instant::now(),
        )?;
        let (tx, rx) = mpsc::channel(driver::EVENT_CHANNEL_CAPACITY);
        let sockets: Arc<[net::HostSocket]> = self.sockets.into();
        let shared = Shared::new(conn, sockets.clone(), self.cfg.send_buffer_limit);
        let task = tokio::spawn(driver::run(shared.clone(), sockets, tx));
        Ok(Link::new(shared, rx, task))
    }
}

/// Addresses of this machine's up, non-loopback interfaces (IPv4 first): where peers on the LAN
/// can reach it, e.g. for a join link.
pub fn lan_addresses() -> Vec<std::net::IpAddr> {
    let mut addrs = net::interface_addresses();
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs
}

/// Gathers candidates and creates an offer. The returned [`PendingOffer`] carries the full SDP.
pub async fn create_offer(cfg: &TransportConfig) -> Result<PendingOffer, TransportError> {
    let setup = Setup::new(cfg).await?;
    let sdp = setup.sdp(SetupRole::ActPass);
    Ok(PendingOffer { sdp, setup })
}

/// Answers an offer: gathers candidates, applies the offer and starts connecting at once.
/// Returns the complete answer SDP to send back and the link.
pub async fn accept_offer(
    cfg: &TransportConfig,
    offer_sdp: &str,
) -> Result<(String, Link), TransportError> {
    // Parse before binding anything, so junk input costs nothing.
    let remote = sdp::read(offer_sdp)?;
    let setup = Setup::new(cfg).await?;
    // We take the DTLS client role unless the offer insists on it.
    let ours = if remote.setup == SetupRole::Active {
        SetupRole::Passive
    } else {
        SetupRole::Active
    };
    let sdp = setup.sdp(ours);
    let link = setup.start(Side::Answerer, remote, ours == SetupRole::Active)?;
    Ok((sdp, link))
}
