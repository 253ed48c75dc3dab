//! The choir master (PROTOCOL.md §6.2): one session, many followers in a star.
//!
//! The master owns the authoritative state — song epoch, page revision, streamed score — and
//! broadcasts every change. It admits followers by token, or by session code plus password,
//! gives each a member secret that a rejoin proves (so no device can take another's id; one rule
//! answers the join endpoint and JOIN_REQUEST, PROTOCOL.md §6.2), keeps the presence list, sends a periodic STATE_SNAPSHOT so a follower that missed something
//! converges anyway, and persists its session so a crash and restart lose nothing.
//!
//! It also owns the shared clock state (PROTOCOL.md §12): playback/timer anchored to its own
//! clock, the control mode and editor, and the synced keys. Participants only *ask* for changes
//! (PLAYBACK_REQUEST, KEY_SET); the master checks who may, applies and broadcasts.

use super::clock::ClockFilter;
use super::door::{DoorAuth, DoorQuery, DoorReply, DoorSecret};
use super::keys::{KeyStore, Merge};
use super::link::{Admit, Bucket, Link, Tick};
use super::{
    earliest, ClockEstimate, Command, Event, HeartbeatConfig, Input, LinkState, Machine, Origin,
    Outbox, Output, PeerId, Record, RoleState, StateName, Time,
};
use crate::auth::hex;
use crate::protocol::{
    ChoirSnapshot, Control, ControlMode, DecodeError, Envelope, FollowMode, Hello, JoinAccept,
    JoinReject, JoinRequest, KeyEntry, KeyPolicy, Message, Mode, PageState, Participant, Playback,
    PlaybackOp, Presence, PresenceStatus, RejectReason, Role, SessionEnd, SessionFiles, Snapshot,
    StreamClear, StreamInfo, Validate, MAX_PARTICIPANTS, MAX_SCHEDULE_AHEAD_MS,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Master settings.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// This device's stable id.
    pub device_id: String,
    /// This device's human name.
    pub device_name: String,
    /// Session name shown to followers.
    pub session_name: String,
    /// Optional password required with a session code (not with a token).
    pub password: Option<String>,
    /// Most followers at once (at most 255).
    pub max_followers: usize,
    /// Heartbeat timing.
    pub heartbeat: HeartbeatConfig,
    /// Period of the STATE_SNAPSHOT broadcast.
    pub snapshot_interval: Duration,
    /// A link that has not sent a valid JOIN_REQUEST by then is closed.
    pub join_timeout: Duration,
    /// Presence changes are batched for this long, so a crowd joining costs few broadcasts.
    pub presence_delay: Duration,
    /// A disconnected participant is listed as left after this long (its member secret still
    /// works).
    pub participant_expiry: Duration,
    /// Sustained state updates (PLAYBACK_REQUEST, KEY_SET) per second accepted from one
    /// participant; excess is dropped.
    pub updates_per_sec: u32,
    /// Burst allowance of state updates on top of the rate.
    pub update_burst: u32,
}

impl MasterConfig {
    /// Defaults for a device id.
    pub fn new(device_id: impl Into<String>) -> MasterConfig {
        MasterConfig {
            device_id: device_id.into(),
            device_name: "Master".into(),
            session_name: "Rehearsal".into(),
            password: None,
            max_followers: 200,
            heartbeat: HeartbeatConfig::default(),
            snapshot_interval: Duration::from_secs(5),
            join_timeout: Duration::from_secs(10),
            presence_delay: Duration::from_millis(100),
            participant_expiry: Duration::from_secs(120),
            updates_per_sec: 20,
            update_burst: 40,
        }
    }
}

/// Master states (PROTOCOL.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MasterState {
    /// No session.
    #[serde(rename = "MASTER_IDLE")]
    Idle,
    /// Session running, every participant connected.
    #[serde(rename = "MASTER_SESSION_ACTIVE")]
    SessionActive,
    /// Session running, one or more participants disconnected.
    #[serde(rename = "MASTER_RECONNECTING_LINKS")]
    ReconnectingLinks,
    /// Session over; its token is refused.
    #[serde(rename = "MASTER_SESSION_ENDED")]
    SessionEnded,
}

impl StateName for MasterState {
    fn name(self) -> &'static str {
        match self {
            MasterState::Idle => "MASTER_IDLE",
            MasterState::SessionActive => "MASTER_SESSION_ACTIVE",
            MasterState::ReconnectingLinks => "MASTER_RECONNECTING_LINKS",
            MasterState::SessionEnded => "MASTER_SESSION_ENDED",
        }
    }

    fn role_state(self) -> RoleState {
        RoleState::Master(self)
    }
}

/// A human session code `XXXX-XXXX` over an alphabet with no look-alikes (no I, O, 0, 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCode(String);

const CODE_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

impl SessionCode {
    /// Normalises what a person typed: case, spaces and dashes do not matter. `None` when it
    /// cannot be a session code.
    pub fn parse(input: &str) -> Option<SessionCode> {
        let chars: Vec<u8> = input
            .bytes()
            .filter(|b| !matches!(b, b' ' | b'-' | b'\t'))
            .map(|b| b.to_ascii_uppercase())
            .collect();
        if chars.len() != 8 || !chars.iter().all(|c| CODE_ALPHABET.contains(c)) {
            return None;
        }
        let s = String::from_utf8(chars).ok()?;
        Some(SessionCode(format!("{}-{}", &s[..4], &s[4..])))
    }

    fn from_bytes(bytes: &[u8]) -> SessionCode {
        let s: String = bytes[..8]
            .iter()
            .map(|b| CODE_ALPHABET[usize::from(b % 32)] as char)
            .collect();
        SessionCode(format!("{}-{}", &s[..4], &s[4..]))
    }

    /// The code, `XXXX-XXXX`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a master persists: enough to resume the same session after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterRecord {
    /// Session id.
    pub session_id: String,
    /// Join token.
    pub token: String,
    /// Human session code.
    pub session_code: SessionCode,
    /// Session name.
    pub session_name: String,
    /// Password, if any.
    pub password: Option<String>,
    /// Current song and page.
    pub page: PageState,
    /// Current streamed score.
    pub stream: Option<StreamInfo>,
    /// Published pack and media metadata.
    #[serde(default)]
    pub files: SessionFiles,
    /// Whether the session has ended (then every join is refused).
    pub ended: bool,
    /// Shared playback/timer state, on the master's clock.
    #[serde(default)]
    pub playback: Option<Box<Playback>>,
    /// Control mode and editor.
    #[serde(default)]
    pub control: Control,
    /// Synced keys.
    #[serde(default)]
    pub keys: KeyStore,
    /// Every device admitted and not gone for good, by device id, with the secret it proves on
    /// a rejoin (PROTOCOL.md §6.2): kept across restarts so no other device can take its id.
    #[serde(default)]
    pub members: BTreeMap<String, MemberRecord>,
}

/// What the master remembers of a device it admitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The member secret (32 hex digits) sent in its first JOIN_ACCEPT.
    pub secret: String,
    /// When it was first admitted (ms on the master's clock): the oldest is forgotten first.
    pub since: u64,
}

/// Most member secrets a master remembers: a few times the largest session, so joining devices
/// that never come back cannot grow the record without bound.
pub(crate) const MAX_REMEMBERED: usize = 4 * MAX_PARTICIPANTS;

#[derive(Debug)]
struct Member {
    name: String,
    follow_mode: FollowMode,
    status: PresenceStatus,
    peer: Option<PeerId>,
    since: Time,
}

#[derive(Debug)]
struct Peer {
    link: Link,
    /// The device id the join endpoint admitted this link as (PROTOCOL.md §9.4), if it did.
    admitted: Option<String>,
    /// The member this link was joined as: every message on it is that member's.
    member: Option<String>,
    opened: Time,
    hello_name: String,
    clock: ClockFilter,
    updates: Bucket,
}

/// The choir master.
#[derive(Debug)]
pub struct Master {
    cfg: MasterConfig,
    state: MasterState,
    out: Outbox,
    rec: MasterRecord,
    members: BTreeMap<String, Member>,
    peers: BTreeMap<PeerId, Peer>,
    presence_changed: BTreeSet<String>,
    presence_due: Option<Time>,
    snapshot_due: Time,
    /// When a timed page turn happens here (the master shows it at `at` too).
    page_due: Option<Time>,
    /// Makes member secrets: a key from the master's entropy and a counter.
    secrets: SecretMaker,
}

/// Member secrets from the master's entropy: SHA-256 of a key and a counter, never repeated.
#[derive(Debug)]
struct SecretMaker {
    key: [u8; 32],
    made: u64,
}

impl SecretMaker {
    fn new(entropy: &[u8; 32]) -> SecretMaker {
        SecretMaker {
            key: derive(entropy, "lansync member secrets"),
            made: 0,
        }
    }

    fn make(&mut self, device_id: &str) -> String {
        self.made += 1;
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(self.made.to_be_bytes());
        h.update(device_id.as_bytes());
        hex(&h.finalize()[..16])
    }
}

fn derive(entropy: &[u8; 32], label: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update(entropy);
    h.finalize().into()
}

/// Equality that takes the same time wherever the strings differ, so a secret cannot be guessed
/// byte by byte from response times (PROTOCOL.md §6.2). Only whether the lengths differ shows
/// (tokens and member secrets all have one length).
fn secret_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Master {
    /// Creates a new session. `entropy` must be 32 bytes from a secure random source: the token
    /// is derived from it.
    pub fn new(cfg: MasterConfig, now: Time, entropy: [u8; 32]) -> Master {
        let rec = MasterRecord {
            session_id: hex(&derive(&entropy, "lansync session id")[..8]),
            token: hex(&derive(&entropy, "lansync session token")[..16]),
            session_code: SessionCode::from_bytes(&derive(&entropy, "lansync session code")),
            session_name: cfg.session_name.clone(),
            password: cfg.password.clone(),
            page: PageState::default(),
            stream: None,
            files: SessionFiles::default(),
            ended: false,
            playback: None,
            control: Control::default(),
            keys: KeyStore::default(),
            members: BTreeMap::new(),
        };
        Master::start(cfg, now, rec, &entropy, "session created")
    }

    /// Resumes a persisted session after a restart. `entropy` (32 bytes from a secure random
    /// source) makes the member secrets of devices admitted from now on.
    pub fn restore(cfg: MasterConfig, now: Time, rec: MasterRecord, entropy: [u8; 32]) -> Master {
        Master::start(cfg, now, rec, &entropy, "session restored")
    }

    fn start(
        mut cfg: MasterConfig,
        now: Time,
        rec: MasterRecord,
        entropy: &[u8; 32],
        why: &str,
    ) -> Master {
        cfg.max_followers = cfg.max_followers.min(MAX_PARTICIPANTS - 1);
        let mut m = Master {
            snapshot_due: now + cfg.snapshot_interval,
            // A timed turn still pending at a crash happens when due (at once if overdue).
            page_due: rec.page.at.map(Time::from_millis),
            cfg,
            state: MasterState::Idle,
            out: Outbox::default(),
            rec,
            members: BTreeMap::new(),
            peers: BTreeMap::new(),
            presence_changed: BTreeSet::new(),
            presence_due: None,
            secrets: SecretMaker::new(entropy),
        };
        if m.rec.ended {
            m.enter(MasterState::SessionEnded, why);
        } else {
            m.enter(MasterState::SessionActive, why);
            m.out.event(Event::Hosting {
                session_id: m.rec.session_id.clone(),
                session_code: m.rec.session_code.as_str().into(),
                token: m.rec.token.clone(),
                open: m.rec.password.as_deref().unwrap_or("").is_empty(),
            });
        }
        m.persist();
        m
    }

    /// Current state.
    pub fn state(&self) -> MasterState {
        self.state
    }
    /// The persisted record (session id, token, code, current page…).
    pub fn record(&self) -> &MasterRecord {
        &self.rec
    }
    /// Current song and page.
    pub fn page(&self) -> &PageState {
        &self.rec.page
    }
    /// Connected participants, master included.
    pub fn count(&self) -> u32 {
        1 + self.connected() as u32
    }
    /// The participant list: the master first, then the connected members, then those recently gone, cut at the
    /// wire's limit (PROTOCOL.md §3): connected members alone stay within it, but members who
    /// dropped out are listed for a while too, and a longer list would make every follower
    /// refuse the JOIN_ACCEPT or snapshot that carries it.
    pub fn participants(&self) -> Vec<Participant> {
        let mut members: Vec<Participant> = self
            .members
            .keys()
            .filter_map(|id| self.entry(id))
            .collect();
        // Stable: members keep their id order within each group.
        members.sort_by_key(|p| p.status != PresenceStatus::Connected);
        let mut list = vec![self.me()];
        list.extend(members.into_iter().take(MAX_PARTICIPANTS - 1));
        list
    }
    /// Smoothed round-trip time to a peer.
    pub fn rtt(&self, peer: PeerId) -> Option<Duration> {
        self.peers.get(&peer).and_then(|p| p.link.rtt)
    }
    /// What the master's own PINGs tell about a peer's clock (its offset from the master's).
    pub fn clock(&self, peer: PeerId) -> Option<ClockEstimate> {
        self.peers.get(&peer).and_then(|p| p.clock.estimate())
    }
    /// The shared playback/timer state, on this clock.
    pub fn playback(&self) -> Option<&Playback> {
        self.rec.playback.as_deref()
    }
    /// Playback position (µs of media time) at `now`.
    pub fn playback_position(&self, now: Time) -> Option<u64> {
        self.rec.playback.as_ref().map(|p| p.position_at(now))
    }
    /// Control mode and editor.
    pub fn control(&self) -> &Control {
        &self.rec.control
    }
    /// Synced keys.
    pub fn keys(&self) -> &KeyStore {
        &self.rec.keys
    }

    fn connected(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.status == PresenceStatus::Connected)
            .count()
    }

    fn me(&self) -> Participant {
        Participant {
            id: self.cfg.device_id.clone(),
            name: self.cfg.device_name.clone(),
            role: Role::Master,
            follow_mode: FollowMode::Follow,
            status: PresenceStatus::Connected,
        }
    }

    fn entry(&self, id: &str) -> Option<Participant> {
        self.members.get(id).map(|m| Participant {
            id: id.to_string(),
            name: m.name.clone(),
            role: Role::Follower,
            follow_mode: m.follow_mode,
            status: m.status,
        })
    }

    fn enter(&mut self, state: MasterState, reason: &str) {
        self.out.transition(&mut self.state, state, reason);
    }

    /// ACTIVE ⇄ RECONNECTING_LINKS follows whether anyone is disconnected.
    fn update_link_state(&mut self, reason: &str) {
        if matches!(self.state, MasterState::SessionEnded | MasterState::Idle) {
            return;
        }
        let waiting = self
            .members
            .values()
            .any(|m| m.status == PresenceStatus::Disconnected);
        let next = if waiting {
            MasterState::ReconnectingLinks
        } else {
            MasterState::SessionActive
        };
        self.enter(next, reason);
    }

    fn persist(&mut self) {
        self.out
            .push(Output::Persist(Record::Master(self.rec.clone())));
    }

    fn envelope(&mut self, now: Time, msg: Message) -> Option<String> {
        let (session, me) = (&self.rec.session_id, &self.cfg.device_id);
        self.out.envelope(session, me, now.as_millis(), msg)
    }

    fn send(&mut self, now: Time, peer: PeerId, msg: Message) {
        if let Some(text) = self.envelope(now, msg) {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.link.sent(now);
            }
            self.out.push(Output::Send(peer, text));
        }
    }

    /// Sends one encoded message to every joined follower (one encoding, one sequence number).
    fn broadcast(&mut self, now: Time, msg: Message) {
        let Some(text) = self.envelope(now, msg) else {
            return;
        };
        for (&id, p) in self.peers.iter_mut().filter(|(_, p)| p.member.is_some()) {
            p.link.sent(now);
            self.out.push(Output::Send(id, text.clone()));
        }
    }

    fn snapshot(&self, with_participants: bool) -> ChoirSnapshot {
        ChoirSnapshot {
            session_name: self.rec.session_name.clone(),
            page: self.rec.page.clone(),
            stream: self.rec.stream.clone(),
            files: self.rec.files.clone(),
            playback: self.rec.playback.clone(),
            control: self.rec.control.clone(),
            keys: self.rec.keys.to_vec(),
            participants: if with_participants {
                self.participants()
            } else {
                Vec::new()
            },
        }
    }

    fn presence_changed(&mut self, now: Time, id: &str) {
        self.presence_changed.insert(id.to_string());
        self.presence_due
            .get_or_insert(now + self.cfg.presence_delay);
    }

    fn flush_presence(&mut self, now: Time) {
        self.presence_due = None;
        let changed = std::mem::take(&mut self.presence_changed);
        let participants: Vec<Participant> =
            changed.iter().filter_map(|id| self.entry(id)).collect();
        // Members listed as left are forgotten once announced.
        self.members.retain(|_, m| m.status != PresenceStatus::Left);
        let count = self.count();
        self.out.event(Event::Presence { count });
        self.broadcast(
            now,
            Message::Presence(Presence {
                count,
                complete: false,
                participants,
            }),
        );
    }

    fn on_link_up(&mut self, now: Time, peer: PeerId, admitted: Option<&str>) {
        // Even after the end a link is heard out, so its JOIN_REQUEST gets `session_ended`
        // and the follower stops retrying.
        self.peers.insert(
            peer,
            Peer {
                link: Link::open(now, self.cfg.heartbeat),
                admitted: admitted.map(str::to_string),
                member: None,
                opened: now,
                hello_name: String::new(),
                clock: ClockFilter::default(),
                updates: Bucket::new(now, self.cfg.updates_per_sec, self.cfg.update_burst),
            },
        );
        // Connected (and served files) only once admitted: see `on_join_request`.
        self.out.event(Event::Link {
            peer,
            state: LinkState::Connecting,
        });
        let hello = Message::Hello(Hello {
            mode: Mode::ChoirMaster,
            device_name: self.cfg.device_name.clone(),
            capabilities: vec![],
        });
        self.send(now, peer, hello);
    }

    /// Forgets a link; its member, if any, becomes disconnected.
    fn on_link_down(&mut self, now: Time, peer: PeerId, reason: &str) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        let mut state = LinkState::Idle;
        if let Some(id) = p.member {
            if let Some(m) = self.members.get_mut(&id) {
                if m.peer == Some(peer) && m.status == PresenceStatus::Connected {
                    m.status = PresenceStatus::Disconnected;
                    m.peer = None;
                    m.since = now;
                    state = LinkState::Reconnecting;
                    if let Some(entry) = self.entry(&id) {
                        self.out.event(Event::ParticipantLeft(entry));
                    }
                    self.presence_changed(now, &id);
                }
            }
        }
        self.out.event(Event::Link { peer, state });
        self.update_link_state(reason);
    }

    fn close(&mut self, now: Time, peer: PeerId, reason: &str) {
        self.out.push(Output::Close(peer));
        self.on_link_down(now, peer, reason);
    }

    fn on_received(&mut self, now: Time, peer: PeerId, decoded: Result<Envelope, DecodeError>) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        let env = match decoded {
            Ok(env) => env,
            Err(DecodeError::VersionMismatch { got }) => {
                tracing::warn!(peer, got, "peer speaks another protocol version");
                self.reject(now, peer, RejectReason::VersionMismatch);
                return;
            }
            Err(e) => {
                tracing::debug!(peer, %e, "ignored message");
                return;
            }
        };
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let (admit, recovered) = p.link.admit_envelope(now, &env);
        if recovered {
            self.out.event(Event::Link {
                peer,
                state: LinkState::Connected,
            });
        }
        // A KEY_SET carries its own order (its stamp), so one overtaken on the way still counts.
        let stamped = matches!(env.msg, Message::KeySet(_));
        if admit == Admit::RateLimited || (admit == Admit::Stale && !stamped) {
            return;
        }
        let member = p.member.clone();
        match env.msg {
            Message::Hello(h) => p.hello_name = h.device_name,
            Message::Ping(ping) => self.send(now, peer, Message::Pong(Link::pong(now, &ping))),
            Message::Pong(pong) => {
                p.link.on_pong(now, &pong);
                p.clock.on_pong(now, &pong);
            }
            Message::JoinRequest(req) => self.on_join_request(now, peer, &env.sender_id, req),
            // Everything else is only heard from members, and is the link's member's whatever
            // its envelope claims (PROTOCOL.md §6.2): identity comes from admission.
            _ if member.is_none() => {}
            Message::PlaybackRequest(_) | Message::KeySet(_) if !p.updates.take(now) => {
                tracing::debug!(peer, "state update over the rate limit");
            }
            msg => {
                let sender = member.unwrap_or_default();
                self.on_member_message(now, peer, &sender, msg);
            }
        }
    }

    /// A message from an admitted member on its own link.
    fn on_member_message(&mut self, now: Time, peer: PeerId, sender: &str, msg: Message) {
        match msg {
            Message::PlaybackRequest(op) if self.may_control(sender, &op) => {
                self.apply_playback(now, &op, Origin::Remote);
            }
            Message::KeySet(entry) => self.key_from_peer(now, peer, sender, entry),
            Message::SetFollowMode(f) => {
                if let Some(m) = self.members.get_mut(sender) {
                    m.follow_mode = f.mode;
                }
                self.presence_changed(now, sender);
            }
            Message::LeaveSession(_) => {
                if let Some(m) = self.members.get_mut(sender) {
                    m.status = PresenceStatus::Left;
                    m.peer = None;
                }
                // Gone for good: its id is free again (and would get a new secret).
                if self.rec.members.remove(sender).is_some() {
                    self.persist();
                }
                if let Some(entry) = self.entry(sender) {
                    self.out.event(Event::ParticipantLeft(entry));
                }
                self.presence_changed(now, sender);
                self.close(now, peer, "participant left");
            }
            _ => {} // followers cannot set the master's state
        }
    }

    /// The one admission rule (PROTOCOL.md §6.2, §9.3), asked by the join endpoint and by
    /// JOIN_REQUEST alike: what a join as `device_id` by `auth` must prove, and whether it is
    /// admitted once proven. A member's id is only ever its own: any other join naming it is
    /// refused, and a member may always come back, full or not.
    fn admission(&self, auth: DoorAuth, session_code: Option<&str>, device_id: &str) -> DoorReply {
        let secret = match auth {
            DoorAuth::Token => {
                (!self.rec.token.is_empty()).then(|| DoorSecret::Token(self.rec.token.clone()))
            }
            DoorAuth::Code => session_code
                .and_then(SessionCode::parse)
                .filter(|c| *c == self.rec.session_code)
                .map(|c| DoorSecret::Code {
                    code: c.0,
                    password: self.rec.password.clone().unwrap_or_default(),
                }),
            DoorAuth::Member => self
                .rec
                .members
                .get(device_id)
                .map(|m| DoorSecret::Member(m.secret.clone())),
        };
        let held = self.rec.members.contains_key(device_id) || device_id == self.cfg.device_id;
        let verdict = if self.state == MasterState::SessionEnded {
            Err(RejectReason::SessionEnded)
        } else if held && auth != DoorAuth::Member {
            Err(RejectReason::DeviceIdTaken)
        } else if !held && self.connected() >= self.cfg.max_followers {
            Err(RejectReason::SessionFull)
        } else {
            Ok(())
        };
        DoorReply { secret, verdict }
    }

    /// A JOIN_REQUEST's proof and verdict, by [`admission`](Self::admission). A device that
    /// holds its id proves its member secret; any other proves the token or the code.
    fn check_credentials(&self, req: &JoinRequest, device_id: &str) -> Result<(), RejectReason> {
        let held = self.rec.members.contains_key(device_id);
        let (auth, given) = match (&req.member_secret, &req.token, &req.session_code) {
            (Some(secret), _, _) if held => (DoorAuth::Member, secret.as_str()),
            (_, Some(token), _) => (DoorAuth::Token, token.as_str()),
            (_, None, Some(_)) => (DoorAuth::Code, req.password.as_deref().unwrap_or("")),
            (Some(secret), None, None) => (DoorAuth::Member, secret.as_str()),
            (None, None, None) => return Err(RejectReason::InvalidToken),
        };
        let reply = self.admission(auth, req.session_code.as_deref(), device_id);
        match reply.secret {
            None if auth == DoorAuth::Code => return Err(RejectReason::SessionNotFound),
            None => return Err(RejectReason::InvalidToken),
            Some(DoorSecret::Code { password, .. }) => {
                if !password.is_empty() && !secret_eq(given, &password) {
                    return Err(RejectReason::InvalidPassword);
                }
            }
            Some(DoorSecret::Token(secret) | DoorSecret::Member(secret)) => {
                if !secret_eq(given, &secret) {
                    return Err(RejectReason::InvalidToken);
                }
            }
        }
        reply.verdict
    }

    fn on_join_request(&mut self, now: Time, peer: PeerId, claimed: &str, req: JoinRequest) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        // A JOIN_REQUEST sent again (its answer was slow or lost) gets the same answer, no news.
        if p.member.as_deref() == Some(claimed) {
            let accept = self.accept_message(claimed);
            self.send(now, peer, accept);
            return;
        }
        // A link joins once, as the id the join endpoint admitted it as when it did.
        let bound = p.member.as_deref().or(p.admitted.as_deref());
        if bound.is_some_and(|id| id != claimed) {
            tracing::info!(peer, claimed, ?bound, "join request for another device id");
            self.reject(now, peer, RejectReason::DeviceIdTaken);
            return;
        }
        if let Err(reason) = self.check_credentials(&req, claimed) {
            self.reject(now, peer, reason);
            return;
        }
        if !self.rec.members.contains_key(claimed) {
            self.remember(now, claimed);
        }
        // The same device on a newer link replaces its old link.
        let old_peer = self.members.get(claimed).and_then(|m| m.peer);
        if let Some(old) = old_peer.filter(|&old| old != peer) {
            self.out.push(Output::Close(old));
            self.peers.remove(&old);
        }
        let name = if req.device_name.is_empty() {
            self.peers
                .get(&peer)
                .map(|p| p.hello_name.clone())
                .unwrap_or_default()
        } else {
            req.device_name
        };
        self.members.insert(
            claimed.to_string(),
            Member {
                name,
                follow_mode: req.follow_mode,
                status: PresenceStatus::Connected,
                peer: Some(peer),
                since: now,
            },
        );
        if let Some(p) = self.peers.get_mut(&peer) {
            p.member = Some(claimed.to_string());
        }
        let accept = self.accept_message(claimed);
        self.send(now, peer, accept);
        self.out.event(Event::Link {
            peer,
            state: LinkState::Connected,
        });
        if let Some(entry) = self.entry(claimed) {
            self.out.event(Event::ParticipantJoined(entry));
        }
        self.presence_changed(now, claimed);
        self.update_link_state("participant joined");
    }

    /// Makes a device's member secret at its first admission and persists it; the oldest
    /// secret of a device not connected now goes when the record holds the most it keeps.
    fn remember(&mut self, now: Time, device_id: &str) {
        if self.rec.members.len() >= MAX_REMEMBERED {
            let present = |id: &str| {
                self.members
                    .get(id)
                    .is_some_and(|m| m.status != PresenceStatus::Left)
            };
            let oldest = self
                .rec
                .members
                .iter()
                .filter(|(id, _)| !present(id))
                .min_by_key(|(_, m)| m.since)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.rec.members.remove(&id);
            }
        }
        let secret = self.secrets.make(device_id);
        self.rec.members.insert(
            device_id.to_string(),
            MemberRecord {
                secret,
                since: now.as_millis(),
            },
        );
        self.persist();
    }

    fn accept_message(&self, device_id: &str) -> Message {
        Message::JoinAccept(JoinAccept {
            member_secret: self.rec.members.get(device_id).map(|m| m.secret.clone()),
            token: None,
            session_code: self.rec.session_code.as_str().into(),
            snapshot: self.snapshot(true),
        })
    }

    fn reject(&mut self, now: Time, peer: PeerId, reason: RejectReason) {
        tracing::info!(peer, ?reason, "join rejected");
        self.send(now, peer, Message::JoinReject(JoinReject { reason }));
        self.close(now, peer, "join rejected");
    }

    fn on_command(&mut self, now: Time, cmd: &Command) {
        if self.state == MasterState::SessionEnded {
            self.out.error("session-ended", "the session has ended");
            return;
        }
        match cmd {
            Command::SetPage { page } => self.set_page(now, *page, None),
            Command::SetSong { song_id } => self.set_song(now, song_id, None),
            Command::SetPageAt { page, at } => self.set_page(now, *page, Some(*at)),
            Command::SetSongAt { song_id, at } => self.set_song(now, song_id, Some(*at)),
            Command::Playback(op) => {
                let mut op = op.clone();
                let _ = op.validate(); // clamps; playback ops are never rejected
                self.apply_playback(now, &op, Origin::Local);
            }
            Command::SetControlMode { mode } => {
                let editor = self.rec.control.editor.clone();
                self.set_control(now, *mode, editor);
            }
            Command::SetEditor { device_id } => {
                if device_id
                    .as_deref()
                    .is_some_and(|id| crate::protocol::check_id("device_id", id, false).is_err())
                {
                    self.out.error("invalid-device-id", "not a device id");
                    return;
                }
                let mode = self.rec.control.mode;
                self.set_control(now, mode, device_id.clone());
            }
            Command::SetKey { key, value, policy } => {
                let entry = KeyEntry {
                    key: key.clone(),
                    value: value.clone(),
                    policy: *policy,
                    stamp: self.rec.keys.stamp(now, &self.cfg.device_id),
                };
                self.set_key(now, entry, Origin::Local);
            }
            Command::StreamPrepare(info) => {
                let mut info = info.clone();
                info.song_epoch = self.rec.page.song_epoch;
                self.rec.stream = Some(info.clone());
                self.persist();
                self.broadcast(now, Message::StreamPrepare(info));
            }
            Command::StreamClear => self.clear_stream(now),
            Command::SetFiles(files) => {
                if self.rec.files != *files {
                    self.rec.files = files.clone();
                    self.persist();
                    let snap = self.snapshot(false);
                    self.broadcast(now, Message::StateSnapshot(Snapshot::Choir(snap)));
                }
            }
            Command::End => self.end(now),
            other => self.out.not_allowed("master", other),
        }
    }

    fn set_page(&mut self, now: Time, page: u32, at: Option<u64>) {
        let page = page.min(crate::protocol::MAX_PAGE);
        self.rec.page.page_index = page;
        self.rec.page.page_revision += 1;
        self.rec.page.at = schedule(now, at);
        self.announce_page(now, Message::SetPage);
    }

    fn set_song(&mut self, now: Time, song_id: &str, at: Option<u64>) {
        self.rec.page = PageState {
            song_id: Some(
                crate::protocol::truncate(song_id, crate::protocol::MAX_SONG_ID_LEN).into(),
            ),
            song_epoch: self.rec.page.song_epoch + 1,
            page_revision: 0,
            page_index: 0,
            at: schedule(now, at),
        };
        // A streamed score belongs to its song.
        if self.rec.stream.is_some() {
            self.rec.stream = None;
        }
        self.announce_page(now, Message::SetSong);
    }

    fn announce_page(&mut self, now: Time, wrap: fn(PageState) -> Message) {
        let page = self.rec.page.clone();
        self.persist();
        // A timed turn shows here at `at`, as on every follower.
        self.page_due = page.at.map(Time::from_millis);
        if self.page_due.is_none() {
            self.out.event(Event::page(&page, Origin::Local));
        }
        self.broadcast(now, wrap(page));
    }

    /// Shows a timed turn whose time has come.
    fn turn_due_page(&mut self) {
        self.page_due = None;
        self.rec.page.at = None;
        self.persist();
        self.out.event(Event::page(&self.rec.page, Origin::Local));
    }

    /// Whether a participant may ask for this playback change.
    fn may_control(&self, sender: &str, op: &PlaybackOp) -> bool {
        let c = &self.rec.control;
        c.editor.as_deref() == Some(sender)
            || (c.mode == ControlMode::SharedPause && op.is_pause_or_resume())
    }

    fn apply_playback(&mut self, now: Time, op: &PlaybackOp, origin: Origin) {
        let mut p = self.rec.playback.take().unwrap_or_default();
        p.apply(now, op);
        tracing::debug!(?op, ?origin, revision = p.revision, "playback");
        let state = (*p).clone();
        self.rec.playback = Some(p);
        self.persist();
        self.out.event(Event::Playback(state.clone()));
        self.broadcast(now, Message::Playback(state));
    }

    fn set_control(&mut self, now: Time, mode: ControlMode, editor: Option<String>) {
        if self.rec.control.mode == mode && self.rec.control.editor == editor {
            return;
        }
        let control = Control {
            mode,
            editor,
            revision: self.rec.control.revision + 1,
        };
        self.rec.control = control.clone();
        self.persist();
        self.out.event(Event::Control(control.clone()));
        self.broadcast(now, Message::Control(control));
    }

    /// A KEY_SET from a participant: stamped as its own, its clock bounded, and obeyed only for
    /// last-write-wins keys unless it is the editor. A refused write gets the held value back,
    /// so the writer's optimistic change is undone.
    fn key_from_peer(&mut self, now: Time, peer: PeerId, sender: &str, mut entry: KeyEntry) {
        entry.stamp.sender_id = sender.to_string();
        entry.stamp.ts = entry
            .stamp
            .ts
            .min(now.as_millis().saturating_add(MAX_SCHEDULE_AHEAD_MS));
        let held = self.rec.keys.get(&entry.key);
        let host_key =
            entry.policy == KeyPolicy::Host || held.is_some_and(|h| h.policy == KeyPolicy::Host);
        let editor = self.rec.control.editor.as_deref() == Some(sender);
        if host_key && !editor {
            tracing::debug!(key = entry.key, sender, "host-authority key refused");
            if let Some(held) = held.cloned() {
                self.send(now, peer, Message::KeySet(held));
            }
            return;
        }
        self.set_key(now, entry, Origin::Remote);
    }

    fn set_key(&mut self, now: Time, mut entry: KeyEntry, origin: Origin) {
        if let Err(e) = entry.validate() {
            self.out.error("invalid-key", e.to_string());
            return;
        }
        match self.rec.keys.merge(entry.clone()) {
            Merge::Applied => {}
            Merge::Stale => return,
            Merge::Full => {
                self.out
                    .error("too-many-keys", "the session holds the most keys it can");
                return;
            }
        }
        self.persist();
        self.out.event(Event::Key {
            key: entry.key.clone(),
            value: entry.value.clone(),
            origin,
        });
        self.broadcast(now, Message::KeySet(entry));
    }

    fn clear_stream(&mut self, now: Time) {
        if let Some(s) = self.rec.stream.take() {
            self.persist();
            self.broadcast(
                now,
                Message::StreamClear(StreamClear {
                    stream_id: s.stream_id,
                }),
            );
        }
    }

    fn end(&mut self, now: Time) {
        self.broadcast(now, Message::SessionEnd(SessionEnd::default()));
        self.rec.ended = true;
        self.rec.stream = None;
        self.persist();
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            self.out.push(Output::Close(peer));
            self.out.event(Event::Link {
                peer,
                state: LinkState::Ended,
            });
        }
        self.peers.clear();
        self.members.clear();
        self.presence_changed.clear();
        self.presence_due = None;
        self.enter(MasterState::SessionEnded, "ended by the master");
        self.out.event(Event::SessionEnded);
    }

    fn on_timeout(&mut self, now: Time) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in ids {
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            if p.member.is_none() && now >= p.opened + self.cfg.join_timeout {
                self.close(now, peer, "no join request in time");
                continue;
            }
            match p.link.tick(now) {
                Tick::Idle => {}
                Tick::Ping(ping) => self.send(now, peer, Message::Ping(ping)),
                Tick::Degraded => self.out.event(Event::Link {
                    peer,
                    state: LinkState::Degraded,
                }),
                Tick::Dead => self.close(now, peer, "heartbeat lost"),
            }
        }
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.status == PresenceStatus::Disconnected
                    && now >= m.since + self.cfg.participant_expiry
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(m) = self.members.get_mut(&id) {
                m.status = PresenceStatus::Left;
            }
            self.presence_changed(now, &id);
            self.update_link_state("participant expired");
        }
        if self.presence_due.is_some_and(|t| now >= t) {
            self.flush_presence(now);
        }
        if self.page_due.is_some_and(|t| now >= t) {
            self.turn_due_page();
        }
        if now >= self.snapshot_due {
            self.snapshot_due = now + self.cfg.snapshot_interval;
            if self.state != MasterState::SessionEnded {
                let snap = Snapshot::Choir(self.snapshot(false));
                self.broadcast(now, Message::StateSnapshot(snap));
            }
        }
    }
}

/// The `at` to send for a change asked for at `at`: none when it is already past or absurdly
/// far ahead (then the change happens at once).
fn schedule(now: Time, at: Option<u64>) -> Option<u64> {
    let now_ms = now.as_millis();
    at.filter(|&at| at > now_ms && at <= now_ms.saturating_add(MAX_SCHEDULE_AHEAD_MS))
}

impl Machine for Master {
    fn handle(&mut self, now: Time, input: Input<'_>) {
        match input {
            Input::LinkUp(peer) => self.on_link_up(now, peer, None),
            Input::AdmittedLinkUp(peer, device_id) => self.on_link_up(now, peer, Some(device_id)),
            Input::LinkDown(peer) => self.on_link_down(now, peer, "link lost"),
            Input::Received(peer, bytes) => {
                if let Some(decoded) = self.out.received(peer, bytes) {
                    self.on_received(now, peer, decoded);
                }
            }
            Input::Command(cmd) => {
                self.out.stream_follows_the_song(cmd);
                self.on_command(now, cmd);
            }
            Input::Timeout => self.on_timeout(now),
            Input::DialFailed | Input::DialRefused(_) | Input::NetworkChanged => {}
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn door(&self, _now: Time, query: &DoorQuery) -> DoorReply {
        self.admission(query.auth, query.session_code.as_deref(), &query.device_id)
    }

    fn poll_timeout(&self) -> Option<Time> {
        let links = self.peers.values().map(|p| {
            let join = p.member.is_none().then(|| p.opened + self.cfg.join_timeout);
            earliest([Some(p.link.deadline()), join])
        });
        let expiry = self
            .members
            .values()
            .filter(|m| m.status == PresenceStatus::Disconnected)
            .map(|m| Some(m.since + self.cfg.participant_expiry));
        let snapshot = (self.state != MasterState::SessionEnded).then_some(self.snapshot_due);
        earliest(
            links
                .chain(expiry)
                .chain([self.presence_due, snapshot, self.page_due]),
        )
    }
}
