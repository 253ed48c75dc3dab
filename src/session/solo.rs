//! Solo pairing (PROTOCOL.md §6.1): two equal devices, either may turn.
//!
//! Conflicts resolve by last write wins on a stamp `(ts, sender_id)`: the newest `ts` wins and the
//! lexicographically higher device id breaks ties. `ts` is a hybrid clock — never below the last
//! stamp seen plus one — so a device whose wall clock lags still wins with a change it makes
//! *after* seeing its partner's. On every (re)connect both devices send a snapshot and both
//! adopt whichever stamp is higher, so they converge without a leader.
//!
//! | file | part |
//! |---|---|
//! | `solo/config.rs` | [`SoloConfig`] |
//! | `solo/state.rs` | [`SoloState`], the role's states |
//! | `solo/bond.rs` | the remembered pair: PAIR_BOND, the pair secret, [`SoloRecord`], the door |
//!
//! The one link and its heartbeat are a `OneLink`, and inputs reach the device through the
//! `OneLinkRole` skeleton, as for the follower (`session/link/one.rs`). This file holds the
//! driver: the shared page and layout and what the device does about each input.

mod bond;
mod config;
mod state;

pub use bond::SoloRecord;
pub use config::SoloConfig;
pub use state::SoloState;

use super::link::{Beat, LinkHealth, OneLink, OneLinkRole};
use super::{
    earliest, Backoff, Command, DoorQuery, DoorReply, Event, Input, LinkState, Machine, Origin,
    Outbox, Output, PeerId, Rng,
};
use crate::protocol::{
    Empty, Envelope, Hello, Layout, Message, Mode, PageState, Parity, RejectReason, Snapshot,
    SoloSnapshot, Stamp,
};
use crate::time::Time;
use std::time::Duration;

/// The reason of the state change when the partner says goodbye (LEAVE_SESSION, §6.1).
pub const PARTNER_LEFT: &str = "partner left";

/// One device of a solo pair.
#[derive(Debug)]
pub struct Solo {
    cfg: SoloConfig,
    state: SoloState,
    out: Outbox,
    rng: Rng,
    backoff: Backoff,
    link: OneLink,
    partner: Option<String>,
    page: PageState,
    page_stamp: Stamp,
    layout: Layout,
    layout_stamp: Stamp,
    retry_at: Option<Time>,
    snapshot_due: Option<Time>,
    /// The partner's name as its last HELLO said (kept in the record).
    partner_name: String,
    /// The remembered pair as it is now, and as it was last persisted.
    remembered: Option<SoloRecord>,
    persisted: Option<SoloRecord>,
    /// This device left by the user: it neither redials nor admits a redial until `Retry`.
    left: bool,
    /// When a live-looking link was last probed with a dial (see `on_network_changed`).
    probed_at: Option<Time>,
}

impl Solo {
    /// An unpaired device. `seed` drives backoff jitter.
    pub fn new(cfg: SoloConfig, seed: u64) -> Solo {
        // Nothing changed yet: ts 0, stamped with this device's own id (§6.1), never an empty id.
        let unchanged = Stamp {
            ts: 0,
            sender_id: cfg.device_id.clone(),
        };
        Solo {
            state: SoloState::LocalOnly,
            out: Outbox::default(),
            rng: Rng::new(seed),
            backoff: Backoff::new(cfg.backoff),
            cfg,
            link: OneLink::default(),
            partner: None,
            page: PageState::default(),
            page_stamp: unchanged.clone(),
            layout: Layout::default(),
            layout_stamp: unchanged,
            retry_at: None,
            snapshot_due: None,
            partner_name: String::new(),
            remembered: None,
            persisted: None,
            left: false,
            probed_at: None,
        }
    }

    /// The remembered pair, once its secret is agreed (`None` for a pair that is not
    /// remembered).
    pub fn record(&self) -> Option<&SoloRecord> {
        self.remembered.as_ref()
    }

    /// Current state.
    pub fn state(&self) -> SoloState {
        self.state
    }
    /// Shared song and page.
    pub fn page(&self) -> &PageState {
        &self.page
    }
    /// Stamp of the last page change (last-write-wins key).
    pub fn page_stamp(&self) -> &Stamp {
        &self.page_stamp
    }
    /// Effective layout: an unset leader means the higher device id of the pair leads.
    pub fn layout(&self) -> Layout {
        let mut layout = self.layout.clone();
        if layout.leader_device_id.is_empty() {
            let me = &self.cfg.device_id;
            layout.leader_device_id = match &self.partner {
                Some(p) if p > me => p.clone(),
                _ => me.clone(),
            };
        }
        layout
    }
    /// The page this device shows: the leader shows the shared page, its partner the next one.
    pub fn own_page(&self) -> u32 {
        let alone = self.state == SoloState::LocalOnly;
        if alone || self.layout().leader_device_id == self.cfg.device_id {
            self.page.page_index
        } else {
            self.page.page_index.saturating_add(1)
        }
    }
    /// Smoothed round-trip time to the partner.
    pub fn rtt(&self) -> Option<Duration> {
        self.link.rtt()
    }

    fn enter(&mut self, state: SoloState, reason: &str) {
        self.out.transition(&mut self.state, state, reason);
    }

    /// The next local stamp: the wall clock, but never at or below a stamp already seen.
    fn next_stamp(&self, now: Time) -> Stamp {
        let seen = self.page_stamp.ts.max(self.layout_stamp.ts);
        Stamp {
            ts: now.as_millis().max(seen + 1),
            sender_id: self.cfg.device_id.clone(),
        }
    }

    /// Sends `msg` stamped `ts` to the partner; offline, nothing is sent: the snapshot on
    /// reconnect carries the change.
    fn send(&mut self, now: Time, ts: u64, msg: Message) {
        let from = (self.cfg.pair_id.as_str(), self.cfg.device_id.as_str());
        self.link.send(&mut self.out, now, from, ts, msg);
    }

    fn snapshot(&self) -> SoloSnapshot {
        SoloSnapshot {
            page: self.page.clone(),
            last_page_change: self.page_stamp.clone(),
            layout: self.layout.clone(),
            last_layout_change: self.layout_stamp.clone(),
        }
    }

    /// Adopts a page if its stamp beats ours (PROTOCOL.md §6.1).
    fn merge_page(&mut self, page: PageState, stamp: Stamp, origin: Origin) {
        if stamp <= self.page_stamp {
            return;
        }
        self.page_stamp = stamp;
        let changed = page.page_index != self.page.page_index || page.song_id != self.page.song_id;
        self.page = PageState { at: None, ..page };
        if changed || origin == Origin::Local {
            self.out.event(Event::page(&self.page, origin));
        }
    }

    fn merge_layout(&mut self, layout: Layout, stamp: Stamp) {
        if stamp <= self.layout_stamp {
            return;
        }
        self.layout_stamp = stamp;
        let before = self.layout();
        self.layout = layout;
        if self.layout() != before {
            self.out.event(Event::Layout(self.layout()));
        }
    }

    fn on_link_up(&mut self, now: Time, peer: PeerId) {
        self.link.open(now, peer, self.cfg.heartbeat, &mut self.out);
        self.retry_at = None;
        self.backoff.reset();
        self.enter(SoloState::PairedConnected, "paired");
        let hello = Message::Hello(Hello {
            mode: Mode::Solo,
            device_name: self.cfg.device_name.clone(),
            capabilities: vec![],
        });
        self.send(now, now.as_millis(), hello);
        self.send_bond(now);
        self.send_snapshot(now);
    }

    fn send_snapshot(&mut self, now: Time) {
        self.snapshot_due = Some(now + self.cfg.snapshot_interval);
        let snap = Message::StateSnapshot(Snapshot::Solo(self.snapshot()));
        self.send(now, now.as_millis(), snap);
    }

    fn link_lost(&mut self, now: Time, reason: &str) {
        self.link.close(&mut self.out, LinkState::Reconnecting);
        if self.state == SoloState::LocalOnly && self.retry_at.is_none() {
            return; // never paired, nothing to retry
        }
        self.enter(SoloState::PairedReconnecting, reason);
        match self.backoff.next_delay(&mut self.rng) {
            Some(delay) => self.retry_at = Some(now + delay),
            None => {
                self.retry_at = None;
                self.out.event(Event::GaveUp {
                    attempts: self.backoff.attempts(),
                });
                // PROTOCOL.md §6.1: reconnect failure leaves both devices local until manual action.
                self.enter(SoloState::LocalOnly, "reconnect failed");
            }
        }
    }

    /// The pair is over (this device quit, or its partner did): the link closes, the device
    /// works alone and retries nothing until a manual retry or a new pairing (§6.1).
    fn part(&mut self, reason: &str) {
        self.link.close(&mut self.out, LinkState::Ended);
        self.retry_at = None;
        self.snapshot_due = None;
        self.backoff.reset();
        self.enter(SoloState::LocalOnly, reason);
    }

    fn set_layout(&mut self, now: Time, leader: String, parity: Parity) {
        if crate::protocol::check_id("leader", &leader, false).is_err() {
            self.out.error("invalid-leader", "not a device id");
            return;
        }
        let stamp = self.next_stamp(now);
        let layout = Layout {
            leader_device_id: leader,
            parity,
        };
        self.merge_layout(layout.clone(), stamp.clone());
        self.send(now, stamp.ts, Message::SetLayoutParity(layout));
    }
}

impl OneLinkRole for Solo {
    fn link_and_out(&mut self) -> (&mut OneLink, &mut Outbox) {
        (&mut self.link, &mut self.out)
    }

    // Changes carry their own order, the stamp (PROTOCOL.md §6.1), so one overtaken on a
    // reordering path is still judged on it; everything else must be fresh.
    fn carries_own_order(msg: &Message) -> bool {
        matches!(
            msg,
            Message::SetPage(_)
                | Message::SetSong(_)
                | Message::StateSnapshot(_)
                | Message::SetLayoutParity(_)
        )
    }

    fn link_up(&mut self, now: Time, peer: PeerId, admitted: Option<&str>) {
        match (&self.remembered, admitted) {
            // Only the partner passes the door; anything else is not this pair's link.
            (Some(rec), Some(id)) if rec.partner_id != id => self.out.push(Output::Close(peer)),
            _ => self.on_link_up(now, peer),
        }
    }

    fn link_down(&mut self, now: Time) {
        self.link_lost(now, "link lost");
    }

    fn dial_failed(&mut self, now: Time, _refused: Option<RejectReason>) {
        if self.state == SoloState::PairedReconnecting {
            self.link_lost(now, "dial failed");
        }
    }

    fn network_changed(&mut self, now: Time) {
        self.on_network_changed(now);
    }

    fn heard_again(&mut self) {
        self.enter(SoloState::PairedConnected, "partner heard again");
    }

    /// A message admitted on the link.
    fn message(&mut self, now: Time, env: Envelope) {
        let stamp = Stamp {
            ts: env.ts,
            sender_id: env.sender_id.clone(),
        };
        match env.msg {
            Message::Hello(hello) => {
                let before = self.layout();
                self.partner_name = hello.device_name;
                self.partner = Some(env.sender_id);
                if self.layout() != before {
                    self.out.event(Event::Layout(self.layout()));
                }
            }
            Message::StateSnapshot(Snapshot::Solo(s)) => {
                self.merge_page(s.page, s.last_page_change, Origin::Remote);
                self.merge_layout(s.layout, s.last_layout_change);
            }
            Message::SetPage(p) | Message::SetSong(p) => self.merge_page(p, stamp, Origin::Remote),
            Message::SetLayoutParity(l) => self.merge_layout(l, stamp),
            Message::PairBond(bond) => self.on_bond(&env.sender_id, &env.session_id, bond),
            // The partner quit for good (§6.1): no heartbeat to wait for, nothing to redial.
            Message::LeaveSession(_) => self.part(PARTNER_LEFT),
            Message::Ping(ping) => {
                let pong = Message::Pong(LinkHealth::pong(now, &ping));
                self.send(now, now.as_millis(), pong)
            }
            Message::Pong(pong) => self.link.on_pong(now, &pong),
            _ => {}
        }
    }

    fn command(&mut self, now: Time, cmd: &Command) {
        match cmd {
            Command::SetPage { page } => {
                let stamp = self.next_stamp(now);
                let page = PageState {
                    page_index: (*page).min(crate::protocol::MAX_PAGE),
                    ..self.page.clone()
                };
                self.merge_page(page.clone(), stamp.clone(), Origin::Local);
                self.send(now, stamp.ts, Message::SetPage(page));
            }
            Command::SetSong { song_id } => {
                let stamp = self.next_stamp(now);
                let page = PageState {
                    song_id: Some(crate::protocol::truncate(song_id, 256).to_string()),
                    page_index: 0,
                    ..PageState::default()
                };
                self.merge_page(page.clone(), stamp.clone(), Origin::Local);
                self.send(now, stamp.ts, Message::SetSong(page));
            }
            Command::SetParity { leader, parity } => {
                let leader = if leader.is_empty() {
                    self.cfg.device_id.clone()
                } else {
                    leader.clone()
                };
                self.set_layout(now, leader, *parity);
            }
            Command::Retry => {
                if self.state != SoloState::PairedConnected && !self.link.is_open() {
                    self.backoff.reset();
                    self.retry_at = None;
                    self.left = false;
                    self.enter(SoloState::PairedReconnecting, "manual retry");
                    if self.cfg.initiator {
                        self.out.push(Output::Dial(self.dial_credentials()));
                    } else {
                        self.link_lost(now, "waiting for the partner");
                    }
                }
            }
            Command::Leave => {
                if self.link.is_open() {
                    self.send(now, now.as_millis(), Message::LeaveSession(Empty {}));
                }
                self.left = true;
                self.part("left by the user");
            }
            other => self.out.not_allowed("solo device", other),
        }
    }

    fn timeout(&mut self, now: Time) {
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            if self.cfg.initiator {
                self.out.push(Output::Dial(self.dial_credentials()));
            } else {
                // The waiting side counts the same attempts, so both give up together.
                self.link_lost(now, "partner has not redialled");
            }
        }
        if self.snapshot_due.is_some_and(|t| now >= t) && self.link.is_open() {
            self.send_snapshot(now);
        }
        let from = (self.cfg.pair_id.as_str(), self.cfg.device_id.as_str());
        match self.link.tick(&mut self.out, now, from) {
            Beat::Quiet => {}
            Beat::Degraded => self.enter(SoloState::PairedDegraded, "partner silent"),
            Beat::Dead => self.link_lost(now, "heartbeat lost"),
        }
    }
}

impl Machine for Solo {
    fn handle(&mut self, now: Time, input: Input<'_>) {
        self.route(now, input);
        self.sync_record();
    }

    fn door(&self, _now: Time, query: &DoorQuery) -> DoorReply {
        self.bond_door(query)
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop()
    }

    fn poll_timeout(&self) -> Option<Time> {
        let snapshot = self.snapshot_due.filter(|_| self.link.is_open());
        earliest([self.retry_at, snapshot, self.link.deadline()])
    }
}
