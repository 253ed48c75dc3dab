//! The association state machine and the API the transport drives.
//!
//! States (RFC 9260 §4, reduced to what data channels need): idle → COOKIE-WAIT (INIT sent) →
//! COOKIE-ECHOED (COOKIE ECHO sent) → established → closed. The handshake is in
//! `handshake.rs`, packet building in `transmit.rs`.
//!
//! One local verification tag and one initial TSN serve the association's whole life, so
//! crossing INITs (both ends connect, as browsers do) need no tie-breaking: every INIT is
//! answered with the same INIT ACK, every valid COOKIE ECHO with a COOKIE ACK.

mod handshake;
mod transmit;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::chunk::{
    describe_causes, encode_causes, Chunk, ErrorCause, ReconfigParam, CAUSE_PROTOCOL_VIOLATION,
    CAUSE_USER_INITIATED_ABORT as CAUSE_USER_ABORT,
};
use super::packet::{Packet, COMMON_HEADER_LEN};
use super::recv::{Delivery, Receiver, RecvConfig};
use super::send::{SendConfig, Sender};

/// Settings of an association.
#[derive(Debug, Clone)]
pub struct Config {
    /// SCTP port on both sides (`a=sctp-port`, 5000 in WebRTC).
    pub port: u16,
    /// Largest SCTP packet sent before a probe proves more (RFC 8261 §5: fits a 1500-byte
    /// path inside DTLS, UDP and IPv6).
    pub mtu: usize,
    /// A larger packet size to probe for once established (RFC 8899 with a padded HEARTBEAT),
    /// e.g. on loopback; `None` never probes.
    pub probe_mtu: Option<usize>,
    /// Largest message accepted from the peer (`a=max-message-size` we announce). A message
    /// that would exceed it is refused at its first chunk past the limit.
    pub max_message_size: usize,
    /// Receive window we advertise (`a_rwnd`), bytes: all the peer may have outstanding.
    pub receive_window: u32,
    /// Floor of the retransmission timeout (a LAN round trip is well under a millisecond).
    pub rto_min: Duration,
    /// Ceiling of the retransmission timeout.
    pub rto_max: Duration,
    /// Retransmission timeout before the round trip is measured (INIT, COOKIE ECHO).
    pub rto_initial: Duration,
    /// Longest a SACK is held back waiting for a second packet to acknowledge together.
    pub ack_delay: Duration,
    /// Consecutive retransmission timeouts after which the association fails.
    pub max_retransmissions: u32,
    /// Streams whose messages go ahead of the others' (the `control` channel).
    pub priority_streams: Vec<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: 5000,
            mtu: 1200,
            probe_mtu: None,
            max_message_size: 64 * 1024,
            receive_window: 1024 * 1024,
            rto_min: Duration::from_millis(10),
            rto_max: Duration::from_secs(1),
            rto_initial: Duration::from_millis(200),
            ack_delay: Duration::from_millis(5),
            max_retransmissions: 20,
            priority_streams: vec![0],
        }
    }
}

/// What the association tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed: messages flow.
    Connected,
    /// A whole message arrived.
    Message {
        /// Stream it arrived on.
        stream: u16,
        /// Its payload protocol identifier.
        ppid: u32,
        /// The message.
        payload: Bytes,
    },
    /// The peer reset these incoming streams (RFC 6525; a data channel closed).
    StreamsReset(Vec<u16>),
    /// Room opened in the send buffer (bytes were acknowledged).
    Acked,
    /// The association is over (peer ABORT or SHUTDOWN, too many timeouts, a protocol
    /// violation, or [`Association::close`]). Last event.
    Closed {
        /// Why, for the log.
        reason: String,
    },
}

/// Why a send was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The association is not established (yet, or any more).
    #[error("association not established")]
    NotEstablished,
    /// Empty payload (send one zero byte with an "empty" PPID instead, RFC 8831 §6.6).
    #[error("empty payload")]
    Empty,
}

/// Streams we offer each way (RFC 8831 §6.2: 65535 lets the peer pick any channel id).
const STREAMS: u16 = u16::MAX;
/// Retransmissions of INIT or COOKIE ECHO before giving up.
const MAX_HANDSHAKE_RETRIES: u32 = 8;
/// Attempts of the path MTU probe before keeping `mtu`.
const PROBE_ATTEMPTS: u32 = 3;
/// Largest Heartbeat Info echoed (a probe's: an SCTP packet fits one DTLS record).
const MAX_HEARTBEAT_ECHO: usize = 16 * 1024;
/// Control chunks waiting to go out at most: HEARTBEATs past it are not answered.
const MAX_CONTROL_QUEUE: usize = 64;
/// Bytes of a peer's ABORT reason kept in our close reason.
const MAX_REASON: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the peer's INIT (or for `connect`).
    Idle,
    /// INIT sent.
    CookieWait,
    /// COOKIE ECHO sent.
    CookieEchoed,
    Established,
    Closed,
}

/// What the peer announced in its INIT (or INIT ACK, or inside our cookie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Peer {
    tag: u32,
    initial_tsn: u32,
    a_rwnd: u32,
    outbound_streams: u16,
    inbound_streams: u16,
}

/// The INIT or COOKIE ECHO retransmission timer.
#[derive(Debug, Clone, Copy)]
struct Retry {
    at: Instant,
    rto: Duration,
    retries: u32,
}

/// The path MTU probe (RFC 8899 with a padded HEARTBEAT).
#[derive(Debug, Clone, Copy)]
struct Probe {
    size: usize,
    sent: u32,
    /// Send an attempt at the next `poll_transmit`.
    due: bool,
    /// The current attempt is lost by then.
    expires: Option<Instant>,
}

/// An SCTP association over one DTLS connection.
#[derive(Debug)]
pub struct Association {
    cfg: Config,
    state: State,
    local_tag: u32,
    initial_tsn: u32,
    cookie_key: [u8; 32],
    /// Marks our own HEARTBEATs (the probe's).
    probe_nonce: [u8; 8],
    peer: Option<Peer>,
    /// The peer's State Cookie, echoed until COOKIE ACK.
    cookie: Option<Bytes>,
    retry: Option<Retry>,
    probe: Option<Probe>,
    /// The largest packet we send now.
    mtu: usize,
    sender: Option<Sender>,
    receiver: Option<Receiver>,
    /// Packets of one chunk under their own verification tag (INIT: 0; INIT ACK: the tag
    /// of the INIT it answers).
    solo: VecDeque<(u32, Chunk)>,
    /// Control chunks for the peer's tag, bundled ahead of DATA.
    control: VecDeque<Chunk>,
    events: VecDeque<Event>,
    /// Why it closed; reported after the messages that arrived before.
    closed: Option<String>,
    closed_reported: bool,
}

impl Association {
    /// A new association. `seed` gives the verification tag, the initial TSN and cookie
    /// material (the caller draws it from a CSPRNG).
    pub fn new(cfg: Config, seed: [u8; 16], _now: Instant) -> Self {
        let keys = handshake::Keys::derive(&seed);
        let mtu = cfg.mtu;
        Self {
            cfg,
            state: State::Idle,
            local_tag: keys.tag,
            initial_tsn: keys.initial_tsn,
            cookie_key: keys.cookie_key,
            probe_nonce: keys.probe_nonce,
            peer: None,
            cookie: None,
            retry: None,
            probe: None,
            mtu,
            sender: None,
            receiver: None,
            solo: VecDeque::new(),
            control: VecDeque::new(),
            events: VecDeque::new(),
            closed: None,
            closed_reported: false,
        }
    }

    /// Starts the handshake (sends INIT). Both ends may call it: a crossing INIT is resolved
    /// as RFC 9260 §5.2.1 says. An end that never calls it waits for the peer's INIT.
    pub fn connect(&mut self, now: Instant) {
        if self.state != State::Idle {
            return;
        }
        self.state = State::CookieWait;
        self.solo.push_back((0, Chunk::Init(self.our_init(None))));
        self.retry = Some(Retry {
            at: now + self.cfg.rto_initial,
            rto: self.cfg.rto_initial,
            retries: 0,
        });
    }

    /// One packet from the peer (the plaintext of one DTLS record). Junk is dropped.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        let Ok(p) = Packet::decode(&Bytes::copy_from_slice(packet)) else {
            return;
        };
        if p.src_port != self.cfg.port || p.dst_port != self.cfg.port || !self.tag_ok(&p) {
            return;
        }
        let before = self.sender.as_ref().map(Sender::buffered_total);
        let mut data = false;
        let mut sacked = false;
        for chunk in p.chunks {
            match chunk {
                Chunk::Init(init) => self.on_init(&init),
                Chunk::InitAck(init) => self.on_init_ack(now, init),
                Chunk::CookieEcho(cookie) => self.on_cookie_echo(now, &cookie),
                Chunk::CookieAck => {
                    if self.state == State::CookieEchoed {
                        self.establish(now);
                    }
                }
                Chunk::Data(d) => {
                    let Some(r) = self.receiver.as_mut() else {
                        continue;
                    };
                    data = true;
                    if let Err(e) = r.on_data(d) {
                        self.abort(CAUSE_PROTOCOL_VIOLATION, &e.to_string());
                    }
                }
                Chunk::Sack(sack) => {
                    if let Some(s) = self.sender.as_mut() {
                        s.on_sack(&sack, now);
                        sacked = true;
                    }
                }
                Chunk::Heartbeat(info) => {
                    if info.len() <= MAX_HEARTBEAT_ECHO
                        && self.peer.is_some()
                        && self.control.len() < MAX_CONTROL_QUEUE
                    {
                        self.control.push_back(Chunk::HeartbeatAck(info));
                    }
                }
                Chunk::HeartbeatAck(info) => self.on_heartbeat_ack(&info),
                Chunk::Abort { causes, .. } => {
                    let why = describe_causes(&causes, MAX_REASON);
                    self.set_closed(if why.is_empty() {
                        "peer aborted".into()
                    } else {
                        format!("peer aborted ({why})")
                    });
                }
                Chunk::Shutdown { .. } => {
                    self.control.clear();
                    self.control.push_back(Chunk::ShutdownAck);
                    self.set_closed("peer shut down".into());
                }
                Chunk::ShutdownAck => {
                    self.control.clear();
                    self.control
                        .push_back(Chunk::ShutdownComplete { reflected: false });
                    self.set_closed("peer shut down".into());
                }
                Chunk::ShutdownComplete { .. } => self.set_closed("peer shut down".into()),
                Chunk::Reconfig(params) => self.on_reconfig(params),
                // We announce no FORWARD TSN (RFC 3758); ERRORs are only informative.
                Chunk::ForwardTsn { .. } | Chunk::Error(_) => {}
                Chunk::Unknown { kind, .. } => {
                    // RFC 9260 §3.2: top bits 00 and 01 stop processing the packet.
                    if kind >> 6 < 2 {
                        break;
                    }
                }
            }
            if self.state == State::Closed {
                break;
            }
        }
        if let Some(r) = self.receiver.as_mut() {
            if data && self.state == State::Established {
                r.end_packet(now);
            }
            let responses = r.take_reset_responses();
            if self.state == State::Established {
                for (response_seq, result) in responses {
                    self.control
                        .push_back(Chunk::Reconfig(vec![ReconfigParam::Response {
                            response_seq,
                            result,
                        }]));
                }
            }
        }
        let after = self.sender.as_ref().map(Sender::buffered_total);
        if sacked && after < before {
            self.events.push_back(Event::Acked);
        }
    }

    /// RFC 9260 §8.5: INIT alone with tag 0; ABORT and SHUTDOWN COMPLETE with the T bit
    /// carry the peer's tag; everything else ours.
    fn tag_ok(&self, p: &Packet) -> bool {
        if p.chunks.iter().any(|c| matches!(c, Chunk::Init(_))) {
            return p.chunks.len() == 1 && p.verification_tag == 0;
        }
        let reflected = p.chunks.iter().any(|c| {
            matches!(
                c,
                Chunk::Abort {
                    reflected: true,
                    ..
                } | Chunk::ShutdownComplete { reflected: true }
            )
        });
        if reflected {
            self.peer.is_some_and(|peer| peer.tag == p.verification_tag)
        } else {
            p.verification_tag == self.local_tag
        }
    }

    fn on_heartbeat_ack(&mut self, info: &[u8]) {
        let Some(probe) = self.probe else { return };
        if info.len() + handshake::heartbeat_overhead() + COMMON_HEADER_LEN + 3 >= probe.size
            && info.starts_with(&self.probe_nonce)
        {
            self.mtu = probe.size;
            if let Some(s) = self.sender.as_mut() {
                s.set_mtu(probe.size);
            }
            self.probe = None;
        }
    }

    fn on_reconfig(&mut self, params: Vec<ReconfigParam>) {
        let Some(r) = self.receiver.as_mut() else {
            return;
        };
        for p in params {
            match p {
                ReconfigParam::OutgoingReset {
                    request_seq,
                    last_tsn,
                    streams,
                    ..
                } => r.on_outgoing_reset(request_seq, last_tsn, &streams),
                ReconfigParam::IncomingReset { request_seq, .. } => r.on_other_request(request_seq),
                // RFC 6525 §4.3, §4.5, §4.6: other requests start with their sequence number.
                ReconfigParam::Other {
                    kind: 15 | 17 | 18,
                    value,
                } => {
                    if let Some(seq) = value.get(..4) {
                        r.on_other_request(u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]));
                    }
                }
                // We send no requests, so responses answer nothing.
                ReconfigParam::Response { .. } | ReconfigParam::Other { .. } => {}
            }
        }
    }

    fn establish(&mut self, now: Instant) {
        let Some(peer) = self.peer else { return };
        self.state = State::Established;
        self.retry = None;
        self.cookie = None;
        let send = SendConfig {
            mtu: self.cfg.mtu,
            rto_min: self.cfg.rto_min,
            rto_max: self.cfg.rto_max,
            rto_initial: self.cfg.rto_initial,
            priority_streams: self.cfg.priority_streams.clone(),
        };
        self.sender = Some(Sender::new(send, self.initial_tsn, peer.a_rwnd, now));
        let recv = RecvConfig {
            receive_window: self.cfg.receive_window,
            max_message_size: self.cfg.max_message_size,
            ack_delay: self.cfg.ack_delay,
            // We accept every stream (STREAMS), so the peer's outbound count is the limit.
            inbound_streams: peer.outbound_streams,
        };
        self.receiver = Some(Receiver::new(recv, peer.initial_tsn));
        self.events.push_back(Event::Connected);
        self.probe = self
            .cfg
            .probe_mtu
            .filter(|&size| size > self.cfg.mtu)
            .map(|size| Probe {
                size,
                sent: 0,
                due: true,
                expires: None,
            });
    }

    /// Ends the association with an ABORT carrying `reason` (when the peer's tag is known).
    fn abort(&mut self, cause: u16, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        self.control.clear();
        self.solo.clear();
        if self.peer.is_some() {
            self.control.push_back(Chunk::Abort {
                reflected: false,
                causes: encode_causes(&[ErrorCause {
                    code: cause,
                    info: reason.as_bytes(),
                }]),
            });
        }
        self.set_closed(reason.to_string());
    }

    fn set_closed(&mut self, reason: String) {
        self.state = State::Closed;
        self.retry = None;
        self.probe = None;
        self.solo.clear();
        self.closed.get_or_insert(reason);
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(mut retry) = self.retry.filter(|r| r.at <= now) {
            if retry.retries == MAX_HANDSHAKE_RETRIES {
                self.abort(CAUSE_USER_ABORT, "handshake timed out");
                return;
            }
            retry.retries += 1;
            retry.rto =
                (retry.rto.saturating_mul(2)).min(self.cfg.rto_max.max(self.cfg.rto_initial));
            retry.at = now + retry.rto;
            self.retry = Some(retry);
            match self.state {
                State::CookieWait => {
                    let init = self.our_init(None);
                    self.solo.retain(|(_, c)| !matches!(c, Chunk::Init(_)));
                    self.solo.push_back((0, Chunk::Init(init)));
                }
                State::CookieEchoed => {
                    if let Some(cookie) = self.cookie.clone() {
                        self.control.retain(|c| !matches!(c, Chunk::CookieEcho(_)));
                        self.control.push_back(Chunk::CookieEcho(cookie));
                    }
                }
                _ => self.retry = None,
            }
        }
        if let Some(probe) = self.probe.as_mut() {
            if probe.expires.is_some_and(|t| t <= now) {
                probe.expires = None;
                if probe.sent < PROBE_ATTEMPTS {
                    probe.due = true;
                } else {
                    self.probe = None;
                }
            }
        }
        if self.state == State::Established {
            if let Some(s) = self.sender.as_mut() {
                s.handle_timeout(now);
                if s.consecutive_timeouts() > self.cfg.max_retransmissions {
                    self.abort(CAUSE_USER_ABORT, "too many retransmissions");
                }
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let mut next = self.retry.map(|r| r.at);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.probe.and_then(|p| p.expires));
        if self.state == State::Established {
            consider(self.receiver.as_ref().and_then(Receiver::poll_timeout));
            consider(self.sender.as_ref().and_then(Sender::poll_timeout));
        }
        next
    }

    /// The next event, if any. Taking a message frees receive window, which may owe the peer
    /// a window update: call [`poll_transmit`](Self::poll_transmit) after reading.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        if let Some(d) = self.receiver.as_mut().and_then(Receiver::pop) {
            return Some(match d {
                Delivery::Message {
                    stream,
                    ppid,
                    payload,
                } => Event::Message {
                    stream,
                    ppid,
                    payload,
                },
                Delivery::StreamsReset(streams) => Event::StreamsReset(streams),
            });
        }
        if !self.closed_reported {
            if let Some(reason) = self.closed.clone() {
                self.closed_reported = true;
                return Some(Event::Closed { reason });
            }
        }
        None
    }

    /// Queues a message on `stream`, ordered and reliable unless `unordered`.
    pub fn send(
        &mut self,
        stream: u16,
        ppid: u32,
        payload: Bytes,
        unordered: bool,
    ) -> Result<(), SendError> {
        if self.state != State::Established {
            return Err(SendError::NotEstablished);
        }
        let Some(s) = self.sender.as_mut() else {
            return Err(SendError::NotEstablished);
        };
        s.queue(stream, ppid, payload, unordered)
            .map_err(|_| SendError::Empty)
    }

    /// Bytes of `stream` queued or in flight and not yet acknowledged.
    pub fn buffered(&self, stream: u16) -> usize {
        self.sender.as_ref().map_or(0, |s| s.buffered(stream))
    }

    /// True once the handshake completed and until the association closes.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// Ends the association with an ABORT (the peer sees it closed at once).
    pub fn close(&mut self, _now: Instant) {
        self.abort(CAUSE_USER_ABORT, "closed");
    }

    /// The largest packet sent now (raised by a successful path MTU probe).
    pub fn mtu(&self) -> usize {
        self.mtu
    }
}

#[cfg(test)]
mod tests;
