//! The four-way handshake (RFC 9260 §5.1): INIT → INIT ACK carrying a State Cookie →
//! COOKIE ECHO → COOKIE ACK, and the keys drawn from the seed.
//!
//! The State Cookie is the peer's INIT parameters and our tag under an HMAC-SHA256 keyed from
//! the seed: answering an INIT keeps no state, and a cookie we did not issue is refused.

use std::time::Instant;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{Association, Peer, State, COMMON_HEADER_LEN, STREAMS};
use crate::sctp::chunk::{Chunk, Init};

type HmacSha256 = Hmac<Sha256>;

/// Cookie layout: version, our tag, then the peer's tag, a_rwnd, outbound and inbound streams,
/// initial TSN; the MAC over all of it follows.
const COOKIE_VERSION: u8 = 1;
const COOKIE_BODY_LEN: usize = 1 + 4 + 4 + 4 + 2 + 2 + 4;
const COOKIE_LEN: usize = COOKIE_BODY_LEN + 32;

/// What the seed gives.
pub(super) struct Keys {
    pub(super) tag: u32,
    pub(super) initial_tsn: u32,
    pub(super) cookie_key: [u8; 32],
    pub(super) probe_nonce: [u8; 8],
}

impl Keys {
    /// Tag and initial TSN go on the wire; the cookie key is a separate hash, so they say
    /// nothing about it.
    pub(super) fn derive(seed: &[u8; 16]) -> Self {
        let hash = |label: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(b"lansync sctp ");
            h.update(label);
            h.update(seed);
            h.finalize().into()
        };
        let ids = hash(b"ids");
        let tag = u32::from_be_bytes([ids[0], ids[1], ids[2], ids[3]]).max(1);
        let initial_tsn = u32::from_be_bytes([ids[4], ids[5], ids[6], ids[7]]);
        let mut probe_nonce = [0; 8];
        probe_nonce.copy_from_slice(&ids[8..16]);
        Self {
            tag,
            initial_tsn,
            cookie_key: hash(b"cookie"),
            probe_nonce,
        }
    }
}

/// Bytes a HEARTBEAT chunk adds around its info (chunk and parameter headers).
pub(super) fn heartbeat_overhead() -> usize {
    Chunk::Heartbeat(Bytes::new()).encoded_len()
}

impl Association {
    /// Our INIT (or INIT ACK, with a cookie).
    pub(super) fn our_init(&self, cookie: Option<Bytes>) -> Init {
        Init {
            initiate_tag: self.local_tag,
            a_rwnd: self.cfg.receive_window,
            outbound_streams: STREAMS,
            inbound_streams: STREAMS,
            initial_tsn: self.initial_tsn,
            cookie,
            forward_tsn: false,
            reconfig: true,
        }
    }

    /// Any INIT before the association closes gets our one INIT ACK (stateless: the
    /// peer's parameters travel in the cookie).
    pub(super) fn on_init(&mut self, init: &Init) {
        if !valid(init) {
            return;
        }
        let cookie = self.make_cookie(init);
        let ack = self.our_init(Some(cookie));
        self.solo.retain(|(_, c)| !matches!(c, Chunk::InitAck(_)));
        self.solo
            .push_back((init.initiate_tag, Chunk::InitAck(ack)));
    }

    /// The INIT ACK to our INIT: echo its cookie.
    pub(super) fn on_init_ack(&mut self, now: Instant, ack: Init) {
        if self.state != State::CookieWait || !valid(&ack) {
            return;
        }
        // The echo must fit one packet (ours are 54 bytes; browsers' a few hundred).
        let most = self.cfg.mtu.saturating_sub(COMMON_HEADER_LEN + 4);
        let Some(cookie) = ack
            .cookie
            .clone()
            .filter(|c| !c.is_empty() && c.len() <= most)
        else {
            return;
        };
        self.peer = Some(peer_of(&ack));
        self.state = State::CookieEchoed;
        self.solo.retain(|(_, c)| !matches!(c, Chunk::Init(_)));
        self.control.push_back(Chunk::CookieEcho(cookie.clone()));
        self.cookie = Some(cookie);
        self.retry = Some(super::Retry {
            at: now + self.cfg.rto_initial,
            rto: self.cfg.rto_initial,
            retries: 0,
        });
    }

    /// A COOKIE ECHO: if the cookie is ours, the association is up (or already was: the
    /// COOKIE ACK was lost) and a COOKIE ACK answers.
    pub(super) fn on_cookie_echo(&mut self, now: Instant, cookie: &[u8]) {
        let Some(peer) = self.open_cookie(cookie) else {
            return;
        };
        match self.state {
            State::Established => {
                // A restart (a new peer tag) is not supported: the transport makes a new
                // association for a new DTLS connection.
                if self.peer.is_some_and(|p| p.tag == peer.tag) {
                    self.control.push_back(Chunk::CookieAck);
                }
            }
            State::Closed => {}
            State::Idle | State::CookieWait | State::CookieEchoed => {
                self.peer = Some(peer);
                self.control.retain(|c| !matches!(c, Chunk::CookieEcho(_)));
                self.establish(now);
                self.control.push_back(Chunk::CookieAck);
            }
        }
    }

    fn mac(&self) -> Option<HmacSha256> {
        HmacSha256::new_from_slice(&self.cookie_key).ok()
    }

    fn make_cookie(&self, init: &Init) -> Bytes {
        let mut c = Vec::with_capacity(COOKIE_LEN);
        c.push(COOKIE_VERSION);
        c.extend_from_slice(&self.local_tag.to_be_bytes());
        c.extend_from_slice(&init.initiate_tag.to_be_bytes());
        c.extend_from_slice(&init.a_rwnd.to_be_bytes());
        c.extend_from_slice(&init.outbound_streams.to_be_bytes());
        c.extend_from_slice(&init.inbound_streams.to_be_bytes());
        c.extend_from_slice(&init.initial_tsn.to_be_bytes());
        if let Some(mut mac) = self.mac() {
            mac.update(&c);
            c.extend_from_slice(&mac.finalize().into_bytes());
        }
        Bytes::from(c)
    }

    /// The peer's parameters from a cookie we issued, or `None`.
    fn open_cookie(&self, cookie: &[u8]) -> Option<Peer> {
        if cookie.len() != COOKIE_LEN {
            return None;
        }
        let (body, tag) = cookie.split_at(COOKIE_BODY_LEN);
        let mut mac = self.mac()?;
        mac.update(body);
        mac.verify_slice(tag).ok()?;
        let u32_at =
            |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        let u16_at = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
        if body[0] != COOKIE_VERSION || u32_at(1) != self.local_tag {
            return None;
        }
        Some(Peer {
            tag: u32_at(5),
            a_rwnd: u32_at(9),
            outbound_streams: u16_at(13),
            inbound_streams: u16_at(15),
            initial_tsn: u32_at(17),
        })
    }
}

/// RFC 9260 §3.3.2: a zero tag or zero streams make an INIT invalid.
fn valid(init: &Init) -> bool {
    init.initiate_tag != 0 && init.outbound_streams != 0 && init.inbound_streams != 0
}

fn peer_of(init: &Init) -> Peer {
    Peer {
        tag: init.initiate_tag,
        initial_tsn: init.initial_tsn,
        a_rwnd: init.a_rwnd,
        outbound_streams: init.outbound_streams,
        inbound_streams: init.inbound_streams,
    }
}
