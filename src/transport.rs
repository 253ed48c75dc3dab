//! WebRTC links between two devices: one ICE + DTLS + SCTP connection carrying two data
//! channels.
//!
//! This is the only module that touches WebRTC. The stack is assembled here, sans-IO, from
//! `rtc`'s ICE agent and DTLS endpoint and our own SCTP association ([`crate::sctp`]), which
//! measures the round trip and repairs losses in milliseconds where general-purpose stacks wait
//! a second (`connection.rs`, `ice_dtls.rs`). One tokio task per link drives it (`driver.rs`):
//! it drains every outgoing datagram right after each input (datagram, timer, or send) and
//! sleeps until the next deadline, so setup runs at network speed and an idle link only wakes
//! for the ICE keepalive.
//!
//! A link ([`Link`]) is made by a non-trickle offer/answer exchange:
//! [`create_offer`] → (offer SDP to the other device) → [`accept_offer`] → (answer SDP back) →
//! [`PendingOffer::accept_answer`]. Each SDP is complete: host candidates (and server-reflexive
//! ones when ICE servers are configured) are gathered before it is produced. The SDP is the
//! data-channel-only form of PROTOCOL.md §7.1.5 plus `a=lansync-mtu-probe` (§1; `sdp.rs`):
//! the offerer writes
//! `a=setup:actpass` and controls ICE, the answerer writes `a=setup:active` (DTLS client).
//!
//! Both channels are negotiated out of band with fixed SCTP stream ids, `control` = 0 and
//! `binary` = 1, so no DCEP round trip is needed: they open as soon as SCTP is up.

mod connection;
mod driver;
mod ice_dtls;
mod net;
mod sdp;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rtc::crypto::SignatureScheme;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::invite::compact::SetupRole;
use connection::{Connection, ConnectionConfig, Side};
use driver::Shared;
use ice_dtls::{IceCandidate, IceDtlsConfig};

/// Largest control message accepted by [`LinkSender::send_control`], in bytes (UTF-8).
pub const MAX_CONTROL_MESSAGE: usize = 64 * 1024;
/// Largest binary message accepted by [`LinkSender::send_binary`], in bytes.
pub const MAX_BINARY_MESSAGE: usize = 16 * 1024;

/// SCTP receive window (`a_rwnd`): what a peer may have in flight towards us, and so what an
/// unfinished message may make us hold (PROTOCOL.md §1).
pub(crate) const RECEIVE_WINDOW: u32 = 512 * 1024;

/// SCTP stream id of the `control` channel (negotiated out of band on both sides).
pub const CONTROL_STREAM_ID: u16 = 0;
/// SCTP stream id of the `binary` channel (negotiated out of band on both sides).
pub const BINARY_STREAM_ID: u16 = 1;

/// ICE check interval while connecting. Setup does not depend on it (triggered checks answer at
/// once); it only paces retries over lossy paths. After connecting the agent switches to its
/// keepalive interval on its own.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// Binding requests per candidate pair before the pair is given up: 100 × 20 ms = 2 s, like the
/// defaults (7 × 200 ms) give 1.4 s.
const ICE_MAX_BINDING_REQUESTS: u16 = 100;
/// SCTP packet budget. 1415 + DTLS record overhead + UDP + IPv6 headers fits a 1500-byte MTU
/// (a colleague measured 1435 as the largest that crosses a 1500-MTU veth over IPv4).
const SCTP_MTU: usize = 1415;
/// SCTP packet size probed for on loopback (64 KiB MTU): as large as one DTLS record allows
/// (16 KiB of plaintext), ten times fewer packets than the LAN budget. Probed only towards a
/// peer whose description allows it, and used only once the probe proved the peer takes them
/// (some stacks read at most 1500 bytes per datagram).
const SCTP_MTU_LOOPBACK: usize = 16 * 1024;

/// Settings for making links.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Longest wait for candidate gathering (only server-reflexive candidates from
    /// [`ice_servers`](Self::ice_servers) take time; host candidates are immediate). When it
    /// runs out, the candidates found so far are used. Default 2 s.
    pub gather_timeout: Duration,
    /// Use only the loopback interface (tests, benchmarks, one-machine demos). Default false:
    /// every up, non-loopback interface address gets a host candidate.
    pub loopback_only: bool,
    /// ICE servers as URLs (`stun:host[:port]`). None by default. `turn:` URLs are not
    /// supported yet and are ignored with a warning.
    pub ice_servers: Vec<String>,
    /// Bound on the bytes queued but not yet acknowledged on the `binary` channel:
    /// [`LinkSender::send_binary`] waits while it would be exceeded. Default 1 MiB.
    pub send_buffer_limit: usize,
    /// DTLS identity to present. `None` uses one identity generated once per process (cheap
    /// setup; its fingerprint changes at each restart).
    pub certificate: Option<Identity>,
    /// How long ICE may go without connectivity before the link fails for good — also how long
    /// an offer waits for its answer, so a person has time to carry the answer code back.
    /// Default 10 minutes; the session's own heartbeat notices a dead link long before.
    pub ice_failed_timeout: Duration,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            gather_timeout: Duration::from_secs(2),
            loopback_only: false,
            ice_servers: Vec::new(),
            send_buffer_limit: 1024 * 1024,
            certificate: None,
            ice_failed_timeout: Duration::from_secs(600),
        }
    }
}

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The remote SDP could not be parsed or applied.
    #[error("bad SDP: {0}")]
    BadSdp(String),
    /// A send was attempted before both channels were open.
    #[error("link is not open yet")]
    NotOpen,
    /// A message exceeds the size limit of its channel.
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit of the channel.
        limit: usize,
        /// The size of the refused message.
        len: usize,
    },
    /// The link is closed (locally or by the peer) or lost for good.
    #[error("link is closed")]
    Closed,
    /// The channels did not open in time ([`Link::wait_open`]).
    #[error("link did not open in time")]
    OpenTimeout,
    /// No local address could be used for a candidate.
    #[error("no usable network interface")]
    NoInterface,
    /// A certificate/identity could not be generated, parsed or serialized.
    #[error("identity: {0}")]
    Identity(String),
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Error reported by the WebRTC stack (ICE, DTLS, randomness).
    #[error("webrtc: {0}")]
    Webrtc(String),
}

fn webrtc_err(e: impl fmt::Display) -> TransportError {
    TransportError::Webrtc(e.to_string())
}

/// A persistent DTLS identity (certificate + private key), so a master's fingerprint stays the
/// same across restarts. ECDSA P-256, self-signed.
#[derive(Clone)]
pub struct Identity {
    cert: RTCCertificate,
}

impl fmt::Debug for Identity {
    // Never print the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

fn crypto_provider() -> Result<Arc<dyn rtc::crypto::RTCCryptoProvider>, TransportError> {
    rtc::crypto::default_provider().map_err(|e| TransportError::Identity(e.to_string()))
}

impl Identity {
    /// Generates a new identity.
    pub fn generate() -> Result<Self, TransportError> {
        let provider = crypto_provider()?;
        let params = CertificateParams::new(vec!["lansync".to_owned()])
            .map_err(|e| TransportError::Identity(e.to_string()))?;
        let cert =
            RTCCertificate::generate(provider.crypto(), SignatureScheme::EcdsaP256Sha256, params)
                .map_err(|e| TransportError::Identity(e.to_string()))?;
        Ok(Self { cert })
    }

    /// Serializes certificate and private key as PEM text (keep it secret: it holds the key).
    pub fn to_pem(&self) -> String {
        // Only keys held outside the process (HSM) fail to serialize; ours never are.
        self.cert.serialize_pem().unwrap_or_default()
    }

    /// Reads an identity written by [`to_pem`](Self::to_pem).
    pub fn from_pem(s: &str) -> Result<Self, TransportError> {
        // The engine's parser indexes the EXPIRES block without a length check; check it first
        // so damaged files give an error instead of a panic.
        if !expires_block_ok(s) {
            return Err(TransportError::Identity(
                "missing or malformed EXPIRES block".into(),
            ));
        }
        let provider = crypto_provider()?;
        let cert = RTCCertificate::from_pem(s, provider.crypto())
            .map_err(|e| TransportError::Identity(e.to_string()))?;
        Ok(Self { cert })
    }

    /// The certificate fingerprint as written in SDP: `"sha-256 AB:CD:…"`.
    pub fn fingerprint(&self) -> String {
        let fp = crypto_provider()
            .ok()
            .and_then(|p| self.cert.get_fingerprints(p.crypto()).ok())
            .and_then(|v| v.into_iter().next());
        match fp {
            Some(fp) => format!("{} {}", fp.algorithm, fp.value.to_uppercase()),
            None => String::new(),
        }
    }

    /// SHA-256 of the certificate (the `a=fingerprint:sha-256` value, raw).
    fn fingerprint_bytes(&self) -> [u8; 32] {
        let der = self.cert.dtls_certificate.certificate.first();
        der.map(|d| Sha256::digest(d.as_ref()).into())
            .unwrap_or_default()
    }

    /// The identity used when [`TransportConfig::certificate`] is `None`: generated once per
    /// process, because key generation would otherwise dominate link setup.
    fn process_default() -> Result<Self, TransportError> {
        static DEFAULT: OnceLock<Identity> = OnceLock::new();
        if let Some(id) = DEFAULT.get() {
            return Ok(id.clone());
        }
        let id = Self::generate()?;
        Ok(DEFAULT.get_or_init(|| id).clone())
    }
}

/// True when `s` starts with a PEM block tagged EXPIRES whose body decodes to ≥ 8 bytes.
fn expires_block_ok(s: &str) -> bool {
    let first = s.trim_start().split("\n\n").next().unwrap_or("");
    let mut lines = first.lines().map(str::trim);
    if lines.next() != Some("-----BEGIN EXPIRES-----") {
        return false;
    }
    let mut body = String::new();
    for line in lines {
        if line == "-----END EXPIRES-----" {
            let padding = body.chars().rev().take_while(|&c| c == '=').count();
            let valid = body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=');
            return valid && body.len() % 4 == 0 && body.len() / 4 * 3 >= 8 + padding.min(2);
        }
        body.push_str(line);
    }
    false
}

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
        Ok(Link {
            shared,
            events: rx,
            stash: std::collections::VecDeque::new(),
            open: false,
            task: Some(task),
        })
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

/// What happens on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Both channels are open. Reported once ([`Link::wait_open`] consumes it).
    Open,
    /// A message on the `control` channel.
    Control(String),
    /// A message on the `binary` channel.
    Binary(bytes::Bytes),
    /// Connectivity lost (ICE disconnected): may recover.
    Down,
    /// Connectivity recovered after [`Down`](Self::Down).
    Up,
    /// The link is over (closed by the peer, a channel closed, or ICE failed). Last event.
    Closed,
}

/// One open (or opening) link to a peer. Owns the connection: dropping it, or
/// [`close`](Self::close), closes it.
pub struct Link {
    shared: Arc<Shared>,
    events: mpsc::Receiver<LinkEvent>,
    /// Events read by [`wait_open`](Self::wait_open) before `Open`, handed out by `recv`.
    stash: std::collections::VecDeque<LinkEvent>,
    open: bool,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").field("open", &self.open).finish()
    }
}

impl Link {
    /// Waits until both channels are open, at most `timeout`. Other events that arrive first
    /// are kept for [`recv`](Self::recv).
    pub async fn wait_open(&mut self, timeout: Duration) -> Result<(), TransportError> {
        if self.open {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Err(TransportError::OpenTimeout),
                Ok(None) => return Err(TransportError::Closed),
                Ok(Some(LinkEvent::Open)) => {
                    self.open = true;
                    return Ok(());
                }
                Ok(Some(LinkEvent::Closed)) => {
                    self.stash.push_back(LinkEvent::Closed);
                    return Err(TransportError::Closed);
                }
                Ok(Some(other)) => self.stash.push_back(other),
            }
        }
    }

    /// A handle for sending, usable from other tasks.
    pub fn sender(&self) -> LinkSender {
        LinkSender {
            shared: self.shared.clone(),
        }
    }

    /// The next event; `None` once the link is closed for good and every event was read.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        if let Some(ev) = self.stash.pop_front() {
            return Some(ev);
        }
        let ev = self.events.recv().await;
        if ev == Some(LinkEvent::Open) {
            self.open = true;
        }
        ev
    }

    /// Closes the connection (the peer sees [`LinkEvent::Closed`]) and waits for the driver.
    pub async fn close(mut self) {
        self.shared.close_local();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.close_local();
    }
}

/// Sends on a link. Cheap to clone; `Send + Sync`. Sends go straight to the socket from the
/// calling task (no hop through the driver).
#[derive(Clone)]
pub struct LinkSender {
    shared: Arc<Shared>,
}

impl fmt::Debug for LinkSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSender").finish_non_exhaustive()
    }
}

impl LinkSender {
    /// Sends a text message on the `control` channel (ordered, reliable).
    pub async fn send_control(&self, text: &str) -> Result<(), TransportError> {
        if text.len() > MAX_CONTROL_MESSAGE {
            return Err(TransportError::TooLarge {
                limit: MAX_CONTROL_MESSAGE,
                len: text.len(),
            });
        }
        self.shared.send_control(text)
    }

    /// Sends a binary message on the `binary` channel (ordered, reliable). Waits while the
    /// channel's unacknowledged bytes would exceed [`TransportConfig::send_buffer_limit`];
    /// never drops.
    pub async fn send_binary(&self, data: &[u8]) -> Result<(), TransportError> {
        if data.len() > MAX_BINARY_MESSAGE {
            return Err(TransportError::TooLarge {
                limit: MAX_BINARY_MESSAGE,
                len: data.len(),
            });
        }
        self.shared.send_binary(data).await
    }

    /// Bytes queued on the `binary` channel and not yet acknowledged by the peer.
    pub fn buffered_binary(&self) -> usize {
        self.shared.buffered_binary()
    }

    /// True once both channels are open and the link is not closed.
    pub fn is_open(&self) -> bool {
        self.shared.is_open()
    }

    /// For tests and demos: while `on`, this side drops every datagram it receives, as if the
    /// network were cut towards it. ICE reports [`LinkEvent::Down`] after about 5 s and
    /// [`LinkEvent::Up`] once datagrams flow again (the link closes if the cut lasts ~30 s).
    pub fn simulate_receive_loss(&self, on: bool) {
        self.shared
            .drop_incoming
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_pem_round_trip() {
        let id = Identity::generate().unwrap();
        let pem = id.to_pem();
        let back = Identity::from_pem(&pem).unwrap();
        assert_eq!(id.fingerprint(), back.fingerprint());
        assert!(id.fingerprint().starts_with("sha-256 "));
    }

    #[test]
    fn identity_bad_pem_is_an_error() {
        for s in [
            "",
            "junk",
            "-----BEGIN EXPIRES-----\nAA==\n-----END EXPIRES-----\n\n",
            "-----BEGIN EXPIRES-----\n-----END EXPIRES-----\n",
        ] {
            assert!(Identity::from_pem(s).is_err(), "{s:?}");
        }
    }
}
