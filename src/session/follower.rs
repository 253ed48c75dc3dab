//! The choir follower (PROTOCOL.md §6.3): a driver over the parts it keeps.
//!
//! | file | part |
//! |---|---|
//! | `follower/config.rs` | [`FollowerConfig`] |
//! | `follower/state.rs` | [`FollowerState`], the role's states |
//! | `follower/membership.rs` | credentials, the session joined, rejoin and backoff, the record |
//! | `follower/view.rs` | the master's page state (ordered, timed turns) and what is shown |
//! | `follower/shared_clock.rs` | the estimate of the master's clock and the probe burst |
//! | `follower/synced.rs` | playback on this clock, control, synced keys, groups applied |
//! | `follower/roster.rs` | the participants as announced |
//!
//! The one link and its heartbeat are a `OneLink`, and inputs reach the follower through the
//! `OneLinkRole` skeleton, as for solo (`session/link/one.rs`). This file holds the driver: what
//! the follower does about each input, routing each message to the part that owns it, and the
//! steps that span parts (join accepted, link lost, session left).

mod config;
mod membership;
mod roster;
mod shared_clock;
mod state;
mod synced;
mod view;

pub use config::FollowerConfig;
pub use membership::{FollowerRecord, JoinCredentials};
pub use state::FollowerState;

use super::keys::KeyStore;
use super::link::{Beat, LinkHealth, OneLink, OneLinkRole};
use super::{
    earliest, ClockEstimate, Command, Event, Input, LinkState, Machine, Origin, Outbox, Output,
    PeerId,
};
use crate::protocol::{
    ChoirSnapshot, Control, Empty, Envelope, FollowMode, FollowModeMsg, Hello, JoinAccept, Message,
    Mode, PageState, Participant, Playback, PlaybackOp, RejectReason, Snapshot, StreamInfo,
};
use crate::time::Time;
use membership::{reject_message, Membership};
use roster::Roster;
use shared_clock::SharedClock;
use std::collections::BTreeSet;
use std::time::Duration;
use synced::Synced;
use view::View;

/// The choir follower.
#[derive(Debug)]
pub struct Follower {
    cfg: FollowerConfig,
    state: FollowerState,
    out: Outbox,
    link: OneLink,
    member: Membership,
    view: View,
    clock: SharedClock,
    synced: Synced,
    roster: Roster,
}

impl Follower {
    /// A follower with no session. `seed` drives backoff jitter.
    pub fn new(cfg: FollowerConfig, seed: u64) -> Follower {
        Follower {
            state: FollowerState::IdleLocal,
            out: Outbox::default(),
            link: OneLink::default(),
            member: Membership::new(cfg.backoff, cfg.join_retry, seed),
            view: View::new(cfg.follow_mode),
            clock: SharedClock::new(cfg.clock_burst, cfg.clock_burst_interval),
            synced: Synced::new(cfg.sync_groups.clone(), cfg.playback_tolerance),
            roster: Roster::default(),
            cfg,
        }
    }

    /// A follower restarted with a stored membership: it rejoins at once.
    pub fn restore(cfg: FollowerConfig, seed: u64, now: Time, rec: FollowerRecord) -> Follower {
        let mut f = Follower::new(cfg, seed);
        f.member.restore(now, &rec);
        f.view.follow_mode = rec.follow_mode;
        f.view.shown = rec.view;
        f.synced.groups = rec.sync_groups;
        f.enter(FollowerState::DisconnectedLocal, "restored after restart");
        f
    }

    /// Current state.
    pub fn state(&self) -> FollowerState {
        self.state
    }
    /// What the device shows.
    pub fn view(&self) -> &PageState {
        &self.view.shown
    }
    /// The master's latest known state.
    pub fn master(&self) -> Option<&PageState> {
        self.view.master.as_ref()
    }
    /// Follow or free.
    pub fn follow_mode(&self) -> FollowMode {
        self.view.follow_mode
    }
    /// The streamed score shown, if any.
    pub fn stream(&self) -> Option<&StreamInfo> {
        self.view.stream.as_ref()
    }
    /// Session id (empty when not in a session).
    pub fn session_id(&self) -> &str {
        &self.member.session_id
    }
    /// The stored token, if any.
    pub fn token(&self) -> Option<&str> {
        self.member.token()
    }
    /// The member secret the master gave this device, if any.
    pub fn member_secret(&self) -> Option<&str> {
        self.member.member_secret()
    }
    /// Participants as last announced, master included.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.roster.participants.values()
    }
    /// Connected participants as last announced.
    pub fn count(&self) -> u32 {
        self.roster.count
    }
    /// Smoothed round-trip time to the master.
    pub fn rtt(&self) -> Option<Duration> {
        self.link.rtt()
    }
    /// What is known of the master's clock: offset (master − this device) and round trip.
    pub fn clock(&self) -> Option<ClockEstimate> {
        self.clock.estimate()
    }
    /// The master's clock at local time `now`, as estimated (the local clock until a sample).
    pub fn master_time(&self, now: Time) -> Time {
        self.clock.master_time(now)
    }
    /// The playback state on this device's clock, when the `playback` group is applied.
    pub fn playback(&self) -> Option<&Playback> {
        self.synced.playback.as_ref()
    }
    /// Playback position (µs of media time) at local time `now`, when applied.
    pub fn playback_position(&self, now: Time) -> Option<u64> {
        self.synced.playback.as_ref().map(|p| p.position_at(now))
    }
    /// The master's playback state as received (master clock), applied or not.
    pub fn master_playback(&self) -> Option<&Playback> {
        self.synced.master_playback.as_ref()
    }
    /// Control mode and editor.
    pub fn control(&self) -> &Control {
        &self.synced.control
    }
    /// Every synced key known, applied or not.
    pub fn keys(&self) -> &KeyStore {
        &self.synced.keys
    }
    /// The groups of synced state this device applies.
    pub fn sync_groups(&self) -> &BTreeSet<String> {
        &self.synced.groups
    }
    /// Whether this device applies a group.
    pub fn applies(&self, group: &str) -> bool {
        self.synced.applies(group)
    }

    fn enter(&mut self, state: FollowerState, reason: &str) {
        self.out.transition(&mut self.state, state, reason);
    }

    fn connected_state(&self) -> FollowerState {
        match self.view.follow_mode {
            FollowMode::Follow => FollowerState::ConnectedFollow,
            FollowMode::Free => FollowerState::ConnectedFree,
        }
    }

    fn persist(&mut self) {
        let rec = self
            .member
            .record(self.view.follow_mode, &self.view.shown, &self.synced.groups);
        self.out.push(Output::Persist(rec));
    }

    fn send(&mut self, now: Time, msg: Message) {
        let from = (self.member.session_id.as_str(), self.cfg.device_id.as_str());
        self.link
            .send(&mut self.out, now, from, now.as_millis(), msg);
    }

    /// Applies the master's whole state: from a JOIN_ACCEPT (`authoritative`) or a
    /// STATE_SNAPSHOT.
    fn apply_snapshot(&mut self, now: Time, snap: ChoirSnapshot, authoritative: bool) {
        let out = &mut self.out;
        let offset = self.clock.offset_us();
        let epoch = snap.page.song_epoch;
        self.view
            .apply_master(now, offset, snap.page, authoritative, out);
        if let Some(p) = snap.playback {
            self.synced
                .apply_playback(now, offset, *p, authoritative, out);
        }
        self.synced.apply_control(snap.control, authoritative, out);
        for entry in snap.keys {
            self.synced.apply_key(entry, Origin::Remote, out);
        }
        match snap.stream {
            Some(s) if s.song_epoch >= epoch => self.view.set_stream(s, out),
            Some(_) => {}
            None => self.view.clear_stream(out),
        }
        if !snap.session_name.is_empty() {
            self.member.session_name = snap.session_name;
        }
        self.view.set_files(snap.files, out);
        self.roster.apply_list(snap.participants, out);
    }

    fn on_accept(&mut self, now: Time, session_id: String, host_id: String, accept: JoinAccept) {
        let JoinAccept {
            member_secret,
            token,
            session_code,
            snapshot,
        } = accept;
        let rejoin = self
            .member
            .accepted(session_id, host_id, session_code, member_secret, token);
        let state = self.connected_state();
        self.enter(state, if rejoin { "rejoined" } else { "join accepted" });
        // On (re)join the master's state overrides the previous page context (§6.3).
        self.apply_snapshot(now, snapshot, true);
        // A burst of clock probes, so timed turns and playback are right within a second.
        self.clock.start_burst(now);
        // The membership is on disk before anyone hears of it: an app (or a person) that sees
        // "joined" and is then killed still rejoins as this member.
        self.persist();
        let m = &self.member;
        self.out.event(Event::Joined {
            session_id: m.session_id.clone(),
            host_id: m.host_id.clone(),
            session_code: m.session_code.clone(),
            session_name: m.session_name.clone(),
            rejoin,
        });
        // Tell the master our mode in case it changed while we were away.
        let mode = self.view.follow_mode;
        self.send(now, Message::SetFollowMode(FollowModeMsg { mode }));
    }

    fn on_reject(&mut self, reason: RejectReason) {
        tracing::info!(?reason, "join rejected");
        self.out.event(Event::Rejected { reason });
        self.out.error(reason.code(), reject_message(reason));
        self.leave_session("join rejected");
    }

    fn on_playback_command(&mut self, now: Time, op: &PlaybackOp) {
        if !self.state.connected() {
            self.out
                .error("not-connected", "not connected to the master");
            return;
        }
        let me = self.cfg.device_id.as_str();
        if let Some(op) = self.synced.playback_request(me, op, &mut self.out) {
            self.send(now, Message::PlaybackRequest(op));
        }
    }

    fn set_follow_mode(&mut self, now: Time, mode: FollowMode) {
        if !self.view.set_mode(mode, &mut self.out) {
            return;
        }
        if self.state.connected() {
            let next = self.connected_state();
            self.enter(next, "follow mode toggled");
            self.send(now, Message::SetFollowMode(FollowModeMsg { mode }));
        }
        self.view.resync(&mut self.out);
        self.persist();
    }

    fn dial(&mut self, state: FollowerState, reason: &str) {
        let creds = self.member.dial();
        self.enter(state, reason);
        self.out.event(Event::Link {
            peer: 0,
            state: if state == FollowerState::Joining {
                LinkState::Connecting
            } else {
                LinkState::Reconnecting
            },
        });
        self.out.push(Output::Dial(creds));
    }

    /// The link is gone or never came: keep the page, navigate locally, retry later.
    fn link_lost(&mut self, now: Time, reason: &str) {
        self.link.close(&mut self.out, LinkState::Reconnecting);
        self.member.link_lost();
        if !(self.state.connected() || self.state.dialing()) {
            return;
        }
        self.enter(FollowerState::DisconnectedLocal, reason);
        self.member.schedule_retry(now, &mut self.out);
    }

    /// Back to no session at all: SESSION_END, or a token the master refuses.
    fn leave_session(&mut self, reason: &str) {
        self.link.close(&mut self.out, LinkState::Ended);
        self.member.leave();
        self.roster.clear();
        self.clock.reset();
        self.synced.leave();
        self.view.leave(&mut self.out);
        self.enter(FollowerState::IdleLocal, reason);
        self.persist();
    }

    fn on_link_up(&mut self, now: Time, peer: PeerId) {
        if !self.state.dialing() || self.link.is_open() {
            self.out.push(Output::Close(peer)); // a link we no longer want
            return;
        }
        self.link.open(now, peer, self.cfg.heartbeat, &mut self.out);
        let hello = Message::Hello(Hello {
            mode: Mode::ChoirFollower,
            device_name: self.cfg.device_name.clone(),
            capabilities: vec![],
        });
        self.send(now, hello);
        let request = self
            .member
            .request(&self.cfg.device_name, self.view.follow_mode);
        self.send(now, Message::JoinRequest(request));
        self.member.requested(now);
    }
}

impl OneLinkRole for Follower {
    fn link_and_out(&mut self) -> (&mut OneLink, &mut Outbox) {
        (&mut self.link, &mut self.out)
    }

    // State messages carry their own, stronger order (song epoch, page revision), so one
    // overtaken on a reordering path still counts; everything else must be fresh.
    fn carries_own_order(msg: &Message) -> bool {
        matches!(
            msg,
            Message::SetPage(_)
                | Message::SetSong(_)
                | Message::StateSnapshot(_)
                | Message::Playback(_)
                | Message::Control(_)
                | Message::KeySet(_)
        )
    }

    fn link_up(&mut self, now: Time, peer: PeerId, _admitted: Option<&str>) {
        self.on_link_up(now, peer)
    }

    fn link_down(&mut self, now: Time) {
        self.link.gone(&mut self.out);
        self.link_lost(now, "link lost");
    }

    fn dial_failed(&mut self, now: Time, refused: Option<RejectReason>) {
        if !self.state.dialing() {
            return;
        }
        match refused {
            Some(reason) => self.on_reject(reason),
            None => self.link_lost(now, "dial failed"),
        }
    }

    fn network_changed(&mut self, _now: Time) {
        if self.state == FollowerState::DisconnectedLocal && self.member.has_credentials() {
            self.dial(FollowerState::Rejoining, "network changed");
        }
    }

    /// A message admitted on the link, routed to the part that owns what it says.
    fn message(&mut self, now: Time, env: Envelope) {
        // Once joined, only this session's messages count.
        let joined = self.state.connected();
        if joined && env.session_id != self.member.session_id {
            return;
        }
        let out = &mut self.out;
        let offset = self.clock.offset_us();
        match env.msg {
            Message::Ping(ping) => self.send(now, Message::Pong(LinkHealth::pong(now, &ping))),
            Message::Pong(pong) => {
                self.link.on_pong(now, &pong);
                // A better clock sample can move the prediction: check the drift.
                if self.clock.on_pong(now, &pong) {
                    let offset = self.clock.offset_us();
                    self.synced.resync_playback(now, offset, out);
                }
            }
            Message::JoinAccept(accept) if self.state.dialing() => {
                self.on_accept(now, env.session_id, env.sender_id, accept)
            }
            Message::JoinReject(r) if self.state.dialing() => self.on_reject(r.reason),
            Message::SessionEnd(_) if joined => {
                self.leave_session("session ended by the master");
                self.out.event(Event::SessionEnded);
            }
            Message::SetSong(state) | Message::SetPage(state) if joined => {
                self.view.apply_master(now, offset, state, false, out)
            }
            Message::StateSnapshot(Snapshot::Choir(snap)) if joined => {
                self.apply_snapshot(now, snap, false)
            }
            Message::Playback(p) if joined => {
                self.synced.apply_playback(now, offset, p, false, out)
            }
            Message::Control(c) if joined => self.synced.apply_control(c, false, out),
            Message::KeySet(entry) if joined => self.synced.apply_key(entry, Origin::Remote, out),
            Message::StreamPrepare(info) if joined => self.view.set_stream(info, out),
            Message::StreamClear(c) if joined && self.view.clears(&c.stream_id) => {
                self.view.clear_stream(out)
            }
            Message::Presence(p) if joined => self.roster.apply(p, out),
            _ => {}
        }
    }

    fn command(&mut self, now: Time, cmd: &Command) {
        match cmd {
            Command::Join(creds) => {
                if self.state != FollowerState::IdleLocal {
                    self.out
                        .error("already-joined", "leave the current session first");
                    return;
                }
                if creds.token.is_none() && creds.session_code.is_none() {
                    self.out
                        .error("missing-session-code", "a session code or link is needed");
                    return;
                }
                self.member.join(creds);
                self.dial(FollowerState::Joining, "join requested");
            }
            Command::Leave => {
                if self.state.connected() {
                    self.send(now, Message::LeaveSession(Empty {}));
                }
                self.leave_session("left by the user");
            }
            Command::SetPage { page } => self.view.turn(*page, &mut self.out),
            Command::SetFollowMode { mode } => self.set_follow_mode(now, *mode),
            Command::Playback(op) => self.on_playback_command(now, op),
            Command::SetKey { key, value, policy } => {
                let me = self.cfg.device_id.as_str();
                let write = (key.as_str(), value, *policy);
                let Some(entry) = self.synced.write_key(now, me, write, &mut self.out) else {
                    return;
                };
                if self.state.connected() {
                    self.send(now, Message::KeySet(entry));
                }
            }
            Command::SetSync { group, apply } => {
                if self.synced.set_group(group, *apply, &mut self.out) {
                    self.persist();
                    let offset = self.clock.offset_us();
                    let change = (group.as_str(), *apply);
                    self.synced.catch_up(now, offset, change, &mut self.out);
                }
            }
            Command::Retry => {
                if self.state == FollowerState::DisconnectedLocal && self.member.has_credentials() {
                    self.member.reset_backoff();
                    self.dial(FollowerState::Rejoining, "manual retry");
                }
            }
            other => self.out.not_allowed("follower", other),
        }
    }

    fn timeout(&mut self, now: Time) {
        if self.member.retry_due(now) {
            self.dial(FollowerState::Rejoining, "retrying");
        }
        if self.member.resend_due(now) {
            let request = self
                .member
                .request(&self.cfg.device_name, self.view.follow_mode);
            self.send(now, Message::JoinRequest(request));
        }
        self.view.on_timeout(now, &mut self.out);
        if self.clock.probe_due(now) {
            if let Some(ping) = self.link.probe(now) {
                self.send(now, Message::Ping(ping));
            }
        }
        let from = (self.member.session_id.as_str(), self.cfg.device_id.as_str());
        if self.link.tick(&mut self.out, now, from) == Beat::Dead {
            self.link_lost(now, "heartbeat lost");
        }
    }
}

impl Machine for Follower {
    fn handle(&mut self, now: Time, input: Input<'_>) {
        self.route(now, input);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Time> {
        let [retry, resend] = self.member.deadlines();
        earliest([
            retry,
            resend,
            self.view.deadline(),
            self.clock.deadline(),
            self.link.deadline(),
        ])
    }
}
