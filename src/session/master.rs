//! The choir master (PROTOCOL.md §6.2): one session, many followers in a star.
//!
//! The master owns the authoritative state — song epoch, page revision, streamed score — and
//! broadcasts every change. It admits followers by token, or by session code plus password,
//! gives each a member secret that a rejoin proves (so no device can take another's id; one rule
//! answers the join endpoint and JOIN_REQUEST, PROTOCOL.md §6.2), keeps the presence list, sends
//! a periodic STATE_SNAPSHOT so a follower that missed something converges anyway, and persists
//! its session so a crash and restart lose nothing.
//!
//! It also owns the shared clock state (PROTOCOL.md §12): playback/timer anchored to its own
//! clock, the control mode and editor, and the synced keys. Participants only *ask* for changes
//! (PLAYBACK_REQUEST, KEY_SET); the master checks who may, applies and broadcasts.
//!
//! What lives where. This file is the driver: the [`Master`] struct, whose fields are the
//! concerns below, its states, the [`Machine`] impl, the routing of inputs, sending and
//! broadcasting. In `master/`, one concern each, owning its state and methods:
//!
//! | file | owns |
//! |---|---|
//! | `admission.rs` | token, code, password, members' secrets, the one admission rule (§6.2, §9.3) |
//! | `roster.rs` | who is in the session, batched PRESENCE, expiry of those who dropped out |
//! | `pages.rs` | song, page, timed turns (§12.3), streamed score, published files |
//! | `shared.rs` | playback, control mode and editor, synced keys (§12) |
//! | `peer.rs` | one link: heartbeat, clock estimate, update rate, the member it joined as |
//!
//! and the driver's own parts, split out for size: `config.rs` ([`MasterConfig`]), `state.rs`
//! ([`MasterState`]), `record.rs`
//! ([`MasterRecord`], put together from the concerns on every persist), `links.rs` (link up,
//! JOIN_REQUEST, link down) and `changes.rs` (apply a change, persist, tell, broadcast; the
//! snapshots and PRESENCE).

mod admission;
mod changes;
mod config;
mod links;
mod pages;
mod peer;
mod record;
mod roster;
mod shared;
mod state;

pub use admission::MemberRecord;
pub(crate) use admission::MAX_REMEMBERED;
pub use config::MasterConfig;
pub use record::MasterRecord;
pub use state::MasterState;

use super::door::{DoorQuery, DoorReply};
use super::link::{Admit, LinkHealth, Tick};
use super::{
    earliest, ClockEstimate, Command, Event, Input, KeyStore, LinkState, Machine, Origin, Outbox,
    Output, PeerId, Record,
};
use crate::protocol::{
    Control, DecodeError, Envelope, FollowMode, KeyEntry, Message, PageState, Participant,
    Playback, PresenceStatus, RejectReason, Role, Validate, MAX_PARTICIPANTS,
};
use crate::time::Time;
use admission::Admission;
use pages::Pages;
use peer::Peer;
use roster::Roster;
use shared::Shared;
use std::collections::BTreeMap;
use std::time::Duration;

/// The choir master: a driver over its concerns, each owning its state (see the module doc).
#[derive(Debug)]
pub struct Master {
    cfg: MasterConfig,
    state: MasterState,
    out: Outbox,
    /// Session id, written in every envelope.
    session_id: String,
    /// Session name shown to followers.
    session_name: String,
    /// Whether the session has ended (persisted, so joins stay refused after a restart).
    ended: bool,
    /// Who may join.
    admission: Admission,
    /// Who is in the session.
    roster: Roster,
    /// What every device shows.
    pages: Pages,
    /// Playback, control and synced keys.
    shared: Shared,
    /// Open links, joined or not.
    peers: BTreeMap<PeerId, Peer>,
    /// When the next periodic STATE_SNAPSHOT goes out.
    snapshot_due: Time,
}

impl Master {
    /// Creates a new session. `entropy` must be 32 bytes from a secure random source: the token
    /// is derived from it.
    pub fn new(cfg: MasterConfig, now: Time, entropy: [u8; 32]) -> Master {
        let rec = MasterRecord::fresh(&cfg, &entropy);
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
        let MasterRecord {
            session_id,
            token,
            session_code,
            session_name,
            password,
            page,
            stream,
            files,
            ended,
            playback,
            control,
            keys,
            members,
        } = rec;
        let mut m = Master {
            snapshot_due: now + cfg.snapshot_interval,
            admission: Admission::new(
                token,
                session_code,
                password,
                members,
                cfg.device_id.clone(),
                cfg.max_followers,
                entropy,
            ),
            roster: Roster::new(cfg.presence_delay, cfg.participant_expiry),
            pages: Pages::new(page, stream, files),
            shared: Shared {
                playback,
                control,
                keys,
            },
            session_id,
            session_name,
            ended,
            cfg,
            state: MasterState::Idle,
            out: Outbox::default(),
            peers: BTreeMap::new(),
        };
        if m.ended {
            m.enter(MasterState::SessionEnded, why);
        } else {
            m.enter(MasterState::SessionActive, why);
            m.out.event(Event::Hosting {
                session_id: m.session_id.clone(),
                session_code: m.admission.code.as_str().into(),
                token: m.admission.token.clone(),
                open: m.admission.password.as_deref().unwrap_or("").is_empty(),
            });
        }
        m.persist();
        m
    }

    /// Current state.
    pub fn state(&self) -> MasterState {
        self.state
    }
    /// The record persisted now (session id, token, code, current page…).
    pub fn record(&self) -> MasterRecord {
        MasterRecord {
            session_id: self.session_id.clone(),
            token: self.admission.token.clone(),
            session_code: self.admission.code.clone(),
            session_name: self.session_name.clone(),
            password: self.admission.password.clone(),
            page: self.pages.page.clone(),
            stream: self.pages.stream.clone(),
            files: self.pages.files.clone(),
            ended: self.ended,
            playback: self.shared.playback.clone(),
            control: self.shared.control.clone(),
            keys: self.shared.keys.clone(),
            members: self.admission.members.clone(),
        }
    }
    /// Current song and page.
    pub fn page(&self) -> &PageState {
        &self.pages.page
    }
    /// Connected participants, master included.
    pub fn count(&self) -> u32 {
        1 + self.roster.connected() as u32
    }
    /// The participant list: the master first, then the connected members, then those recently
    /// gone, cut at the wire's limit (PROTOCOL.md §3).
    pub fn participants(&self) -> Vec<Participant> {
        self.roster.participants(self.me())
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
        self.shared.playback.as_deref()
    }
    /// Playback position (µs of media time) at `now`.
    pub fn playback_position(&self, now: Time) -> Option<u64> {
        self.shared.playback.as_ref().map(|p| p.position_at(now))
    }
    /// Control mode and editor.
    pub fn control(&self) -> &Control {
        &self.shared.control
    }
    /// Synced keys.
    pub fn keys(&self) -> &KeyStore {
        &self.shared.keys
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

    fn enter(&mut self, state: MasterState, reason: &str) {
        self.out.transition(&mut self.state, state, reason);
    }

    /// ACTIVE ⇄ RECONNECTING_LINKS follows whether anyone is disconnected.
    fn update_link_state(&mut self, reason: &str) {
        if matches!(self.state, MasterState::SessionEnded | MasterState::Idle) {
            return;
        }
        let next = if self.roster.waiting() {
            MasterState::ReconnectingLinks
        } else {
            MasterState::SessionActive
        };
        self.enter(next, reason);
    }

    fn persist(&mut self) {
        self.out
            .push(Output::Persist(Record::Master(self.record())));
    }

    fn envelope(&mut self, now: Time, msg: Message) -> Option<String> {
        let (session, me) = (&self.session_id, &self.cfg.device_id);
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

    /// What every change of the session's state does, in this order: persist the record, tell
    /// the app (when there is something to tell), broadcast the change.
    fn publish(&mut self, now: Time, event: Option<Event>, msg: Message) {
        self.persist();
        if let Some(event) = event {
            self.out.event(event);
        }
        self.broadcast(now, msg);
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
            Message::Ping(ping) => {
                self.send(now, peer, Message::Pong(LinkHealth::pong(now, &ping)))
            }
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
            Message::PlaybackRequest(op) if self.shared.may_control(sender, &op) => {
                self.apply_playback(now, &op, Origin::Remote);
            }
            Message::KeySet(entry) => self.key_from_peer(now, peer, sender, entry),
            Message::SetFollowMode(f) => {
                self.roster.set_follow_mode(sender, f.mode);
                self.roster.changed(now, sender);
            }
            Message::LeaveSession(_) => {
                self.roster.leave(sender);
                // Gone for good: its id is free again (and would get a new secret).
                if self.admission.forget(sender) {
                    self.persist();
                }
                if let Some(entry) = self.roster.entry(sender) {
                    self.out.event(Event::ParticipantLeft(entry));
                }
                self.roster.changed(now, sender);
                self.close(now, peer, "participant left");
            }
            _ => {} // followers cannot set the master's state
        }
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
                let editor = self.shared.control.editor.clone();
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
                let mode = self.shared.control.mode;
                self.set_control(now, mode, device_id.clone());
            }
            Command::SetKey { key, value, policy } => {
                let entry = KeyEntry {
                    key: key.clone(),
                    value: value.clone(),
                    policy: *policy,
                    stamp: self.shared.keys.stamp(now, &self.cfg.device_id),
                };
                self.set_key(now, entry, Origin::Local);
            }
            Command::StreamPrepare(info) => {
                let info = self.pages.prepare_stream(info.clone());
                self.publish(now, None, Message::StreamPrepare(info));
            }
            Command::StreamClear => self.clear_stream(now),
            Command::SetFiles(files) => {
                if self.pages.set_files(files) {
                    let snap = self.state_snapshot();
                    self.publish(now, None, snap);
                }
            }
            Command::End => self.end(now),
            other => self.out.not_allowed("master", other),
        }
    }

    fn on_timeout(&mut self, now: Time) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in ids {
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            if p.join_overdue(now) {
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
        for id in self.roster.expired(now) {
            self.roster.expire(now, &id);
            self.update_link_state("participant expired");
        }
        if self.roster.flush_due(now) {
            self.flush_presence(now);
        }
        if self.pages.turn_due(now) {
            self.turn_due_page();
        }
        if now >= self.snapshot_due {
            self.snapshot_due = now + self.cfg.snapshot_interval;
            if self.state != MasterState::SessionEnded {
                let snap = self.state_snapshot();
                self.broadcast(now, snap);
            }
        }
    }
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
        self.admission.door(
            query.auth,
            query.session_code.as_deref(),
            &query.device_id,
            self.state == MasterState::SessionEnded,
            self.roster.connected(),
        )
    }

    fn poll_timeout(&self) -> Option<Time> {
        let links = self.peers.values().map(Peer::deadline);
        let snapshot = (self.state != MasterState::SessionEnded).then_some(self.snapshot_due);
        earliest(
            links
                .chain(self.roster.deadlines())
                .chain([snapshot, self.pages.due()]),
        )
    }
}
