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
//!
//! What lives where:
//! - `setup.rs`: making a link: [`create_offer`], [`accept_offer`], [`PendingOffer`], and
//!   [`lan_addresses`].
//! - `link.rs`: a made link: [`Link`], [`LinkSender`], [`LinkEvent`].
//! - `identity.rs`: the DTLS certificate a link presents ([`Identity`]).
//! - `sdp.rs`: our description written and the peer's read (PROTOCOL.md §7.1.5).
//! - `connection.rs`: one link sans-IO: ICE and DTLS under our SCTP, the two channels on top.
//! - `ice_dtls.rs`: `rtc`'s ICE agent and DTLS endpoint joined into one sans-IO piece.
//! - `driver.rs`: the tokio task that feeds a connection datagrams and timers, and sends.
//! - `net.rs`: sockets (segmented sends, coalesced receives), interface addresses, STUN.
//! - here: the settings, the errors, and the limits and stream ids both ends rely on.

mod connection;
mod driver;
mod ice_dtls;
mod identity;
mod link;
mod net;
mod sdp;
mod setup;

use std::fmt;
use std::time::Duration;

pub use identity::Identity;
pub use link::{Link, LinkEvent, LinkSender};
pub use setup::{accept_offer, create_offer, lan_addresses, PendingOffer};

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
pub(crate) const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(20);
/// Binding requests per candidate pair before the pair is given up: 100 × 20 ms = 2 s, like the
/// defaults (7 × 200 ms) give 1.4 s.
pub(crate) const ICE_MAX_BINDING_REQUESTS: u16 = 100;
/// SCTP packet budget. 1415 + DTLS record overhead + UDP + IPv6 headers fits a 1500-byte MTU
/// (a colleague measured 1435 as the largest that crosses a 1500-MTU veth over IPv4).
pub(crate) const SCTP_MTU: usize = 1415;
/// SCTP packet size probed for on loopback (64 KiB MTU): as large as one DTLS record allows
/// (16 KiB of plaintext), ten times fewer packets than the LAN budget. Probed only towards a
/// peer whose description allows it, and used only once the probe proved the peer takes them
/// (some stacks read at most 1500 bytes per datagram).
pub(crate) const SCTP_MTU_LOOPBACK: usize = 16 * 1024;

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

pub(crate) fn webrtc_err(e: impl fmt::Display) -> TransportError {
    TransportError::Webrtc(e.to_string())
}
