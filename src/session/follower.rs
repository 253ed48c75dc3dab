//! The choir follower (PROTOCOL.md §6.3).
//!
//! A follower tracks two things: the master's latest state (`master`, ordered by song epoch then
//! page revision, so stale and duplicate updates fall away) and what it shows (`view`). In follow
//! mode the view is the master's state; in free mode only song changes reach the view. Local
//! navigation is never blocked: with or without a master, `SetPage` moves the view at once.
//!
//! It also estimates the master's clock (NTP-style, from PING/PONG, with a burst of probes right
//! after joining) so it can turn timed pages at the master's `at` on its own clock, and keep a
//! local playback model: the master's anchored state moved onto this clock, re-announced only on
//! a discrete change or when the prediction drifts beyond `playback_tolerance`. Synced keys and
//! playback reach the app only for the groups this device applies (`sync_groups`, persisted).

use super::clock::{shift, ClockFilter};
use super::keys::{KeyStore, Merge, DEFAULT_SYNC_GROUPS, PLAYBACK_GROUP};
use super::link::{Admit, Link, Tick};
use super::{
    earliest, Backoff, BackoffConfig, ClockEstimate, Command, Event, HeartbeatConfig, Input,
    LinkState, Machine, Origin, Outbox, Output, PeerId, Record, Rng, RoleState, StateName, Time,
};
use crate::protocol::{
    check_id, ChoirSnapshot, Control, ControlMode, DecodeError, Empty, Envelope, FollowMode,
    FollowModeMsg, Hello, JoinAccept, JoinRequest, KeyEntry, KeyPolicy, Message, Mode, PageState,
    Participant, Playback, PlaybackOp, Presence, PresenceStatus, RejectReason, SessionFiles,
    Snapshot, StreamInfo, Validate, MAX_SCHEDULE_AHEAD_MS,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Follower settings.
#[derive(Debug, Clone)]
pub struct FollowerConfig {
    /// This device's stable id.
    pub device_id: String,
    /// This device's human name.
    pub device_name: String,
    /// Mode at start.
    pub follow_mode: FollowMode,
    /// Heartbeat timing.
    pub heartbeat: HeartbeatConfig,
    /// Reconnection schedule.
    pub backoff: BackoffConfig,
    /// A JOIN_REQUEST unanswered for this long is sent again.
    pub join_retry: Duration,
    /// Groups of synced state applied at first start (a stored record's choice wins).
    pub sync_groups: BTreeSet<String>,
    /// The local playback model is corrected when the master's predicted position differs from
    /// it by more than this (a discrete change always goes through).
    pub playback_tolerance: Duration,
    /// Clock probes sent right after joining, so the offset is known within a second.
    pub clock_burst: u32,
    /// Spacing of those probes.
    pub clock_burst_interval: Duration,
}

fn default_sync_groups() -> BTreeSet<String> {
    DEFAULT_SYNC_GROUPS.iter().map(|g| g.to_string()).collect()
}

impl FollowerConfig {
    /// Defaults for a device id.
    pub fn new(device_id: impl Into<String>) -> FollowerConfig {
        FollowerConfig {
            device_id: device_id.into(),
            device_name: "Follower".into(),
            follow_mode: FollowMode::Follow,
            heartbeat: HeartbeatConfig::default(),
            backoff: BackoffConfig::default(),
            join_retry: Duration::from_secs(2),
            sync_groups: default_sync_groups(),
            playback_tolerance: Duration::from_millis(15),
            clock_burst: 16,
            clock_burst_interval: Duration::from_millis(50),
        }
    }
}

/// Follower states (PROTOCOL.md §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FollowerState {
    /// No session.
    #[serde(rename = "FOLLOWER_IDLE_LOCAL")]
    IdleLocal,
    /// First join under way.
    #[serde(rename = "FOLLOWER_JOINING")]
    Joining,
    /// Joined, applying the master's pages.
    #[serde(rename = "FOLLOWER_CONNECTED_FOLLOW")]
    ConnectedFollow,
    /// Joined, navigating freely.
    #[serde(rename = "FOLLOWER_CONNECTED_FREE")]
    ConnectedFree,
    /// Link lost; navigating locally, waiting to retry.
    #[serde(rename = "FOLLOWER_DISCONNECTED_LOCAL")]
    DisconnectedLocal,
    /// Automatic rejoin under way.
    #[serde(rename = "FOLLOWER_REJOINING")]
    Rejoining,
}

impl StateName for FollowerState {
    fn name(self) -> &'static str {
        match self {
            FollowerState::IdleLocal => "FOLLOWER_IDLE_LOCAL",
            FollowerState::Joining => "FOLLOWER_JOINING",
            FollowerState::ConnectedFollow => "FOLLOWER_CONNECTED_FOLLOW",
            FollowerState::ConnectedFree => "FOLLOWER_CONNECTED_FREE",
            FollowerState::DisconnectedLocal => "FOLLOWER_DISCONNECTED_LOCAL",
            FollowerState::Rejoining => "FOLLOWER_REJOINING",
        }
    }

    fn role_state(self) -> RoleState {
        RoleState::Follower(self)
    }
}

impl FollowerState {
    fn connected(self) -> bool {
        matches!(
            self,
            FollowerState::ConnectedFollow | FollowerState::ConnectedFree
        )
    }

    fn dialing(self) -> bool {
        matches!(self, FollowerState::Joining | FollowerState::Rejoining)
    }
}

/// How to join: a token (QR link, or stored from an earlier join), or a session code and
/// optional password (typed by a person after discovery).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinCredentials {
    /// Session token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Human session code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_code: Option<String>,
    /// Password for a code join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// The member secret the master gave this device at its first join: a rejoin proves it
    /// (PROTOCOL.md §9.2), so no other device can take this device's place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_secret: Option<String>,
}

/// What a follower persists so a restart rejoins automatically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowerRecord {
    /// Session id.
    pub session_id: String,
    /// Human session code.
    pub session_code: String,
    /// Session name.
    pub session_name: String,
    /// Stored token (a QR join; a code join never has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The member secret the master gave this device: what a rejoin proves (PROTOCOL.md §6.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_secret: Option<String>,
    /// Follow or free.
    pub follow_mode: FollowMode,
    /// What was shown.
    pub view: PageState,
    /// Groups of synced state this device applies.
    #[serde(default = "default_sync_groups")]
    pub sync_groups: BTreeSet<String>,
}

/// The choir follower.
#[derive(Debug)]
pub struct Follower {
    cfg: FollowerConfig,
    state: FollowerState,
    out: Outbox,
    rng: Rng,
    backoff: Backoff,
    creds: Option<JoinCredentials>,
    session_id: String,
    session_code: String,
    session_name: String,
    link: Option<(PeerId, Link)>,
    follow_mode: FollowMode,
    master: Option<PageState>,
    view: PageState,
    stream: Option<StreamInfo>,
    host_id: String,
    files: SessionFiles,
    participants: BTreeMap<String, Participant>,
    count: u32,
    retry_at: Option<Time>,
    join_resend_at: Option<Time>,
    joined_once: bool,
    clock: ClockFilter,
    probes_left: u32,
    probe_at: Option<Time>,
    /// When the master's latest (timed) page state is due on this clock.
    page_due: Option<Time>,
    /// The master's playback state, on the master's clock.
    master_playback: Option<Playback>,
    /// The same moved onto this clock, as last announced to the app.
    playback: Option<Playback>,
    control: Control,
    keys: KeyStore,
    sync_groups: BTreeSet<String>,
}

impl Follower {
    /// A follower with no session. `seed` drives backoff jitter.
    pub fn new(cfg: FollowerConfig, seed: u64) -> Follower {
        Follower {
            state: FollowerState::IdleLocal,
            out: Outbox::default(),
            rng: Rng::new(seed),
            backoff: Backoff::new(cfg.backoff),
            follow_mode: cfg.follow_mode,
            creds: None,
            session_id: String::new(),
            session_code: String::new(),
            session_name: String::new(),
            link: None,
            master: None,
            view: PageState::default(),
            stream: None,
            host_id: String::new(),
            files: SessionFiles::default(),
            participants: BTreeMap::new(),
            count: 0,
            retry_at: None,
            join_resend_at: None,
            joined_once: false,
            clock: ClockFilter::default(),
            probes_left: 0,
            probe_at: None,
            page_due: None,
            master_playback: None,
            playback: None,
            control: Control::default(),
            keys: KeyStore::default(),
            sync_groups: cfg.sync_groups.clone(),
            cfg,
        }
    }

    /// A follower restarted with a stored membership: it rejoins at once.
    pub fn restore(cfg: FollowerConfig, seed: u64, now: Time, rec: FollowerRecord) -> Follower {
        let mut f = Follower::new(cfg, seed);
        f.creds = Some(JoinCredentials {
            token: rec.token,
            session_code: Some(rec.session_code.clone()).filter(|c| !c.is_empty()),
            password: None,
            member_secret: rec.member_secret,
        });
        f.session_id = rec.session_id;
        f.session_code = rec.session_code;
        f.session_name = rec.session_name;
        f.follow_mode = rec.follow_mode;
        f.view = rec.view;
        f.sync_groups = rec.sync_groups;
        f.joined_once = true;
        f.enter(FollowerState::DisconnectedLocal, "restored after restart");
        f.retry_at = Some(now);
        f
    }

    /// Current state.
    pub fn state(&self) -> FollowerState {
        self.state
    }
    /// What the device shows.
    pub fn view(&self) -> &PageState {
        &self.view
    }
    /// The master's latest known state.
    pub fn master(&self) -> Option<&PageState> {
        self.master.as_ref()
    }
    /// Follow or free.
    pub fn follow_mode(&self) -> FollowMode {
        self.follow_mode
    }
    /// The streamed score shown, if any.
    pub fn stream(&self) -> Option<&StreamInfo> {
        self.stream.as_ref()
    }
    /// Session id (empty when not in a session).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }
    /// The stored token, if any.
    pub fn token(&self) -> Option<&str> {
        self.creds.as_ref().and_then(|c| c.token.as_deref())
    }
    /// The member secret the master gave this device, if any.
    pub fn member_secret(&self) -> Option<&str> {
        self.creds.as_ref().and_then(|c| c.member_secret.as_deref())
    }
    /// Participants as last announced, master included.
    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }
    /// Connected participants as last announced.
    pub fn count(&self) -> u32 {
        self.count
    }
    /// Smoothed round-trip time to the master.
    pub fn rtt(&self) -> Option<Duration> {
        self.link.as_ref().and_then(|(_, l)| l.rtt)
    }
    /// What is known of the master's clock: offset (master − this device) and round trip.
    pub fn clock(&self) -> Option<ClockEstimate> {
        self.clock.estimate()
    }
    /// The master's clock at local time `now`, as estimated (the local clock until a sample).
    pub fn master_time(&self, now: Time) -> Time {
        shift(now, self.clock.offset_us())
    }
    /// The playback state on this device's clock, when the `playback` group is applied.
    pub fn playback(&self) -> Option<&Playback> {
        self.playback.as_ref()
    }
    /// Playback position (µs of media time) at local time `now`, when applied.
    pub fn playback_position(&self, now: Time) -> Option<u64> {
        self.playback.as_ref().map(|p| p.position_at(now))
    }
    /// The master's playback state as received (master clock), applied or not.
    pub fn master_playback(&self) -> Option<&Playback> {
        self.master_playback.as_ref()
    }
    /// Control mode and editor.
    pub fn control(&self) -> &Control {
        &self.control
    }
    /// Every synced key known, applied or not.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }
    /// The groups of synced state this device applies.
    pub fn sync_groups(&self) -> &BTreeSet<String> {
        &self.sync_groups
    }
    /// Whether this device applies a group.
    pub fn applies(&self, group: &str) -> bool {
        self.sync_groups.contains(group)
    }

    fn enter(&mut self, state: FollowerState, reason: &str) {
        self.out.transition(&mut self.state, state, reason);
    }

    fn connected_state(&self) -> FollowerState {
        match self.follow_mode {
            FollowMode::Follow => FollowerState::ConnectedFollow,
            FollowMode::Free => FollowerState::ConnectedFree,
        }
    }

    fn persist(&mut self) {
        let creds = self
            .creds
            .as_ref()
            .filter(|c| c.token.is_some() || c.member_secret.is_some());
        let rec = match creds {
            Some(creds) if !self.session_id.is_empty() => Record::Follower(FollowerRecord {
                session_id: self.session_id.clone(),
                session_code: self.session_code.clone(),
                session_name: self.session_name.clone(),
                token: creds.token.clone(),
                member_secret: creds.member_secret.clone(),
                follow_mode: self.follow_mode,
                view: self.view.clone(),
                sync_groups: self.sync_groups.clone(),
            }),
            _ => Record::Cleared,
        };
        self.out.push(Output::Persist(rec));
    }

    fn send(&mut self, now: Time, msg: Message) {
        let Some((peer, link)) = self.link.as_mut() else {
            return;
        };
        let ts = now.as_millis();
        if let Some(text) = self
            .out
            .envelope(&self.session_id, &self.cfg.device_id, ts, msg)
        {
            link.sent(now);
            self.out.push(Output::Send(*peer, text));
        }
    }

    fn show(&mut self, view: PageState, origin: Origin) {
        if view.song_id == self.view.song_id
            && view.song_epoch == self.view.song_epoch
            && view.page_index == self.view.page_index
        {
            return;
        }
        self.view = PageState { at: None, ..view };
        self.out.event(Event::page(&self.view, origin));
    }

    /// Applies a state from the master. `authoritative` (a JOIN_ACCEPT) replaces whatever was
    /// known; otherwise only strictly newer `(song_epoch, page_revision)` is taken.
    fn apply_master(&mut self, now: Time, state: PageState, authoritative: bool) {
        let known = self.master.as_ref().map(PageState::version);
        if !authoritative && known.is_some_and(|v| state.version() <= v) {
            // Stale or duplicate (§11.2, §11.3). The same version still pulls a follow-mode
            // view back: local navigation while following is only a glance.
            let waiting = self.page_due.is_some();
            if known == Some(state.version()) && self.follow_mode == FollowMode::Follow && !waiting
            {
                self.show(state, Origin::Remote);
            }
            return;
        }
        if self
            .stream
            .as_ref()
            .is_some_and(|s| s.song_epoch < state.song_epoch)
        {
            self.stream = None;
            self.out.event(Event::StreamCleared);
        }
        self.page_due = self.due(now, &state);
        self.master = Some(state);
        if self.page_due.is_none() {
            self.show_master();
        }
    }

    /// Shows the master's state as the mode says: all of it when following, only a song change
    /// when free.
    fn show_master(&mut self) {
        let Some(state) = self.master.clone() else {
            return;
        };
        let song_changed = state.song_epoch != self.view.song_epoch;
        if self.follow_mode == FollowMode::Follow || song_changed {
            self.show(state, Origin::Remote);
        }
    }

    /// When a timed state is due on this clock; `None` for at once (no `at`, already past, or
    /// absurdly far ahead).
    fn due(&self, now: Time, state: &PageState) -> Option<Time> {
        let at_ms = state.at?;
        let offset = self.clock.offset_us();
        let master_now_ms = shift(now, offset).as_millis();
        if at_ms <= master_now_ms || at_ms > master_now_ms.saturating_add(MAX_SCHEDULE_AHEAD_MS) {
            return None;
        }
        Some(shift(Time::from_millis(at_ms), -offset))
    }

    /// Applies the master's playback state if newer (or, from a JOIN_ACCEPT, whatever it is).
    fn apply_playback(&mut self, now: Time, p: Playback, authoritative: bool) {
        let known = self.master_playback.as_ref().map(|m| m.revision);
        if !authoritative && known.is_some_and(|r| p.revision <= r) {
            // Same state again (a snapshot): only the drift check.
            self.resync_playback(now);
            return;
        }
        self.master_playback = Some(p);
        self.resync_playback(now);
    }

    /// Moves the master's playback onto this clock and tells the app when it is a new state or
    /// the local model has drifted beyond the tolerance.
    fn resync_playback(&mut self, now: Time) {
        if !self.applies(PLAYBACK_GROUP) {
            return;
        }
        let Some(master) = &self.master_playback else {
            return;
        };
        let target = master.rebased(now, self.clock.offset_us());
        let tolerance = self.cfg.playback_tolerance.as_micros() as u64;
        let stale = match &self.playback {
            None => true,
            Some(local) => {
                local.revision != target.revision
                    || local.distance(local.position_at(now), target.position_us) > tolerance
            }
        };
        if stale {
            self.playback = Some(target.clone());
            self.out.event(Event::Playback(target));
        }
    }

    fn apply_control(&mut self, control: Control, authoritative: bool) {
        if !authoritative && control.revision <= self.control.revision {
            return;
        }
        if control != self.control {
            self.control = control.clone();
            self.out.event(Event::Control(control));
        }
    }

    /// Stores a key and tells the app if it applies the key's group.
    fn apply_key(&mut self, entry: KeyEntry, origin: Origin) {
        if self.keys.merge(entry.clone()) == Merge::Applied && self.applies(entry.group()) {
            self.out.event(Event::Key {
                key: entry.key,
                value: entry.value,
                origin,
            });
        }
    }

    fn is_editor(&self) -> bool {
        self.control.editor.as_deref() == Some(self.cfg.device_id.as_str())
    }

    fn on_playback_command(&mut self, now: Time, op: &PlaybackOp) {
        if !self.state.connected() {
            self.out
                .error("not-connected", "not connected to the master");
            return;
        }
        let shared = self.control.mode == ControlMode::SharedPause && op.is_pause_or_resume();
        if !(self.is_editor() || shared) {
            self.out.error(
                "forbidden-not-host",
                "only the host or the editor may do that",
            );
            return;
        }
        let mut op = op.clone();
        let _ = op.validate(); // clamps only
        self.send(now, Message::PlaybackRequest(op));
    }

    /// A local write: applied here at once (last-write-wins), sent to the master, which relays
    /// it or, for a key this device may not write, answers with the held value.
    fn on_key_command(
        &mut self,
        now: Time,
        key: &str,
        value: &serde_json::Value,
        policy: KeyPolicy,
    ) {
        let mut entry = KeyEntry {
            key: key.to_string(),
            value: value.clone(),
            policy,
            stamp: self.keys.stamp(now, &self.cfg.device_id),
        };
        if let Err(e) = entry.validate() {
            self.out.error("invalid-key", e.to_string());
            return;
        }
        let held_host = self
            .keys
            .get(key)
            .is_some_and(|h| h.policy == KeyPolicy::Host);
        if (policy == KeyPolicy::Host || held_host) && !self.is_editor() {
            self.out.error(
                "forbidden-not-host",
                "only the host or the editor may set this key",
            );
            return;
        }
        self.apply_key(entry.clone(), Origin::Local);
        if self.state.connected() {
            self.send(now, Message::KeySet(entry));
        }
    }

    fn set_sync(&mut self, now: Time, group: &str, apply: bool) {
        if check_id("group", group, false).is_err() || group.contains('.') {
            self.out.error("invalid-group", "not a group name");
            return;
        }
        let changed = if apply {
            self.sync_groups.insert(group.to_string())
        } else {
            self.sync_groups.remove(group)
        };
        if !changed {
            return;
        }
        self.out.event(Event::SyncGroups {
            groups: self.sync_groups.iter().cloned().collect(),
        });
        self.persist();
        match (group == PLAYBACK_GROUP, apply) {
            (true, true) => self.resync_playback(now),
            (true, false) => self.playback = None,
            (false, true) => {
                // Catch up with the group's current values at once.
                let entries: Vec<KeyEntry> = self
                    .keys
                    .iter()
                    .filter(|e| e.group() == group)
                    .cloned()
                    .collect();
                for e in entries {
                    self.out.event(Event::Key {
                        key: e.key,
                        value: e.value,
                        origin: Origin::Remote,
                    });
                }
            }
            (false, false) => {}
        }
    }

    fn set_stream(&mut self, info: StreamInfo) {
        let current = self.master.as_ref().map_or(0, |m| m.song_epoch);
        if info.song_epoch < current || self.stream.as_ref() == Some(&info) {
            return;
        }
        self.stream = Some(info.clone());
        self.out.event(Event::StreamPrepared(info));
    }

    fn clear_stream(&mut self) {
        if self.stream.take().is_some() {
            self.out.event(Event::StreamCleared);
        }
    }

    fn dial(&mut self, state: FollowerState, reason: &str) {
        self.retry_at = None;
        self.enter(state, reason);
        self.out.event(Event::Link {
            peer: 0,
            state: if state == FollowerState::Joining {
                LinkState::Connecting
            } else {
                LinkState::Reconnecting
            },
        });
        let creds = self.creds.clone().unwrap_or_default();
        self.out.push(Output::Dial(creds));
    }

    /// The link is gone or never came: keep the page, navigate locally, retry later.
    fn link_lost(&mut self, now: Time, reason: &str) {
        if let Some((peer, _)) = self.link.take() {
            self.out.push(Output::Close(peer));
            self.out.event(Event::Link {
                peer,
                state: LinkState::Reconnecting,
            });
        }
        self.join_resend_at = None;
        if !(self.state.connected() || self.state.dialing()) {
            return;
        }
        self.enter(FollowerState::DisconnectedLocal, reason);
        self.schedule_retry(now);
    }

    fn schedule_retry(&mut self, now: Time) {
        match self.backoff.next_delay(&mut self.rng) {
            Some(delay) => self.retry_at = Some(now + delay),
            None => {
                self.retry_at = None;
                self.out.event(Event::GaveUp {
                    attempts: self.backoff.attempts(),
                });
                self.out.event(Event::Error {
                    code: "network-unavailable".into(),
                    message: "cannot reach the master; retry manually".into(),
                });
            }
        }
    }

    /// Back to no session at all: SESSION_END, or a token the master refuses.
    fn leave_session(&mut self, reason: &str) {
        if let Some((peer, _)) = self.link.take() {
            self.out.push(Output::Close(peer));
            self.out.event(Event::Link {
                peer,
                state: LinkState::Ended,
            });
        }
        self.creds = None;
        self.session_id.clear();
        self.session_code.clear();
        self.master = None;
        self.participants.clear();
        self.count = 0;
        self.retry_at = None;
        self.join_resend_at = None;
        self.joined_once = false;
        self.page_due = None;
        self.probe_at = None;
        self.clock.reset();
        self.master_playback = None;
        self.playback = None;
        self.control = Control::default();
        self.keys = KeyStore::default();
        self.clear_stream();
        self.enter(FollowerState::IdleLocal, reason);
        self.persist();
    }

    fn join_request(&self) -> JoinRequest {
        let creds = self.creds.clone().unwrap_or_default();
        JoinRequest {
            token: creds.token,
            session_code: creds.session_code,
            password: creds.password,
            member_secret: creds.member_secret,
            device_name: self.cfg.device_name.clone(),
            follow_mode: self.follow_mode,
        }
    }

    fn on_link_up(&mut self, now: Time, peer: PeerId) {
        if !self.state.dialing() || self.link.is_some() {
            self.out.push(Output::Close(peer)); // a link we no longer want
            return;
        }
        self.link = Some((peer, Link::open(now, self.cfg.heartbeat)));
        self.out.event(Event::Link {
            peer,
            state: LinkState::Connected,
        });
        let hello = Message::Hello(Hello {
            mode: Mode::ChoirFollower,
            device_name: self.cfg.device_name.clone(),
            capabilities: vec![],
        });
        self.send(now, hello);
        self.send(now, Message::JoinRequest(self.join_request()));
        self.join_resend_at = Some(now + self.cfg.join_retry);
    }

    fn on_received(&mut self, now: Time, peer: PeerId, decoded: Result<Envelope, DecodeError>) {
        let Some((current, link)) = self.link.as_mut() else {
            return;
        };
        if *current != peer {
            return;
        }
        let env = match decoded {
            Ok(env) => env,
            Err(DecodeError::UnknownType(t)) => {
                tracing::debug!(t, "ignored unknown message type");
                return;
            }
            Err(e) => {
                tracing::debug!(%e, "ignored malformed message");
                return;
            }
        };
        let (admit, recovered) = link.admit_envelope(now, &env);
        if recovered {
            self.out.event(Event::Link {
                peer,
                state: LinkState::Connected,
            });
        }
        // State messages carry their own, stronger order (song epoch, page revision), so one
        // overtaken on a reordering path still counts; everything else must be fresh.
        let ordered_by_revision = matches!(
            env.msg,
            Message::SetPage(_)
                | Message::SetSong(_)
                | Message::StateSnapshot(_)
                | Message::Playback(_)
                | Message::Control(_)
                | Message::KeySet(_)
        );
        if admit == Admit::RateLimited || (admit == Admit::Stale && !ordered_by_revision) {
            return;
        }
        // Once joined, only this session's messages count.
        let joined = self.state.connected();
        if joined && env.session_id != self.session_id {
            return;
        }
        match env.msg {
            Message::Ping(ping) => self.send(now, Message::Pong(Link::pong(now, &ping))),
            Message::Pong(pong) => {
                if let Some((_, link)) = self.link.as_mut() {
                    link.on_pong(now, &pong);
                }
                // A better clock sample can move the prediction: check the drift.
                if self.clock.on_pong(now, &pong) {
                    self.resync_playback(now);
                }
            }
            Message::JoinAccept(accept) if self.state.dialing() => {
                self.on_accept(now, env.session_id, env.sender_id, accept)
            }
            Message::JoinReject(r) if self.state.dialing() => self.on_reject(now, r.reason),
            Message::SessionEnd(_) if joined => {
                self.leave_session("session ended by the master");
                self.out.event(Event::SessionEnded);
            }
            Message::SetSong(state) | Message::SetPage(state) if joined => {
                self.apply_master(now, state, false)
            }
            Message::StateSnapshot(Snapshot::Choir(snap)) if joined => {
                self.apply_snapshot(now, snap, false)
            }
            Message::Playback(p) if joined => self.apply_playback(now, p, false),
            Message::Control(c) if joined => self.apply_control(c, false),
            Message::KeySet(entry) if joined => self.apply_key(entry, Origin::Remote),
            Message::StreamPrepare(info) if joined => self.set_stream(info),
            Message::StreamClear(c)
                if joined
                    && (c.stream_id.is_empty()
                        || self
                            .stream
                            .as_ref()
                            .is_some_and(|s| s.stream_id == c.stream_id)) =>
            {
                self.clear_stream()
            }
            Message::Presence(p) if joined => self.apply_presence(p),
            _ => {}
        }
    }

    fn apply_snapshot(&mut self, now: Time, snap: ChoirSnapshot, authoritative: bool) {
        let epoch = snap.page.song_epoch;
        self.apply_master(now, snap.page, authoritative);
        if let Some(p) = snap.playback {
            self.apply_playback(now, *p, authoritative);
        }
        self.apply_control(snap.control, authoritative);
        for entry in snap.keys {
            self.apply_key(entry, Origin::Remote);
        }
        match snap.stream {
            Some(s) if s.song_epoch >= epoch => self.set_stream(s),
            Some(_) => {}
            None => self.clear_stream(),
        }
        if !snap.session_name.is_empty() {
            self.session_name = snap.session_name;
        }
        if snap.files != self.files {
            self.files = snap.files;
            self.out.event(Event::SessionFiles(self.files.clone()));
        }
        if !snap.participants.is_empty() {
            let count = snap
                .participants
                .iter()
                .filter(|p| p.status == PresenceStatus::Connected)
                .count() as u32;
            self.apply_presence(Presence {
                count,
                complete: true,
                participants: snap.participants,
            });
        }
    }

    fn apply_presence(&mut self, p: Presence) {
        if p.complete {
            let gone: Vec<Participant> = self
                .participants
                .values()
                .filter(|old| !p.participants.iter().any(|n| n.id == old.id))
                .cloned()
                .collect();
            for mut old in gone {
                self.participants.remove(&old.id);
                if old.status == PresenceStatus::Connected {
                    old.status = PresenceStatus::Left; // absent from the whole list
                    self.out.event(Event::ParticipantLeft(old));
                }
            }
        }
        for entry in p.participants {
            let was = self
                .participants
                .get(&entry.id)
                .map(|e| e.status == PresenceStatus::Connected)
                .unwrap_or(false);
            let is = entry.status == PresenceStatus::Connected;
            match (was, is) {
                (false, true) => self.out.event(Event::ParticipantJoined(entry.clone())),
                (true, false) => self.out.event(Event::ParticipantLeft(entry.clone())),
                _ => {}
            }
            if entry.status == PresenceStatus::Left {
                self.participants.remove(&entry.id);
            } else {
                self.participants.insert(entry.id.clone(), entry);
            }
        }
        if p.count != self.count {
            self.count = p.count;
            self.out.event(Event::Presence { count: p.count });
        }
    }

    fn on_accept(&mut self, now: Time, session_id: String, host_id: String, accept: JoinAccept) {
        self.host_id = host_id;
        let rejoin = self.joined_once;
        self.join_resend_at = None;
        self.session_id = session_id;
        self.session_code = accept.session_code;
        // Rejoins prove the member secret; the token stays only if this device had it (a QR
        // join), or an older master sent it.
        let mut creds = self.creds.take().unwrap_or_default();
        creds.member_secret = accept.member_secret.or(creds.member_secret);
        creds.token = creds.token.or(accept.token);
        self.creds = Some(creds);
        self.backoff.reset();
        self.joined_once = true;
        let state = self.connected_state();
        self.enter(state, if rejoin { "rejoined" } else { "join accepted" });
        // On (re)join the master's state overrides the previous page context: §11.3.
        self.apply_snapshot(now, accept.snapshot, true);
        // A burst of clock probes, so timed turns and playback are right within a second.
        self.probes_left = self.cfg.clock_burst;
        self.probe_at = (self.probes_left > 0).then_some(now);
        // The membership is on disk before anyone hears of it: an app (or a person) that sees
        // "joined" and is then killed still rejoins as this member.
        self.persist();
        self.out.event(Event::Joined {
            session_id: self.session_id.clone(),
            host_id: self.host_id.clone(),
            session_code: self.session_code.clone(),
            session_name: self.session_name.clone(),
            rejoin,
        });
        // Tell the master our mode in case it changed while we were away.
        let mode = self.follow_mode;
        self.send(now, Message::SetFollowMode(FollowModeMsg { mode }));
    }

    fn on_reject(&mut self, now: Time, reason: RejectReason) {
        tracing::info!(?reason, "join rejected");
        let _ = now;
        self.out.event(Event::Rejected { reason });
        self.out.error(
            reason.code(),
            match reason {
                RejectReason::InvalidToken => "the session token is not valid",
                RejectReason::InvalidPassword => "wrong password",
                RejectReason::SessionEnded => "the session has ended",
                RejectReason::VersionMismatch => "the master speaks another protocol version",
                RejectReason::SessionFull => "the session is full",
                RejectReason::SessionNotFound => "no session with that code",
                RejectReason::DeviceIdTaken => "another member of the session has this device id",
                RejectReason::Unknown => "the master refused the join",
            },
        );
        self.leave_session("join rejected");
    }

    fn on_command(&mut self, now: Time, cmd: &Command) {
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
                self.creds = Some(creds.clone());
                self.backoff.reset();
                self.dial(FollowerState::Joining, "join requested");
            }
            Command::Leave => {
                if self.state.connected() {
                    self.send(now, Message::LeaveSession(Empty {}));
                }
                self.leave_session("left by the user");
            }
            Command::SetPage { page } => {
                // Local navigation is never blocked (§12.1, §12.4).
                let view = PageState {
                    page_index: (*page).min(crate::protocol::MAX_PAGE),
                    ..self.view.clone()
                };
                self.show(view, Origin::Local);
            }
            Command::SetFollowMode { mode } => self.set_follow_mode(now, *mode),
            Command::Playback(op) => self.on_playback_command(now, op),
            Command::SetKey { key, value, policy } => self.on_key_command(now, key, value, *policy),
            Command::SetSync { group, apply } => self.set_sync(now, group, *apply),
            Command::Retry => {
                if self.state == FollowerState::DisconnectedLocal && self.creds.is_some() {
                    self.backoff.reset();
                    self.dial(FollowerState::Rejoining, "manual retry");
                }
            }
            other => self.out.not_allowed("follower", other),
        }
    }

    fn set_follow_mode(&mut self, now: Time, mode: FollowMode) {
        if mode == self.follow_mode {
            return;
        }
        self.follow_mode = mode;
        self.out.event(Event::FollowMode { mode });
        if self.state.connected() {
            let next = self.connected_state();
            self.enter(next, "follow mode toggled");
            self.send(now, Message::SetFollowMode(FollowModeMsg { mode }));
        }
        // free → follow resyncs at once to the last known master state (§11.4).
        // A timed turn still pending shows when due.
        if mode == FollowMode::Follow && self.page_due.is_none() {
            self.show_master();
        }
        self.persist();
    }

    fn on_timeout(&mut self, now: Time) {
        if self.retry_at.is_some_and(|t| now >= t) {
            self.dial(FollowerState::Rejoining, "retrying");
        }
        if self.join_resend_at.is_some_and(|t| now >= t) {
            self.join_resend_at = Some(now + self.cfg.join_retry);
            self.send(now, Message::JoinRequest(self.join_request()));
        }
        if self.page_due.is_some_and(|t| now >= t) {
            self.page_due = None;
            self.show_master();
        }
        if self.probe_at.is_some_and(|t| now >= t) {
            self.probes_left = self.probes_left.saturating_sub(1);
            self.probe_at = (self.probes_left > 0).then(|| now + self.cfg.clock_burst_interval);
            if let Some((_, link)) = self.link.as_mut() {
                let ping = link.probe(now);
                self.send(now, Message::Ping(ping));
            }
        }
        let Some((peer, link)) = self.link.as_mut() else {
            return;
        };
        let peer = *peer;
        match link.tick(now) {
            Tick::Idle => {}
            Tick::Ping(ping) => self.send(now, Message::Ping(ping)),
            Tick::Degraded => self.out.event(Event::Link {
                peer,
                state: LinkState::Degraded,
            }),
            Tick::Dead => self.link_lost(now, "heartbeat lost"),
        }
    }
}

impl Machine for Follower {
    fn handle(&mut self, now: Time, input: Input<'_>) {
        match input {
            Input::LinkUp(peer) | Input::AdmittedLinkUp(peer, _) => self.on_link_up(now, peer),
            Input::LinkDown(peer) => {
                if self.link.as_ref().is_some_and(|(p, _)| *p == peer) {
                    self.link = None;
                    self.out.event(Event::Link {
                        peer,
                        state: LinkState::Reconnecting,
                    });
                    self.link_lost(now, "link lost");
                }
            }
            Input::DialRefused(reason) => {
                if self.state.dialing() && self.link.is_none() {
                    self.on_reject(now, reason);
                }
            }
            Input::DialFailed => {
                if self.state.dialing() && self.link.is_none() {
                    self.link_lost(now, "dial failed");
                }
            }
            Input::NetworkChanged => {
                if self.state == FollowerState::DisconnectedLocal && self.creds.is_some() {
                    self.dial(FollowerState::Rejoining, "network changed");
                }
            }
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
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Time> {
        earliest([
            self.retry_at,
            self.join_resend_at,
            self.page_due,
            self.probe_at,
            self.link.as_ref().map(|(_, l)| l.deadline()),
        ])
    }
}
