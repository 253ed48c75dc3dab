//! ICE and DTLS under a link, sans-IO: `rtc`'s ICE agent finds and keeps the path, `rtc`'s DTLS
//! endpoint secures it, and what comes out is a stream of DTLS application records (the SCTP
//! packets of PROTOCOL.md §1, RFC 8261).
//!
//! Datagrams are told apart by their first byte (RFC 7983): 0–3 STUN (to the agent), 20–63
//! DTLS. DTLS is taken only from an address the agent has met (a remote candidate or a
//! peer-reflexive one learnt from a check), so a stranger's junk never reaches the endpoint;
//! the peer itself is authenticated by its certificate fingerprint from the SDP. The DTLS
//! connection is tunnelled: it is keyed by a fixed placeholder address and its records go out on
//! whatever pair ICE has selected, so a path change does not disturb it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig,
    VerifyPeerCertificateFn,
};
use rtc::dtls::endpoint::{Endpoint, EndpointEvent};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::ice::candidate::candidate_host::CandidateHostConfig;
use rtc::ice::candidate::candidate_server_reflexive::CandidateServerReflexiveConfig;
use rtc::ice::candidate::{Candidate, CandidateConfig};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::state::ConnectionState;
use rtc::ice::{Agent, AgentConfig, Event as IceEvent};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use sha2::{Digest, Sha256};
use tracing::{debug, trace};

use crate::invite::compact::CandidateType;

use super::TransportError;

/// Resend interval of a DTLS handshake flight that got no answer.
const DTLS_FLIGHT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// The DTLS connection's key in the endpoint (any address with a non-zero port): records are
/// routed by ICE, not by this address.
const TUNNEL: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    65535,
);

/// One candidate of ours or the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IceCandidate {
    /// Where it is reached.
    pub(crate) addr: SocketAddr,
    /// Host or server-reflexive.
    pub(crate) kind: CandidateType,
    /// The local address it sends from (a server-reflexive candidate's base); `addr` for hosts.
    pub(crate) base: SocketAddr,
    /// ICE priority (as written in the SDP).
    pub(crate) priority: u32,
}

/// Everything ICE and DTLS need, from both descriptions.
pub(crate) struct IceDtlsConfig {
    /// Our ICE credentials.
    pub(crate) local_ufrag: String,
    /// Our ICE password.
    pub(crate) local_pwd: String,
    /// The peer's ICE username fragment.
    pub(crate) remote_ufrag: String,
    /// The peer's ICE password.
    pub(crate) remote_pwd: String,
    /// Our candidates.
    pub(crate) local_candidates: Vec<IceCandidate>,
    /// The peer's candidates (may be empty: it is then met as peer-reflexive).
    pub(crate) remote_candidates: Vec<IceCandidate>,
    /// ICE controlling (the offerer).
    pub(crate) controlling: bool,
    /// DTLS client (sends the ClientHello once ICE has a pair).
    pub(crate) dtls_client: bool,
    /// Our certificate and key.
    pub(crate) certificate: rtc::dtls::crypto::Certificate,
    /// SHA-256 of the certificate the peer must present (`a=fingerprint`).
    pub(crate) remote_fingerprint: [u8; 32],
    /// Interval between connectivity checks while connecting.
    pub(crate) check_interval: Duration,
    /// Binding requests per pair before it is given up.
    pub(crate) max_binding_requests: u16,
    /// How long without connectivity before ICE fails for good.
    pub(crate) failed_timeout: Duration,
}

/// What ICE and DTLS report.
#[derive(Debug)]
pub(crate) enum IceDtlsEvent {
    /// The DTLS handshake completed with the peer whose fingerprint the SDP named.
    Secured,
    /// One DTLS application record (one SCTP packet).
    Record(BytesMut),
    /// ICE lost connectivity (may come back).
    Disconnected,
    /// ICE has connectivity (again).
    Connected,
    /// Over: ICE failed, the DTLS handshake gave up, or the peer sent close_notify.
    Failed(String),
}

/// A datagram to send.
#[derive(Debug)]
pub(crate) struct Transmit {
    /// Our address to send from (a bound socket).
    pub(crate) local: SocketAddr,
    /// The peer's address.
    pub(crate) remote: SocketAddr,
    /// The datagram.
    pub(crate) data: BytesMut,
}

/// ICE + DTLS for one link.
pub(crate) struct IceDtls {
    agent: Agent,
    dtls: Endpoint,
    /// The client's handshake settings until its ClientHello goes out.
    client_config: Option<Arc<HandshakeConfig>>,
    /// Where the last valid DTLS datagram came from (local, remote): replies go there until ICE
    /// has selected a pair.
    dtls_from: Option<(SocketAddr, SocketAddr)>,
    secured: bool,
    ended: bool,
    out: VecDeque<Transmit>,
    events: VecDeque<IceDtlsEvent>,
}

fn ice_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::Webrtc(e.to_string())
}

fn to_ice_candidate(c: &IceCandidate) -> Result<Candidate, TransportError> {
    let base_config = CandidateConfig {
        network: "udp".to_owned(),
        address: c.addr.ip().to_string(),
        port: c.addr.port(),
        component: 1,
        priority: c.priority,
        ..Default::default()
    };
    match c.kind {
        CandidateType::Host => CandidateHostConfig {
            base_config,
            ..Default::default()
        }
        .new_candidate_host(),
        CandidateType::ServerReflexive => CandidateServerReflexiveConfig {
            base_config,
            rel_addr: c.base.ip().to_string(),
            rel_port: c.base.port(),
            ..Default::default()
        }
        .new_candidate_server_reflexive(),
    }
    .map_err(ice_err)
}

/// The DTLS handshake settings: our certificate, the peer's fingerprint checked, extended
/// master secret required (RFC 8827 via RFC 8842), SRTP profiles offered as WebRTC stacks
/// expect them even though no media flows.
fn handshake_config(cfg: &IceDtlsConfig) -> Result<Arc<HandshakeConfig>, TransportError> {
    let provider = rtc::crypto::default_provider().map_err(ice_err)?;
    let expected = cfg.remote_fingerprint;
    let verify: VerifyPeerCertificateFn = Arc::new(move |certs: &[Vec<u8>], _chains: &[_]| {
        let first = certs
            .first()
            .ok_or(rtc::shared::error::Error::ErrNonCertificate)?;
        if Sha256::digest(first).as_slice() == expected {
            Ok(())
        } else {
            Err(rtc::shared::error::Error::ErrNoMatchingCertificateFingerprint)
        }
    });
    let config = ConfigBuilder::default()
        .with_crypto_provider(provider)
        .with_certificates(vec![cfg.certificate.clone()])
        .with_srtp_protection_profiles(vec![
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        ])
        .with_client_auth(ClientAuthType::RequireAnyClientCert)
        // Self-signed certificates: the fingerprint check above is the authentication.
        .with_insecure_skip_verify(true)
        .with_verify_peer_certificate(Some(verify))
        .with_extended_master_secret(ExtendedMasterSecretType::Require)
        // A lost handshake flight is resent after this (the default is 1 s, a long wait on a
        // lossy LAN whose round trip is a millisecond). The endpoint gives up after 7 resends
        // of one flight, i.e. 1.75 s without an answer; the session then redials.
        .with_flight_interval(DTLS_FLIGHT_INTERVAL)
        .build(cfg.dtls_client, None)
        .map_err(ice_err)?;
    Ok(Arc::new(config))
}

/// RFC 7983: STUN.
fn is_stun(d: &[u8]) -> bool {
    d.first().is_some_and(|&b| b <= 3)
}

/// RFC 7983: DTLS.
pub(crate) fn is_dtls(d: &[u8]) -> bool {
    d.first().is_some_and(|b| (20..=63).contains(b))
}

fn context(local: SocketAddr, remote: SocketAddr) -> TransportContext {
    TransportContext {
        local_addr: local,
        peer_addr: remote,
        ecn: None,
        transport_protocol: TransportProtocol::UDP,
    }
}

impl IceDtls {
    /// Starts ICE at once (both descriptions are known); DTLS starts when ICE has a pair.
    pub(crate) fn new(cfg: IceDtlsConfig, now: Instant) -> Result<Self, TransportError> {
        let provider = rtc::crypto::default_provider().map_err(ice_err)?;
        let agent_config = AgentConfig {
            local_ufrag: cfg.local_ufrag.clone(),
            local_pwd: cfg.local_pwd.clone(),
            // Candidates are LAN addresses; resolving the peer's mDNS names would need a
            // multicast route (it is then met through its checks instead).
            multicast_dns_mode: MulticastDnsMode::Disabled,
            check_interval: cfg.check_interval,
            max_binding_requests: Some(cfg.max_binding_requests),
            failed_timeout: Some(cfg.failed_timeout),
            is_controlling: cfg.controlling,
            ..Default::default()
        };
        let mut agent = Agent::new(now, Arc::new(agent_config), provider).map_err(ice_err)?;
        for c in &cfg.local_candidates {
            agent
                .add_local_candidate(to_ice_candidate(c)?)
                .map_err(ice_err)?;
        }
        for c in &cfg.remote_candidates {
            // One odd candidate does not spoil the others.
            if let Err(e) =
                to_ice_candidate(c).and_then(|c| agent.add_remote_candidate(c).map_err(ice_err))
            {
                debug!("remote candidate {}: {e}", c.addr);
            }
        }
        agent
            .start_connectivity_checks(
                now,
                cfg.controlling,
                cfg.remote_ufrag.clone(),
                cfg.remote_pwd.clone(),
            )
            .map_err(ice_err)?;
        let handshake = handshake_config(&cfg)?;
        let (dtls, client_config) = if cfg.dtls_client {
            (
                Endpoint::new(TUNNEL, TransportProtocol::UDP, None),
                Some(handshake),
            )
        } else {
            (
                Endpoint::new(TUNNEL, TransportProtocol::UDP, Some(handshake)),
                None,
            )
        };
        let mut me = Self {
            agent,
            dtls,
            client_config,
            dtls_from: None,
            secured: false,
            ended: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
        };
        me.after_ice(now);
        Ok(me)
    }

    /// One datagram that arrived on our socket `local` from `remote`.
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        if self.ended {
            return;
        }
        if is_stun(data) {
            let msg = TaggedBytesMut {
                now,
                transport: context(local, remote),
                message: BytesMut::from(data),
            };
            if let Err(e) = self.agent.handle_read(msg) {
                trace!(%remote, "STUN datagram dropped: {e}");
            }
            self.after_ice(now);
        } else if is_dtls(data) {
            if !self
                .agent
                .is_valid_non_stun_traffic(now, context(local, remote))
            {
                trace!(%remote, "DTLS from an address ICE has not met: dropped");
                return;
            }
            self.dtls_from = Some((local, remote));
            match self.dtls.read(now, TUNNEL, None, BytesMut::from(data)) {
                Ok(events) => {
                    for ev in events {
                        match ev {
                            EndpointEvent::HandshakeComplete => {
                                debug!("DTLS handshake complete");
                                self.secured = true;
                                self.events.push_back(IceDtlsEvent::Secured);
                            }
                            EndpointEvent::ApplicationData(rec) => {
                                self.events.push_back(IceDtlsEvent::Record(rec));
                            }
                            EndpointEvent::PeerClosed => {
                                self.fail("the peer closed DTLS".into());
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) => trace!(%remote, "DTLS datagram rejected: {e}"),
            }
            self.drain_dtls();
        } else {
            trace!(%remote, "datagram neither STUN nor DTLS: dropped");
        }
    }

    /// Sends one record (an SCTP packet). Before the handshake completes it is refused.
    pub(crate) fn send_record(&mut self, now: Instant, record: &[u8]) {
        if !self.secured || self.ended {
            return;
        }
        if let Err(e) = self.dtls.write(now, TUNNEL, record) {
            debug!("DTLS write: {e}");
        }
        self.drain_dtls();
    }

    /// True once the DTLS handshake completed.
    pub(crate) fn is_secured(&self) -> bool {
        self.secured && !self.ended
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if self.agent.poll_timeout().is_some_and(|t| t <= now) {
            if let Err(e) = self.agent.handle_timeout(now) {
                debug!("ICE timeout: {e}");
            }
            self.after_ice(now);
        }
        if self.dtls.poll_timeout(&TUNNEL).is_some_and(|t| t <= now) {
            if let Err(e) = self.dtls.handle_timeout(TUNNEL, now) {
                self.fail(format!("DTLS handshake: {e}"));
            }
            self.drain_dtls();
        }
    }

    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        if self.ended {
            return None;
        }
        [self.agent.poll_timeout(), self.dtls.poll_timeout(&TUNNEL)]
            .into_iter()
            .flatten()
            .min()
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<IceDtlsEvent> {
        self.events.pop_front()
    }

    /// Sends DTLS close_notify (the peer learns at once) and stops ICE.
    pub(crate) fn close(&mut self, now: Instant) {
        if self.ended {
            return;
        }
        if let Err(e) = self.dtls.close(now) {
            debug!("DTLS close: {e}");
        }
        self.drain_dtls();
        self.ended = true;
        let _ = self.agent.close();
        while self.agent.poll_event().is_some() {}
    }

    fn fail(&mut self, why: String) {
        if !self.ended {
            debug!("link transport over: {why}");
            self.events.push_back(IceDtlsEvent::Failed(why));
            self.ended = true;
        }
    }

    /// Where DTLS records go: the selected pair, else where the peer's DTLS came from.
    fn dtls_path(&self) -> Option<(SocketAddr, SocketAddr)> {
        match self.agent.get_selected_candidate_pair() {
            Some((local, remote)) => Some((local.base_addr(), remote.addr())),
            None => self.dtls_from,
        }
    }

    fn drain_dtls(&mut self) {
        let path = self.dtls_path();
        while let Some(t) = self.dtls.poll_transmit() {
            match path {
                Some((local, remote)) => self.out.push_back(Transmit {
                    local,
                    remote,
                    data: t.message,
                }),
                None => trace!("DTLS record with no path yet: dropped (it is retransmitted)"),
            }
        }
    }

    /// Takes the agent's datagrams and events after it ran.
    fn after_ice(&mut self, now: Instant) {
        while let Some(t) = self.agent.poll_write() {
            self.out.push_back(Transmit {
                local: t.transport.local_addr,
                remote: t.transport.peer_addr,
                data: t.message,
            });
        }
        while let Some(ev) = self.agent.poll_event() {
            match ev.event {
                IceEvent::ConnectionStateChange(state) => {
                    debug!(%state, "ICE connection state");
                    match state {
                        ConnectionState::Connected | ConnectionState::Completed => {
                            self.events.push_back(IceDtlsEvent::Connected)
                        }
                        ConnectionState::Disconnected => {
                            self.events.push_back(IceDtlsEvent::Disconnected)
                        }
                        // The agent drops its candidates on failure: no way back.
                        ConnectionState::Failed => self.fail("ICE failed".into()),
                        _ => {}
                    }
                }
                IceEvent::SelectedCandidatePairChange(local, remote) => {
                    debug!(local = %local.addr(), remote = %remote.addr(), "ICE selected a pair");
                    if let Some(config) = self.client_config.take() {
                        if let Err(e) = self.dtls.connect(now, TUNNEL, config, None) {
                            self.fail(format!("DTLS connect: {e}"));
                        }
                        self.drain_dtls();
                    }
                }
                _ => {}
            }
        }
    }
}

/// Settings for two ends wired back to back in tests.
#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
