//! Presence (PROTOCOL.md §6.2): who is in the session now, the PRESENCE changes batched for a
//! moment, and the expiry of participants who dropped out.

use crate::protocol::{FollowMode, Participant, PresenceStatus, Role, MAX_PARTICIPANTS};
use crate::session::PeerId;
use crate::time::Time;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One admitted device, connected or recently gone.
#[derive(Debug)]
struct Member {
    name: String,
    follow_mode: FollowMode,
    status: PresenceStatus,
    peer: Option<PeerId>,
    since: Time,
}

/// The members by device id, and the presence changes not yet announced.
#[derive(Debug)]
pub(super) struct Roster {
    members: BTreeMap<String, Member>,
    changed: BTreeSet<String>,
    /// When the batched changes go out.
    due: Option<Time>,
    /// How long changes are batched.
    delay: Duration,
    /// How long a disconnected member is listed before it is listed as left.
    expiry: Duration,
}

impl Roster {
    /// An empty roster that batches changes for `delay` and lists a disconnected member as left
    /// after `expiry`.
    pub(super) fn new(delay: Duration, expiry: Duration) -> Roster {
        Roster {
            members: BTreeMap::new(),
            changed: BTreeSet::new(),
            due: None,
            delay,
            expiry,
        }
    }

    /// Connected members.
    pub(super) fn connected(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.status == PresenceStatus::Connected)
            .count()
    }

    /// Whether anyone is disconnected and may come back.
    pub(super) fn waiting(&self) -> bool {
        self.members
            .values()
            .any(|m| m.status == PresenceStatus::Disconnected)
    }

    /// Whether `id` is a member not listed as left.
    pub(super) fn present(&self, id: &str) -> bool {
        self.members
            .get(id)
            .is_some_and(|m| m.status != PresenceStatus::Left)
    }

    /// The link `id` is connected on.
    pub(super) fn peer_of(&self, id: &str) -> Option<PeerId> {
        self.members.get(id).and_then(|m| m.peer)
    }

    /// A member's entry in the participant list.
    pub(super) fn entry(&self, id: &str) -> Option<Participant> {
        self.members.get(id).map(|m| Participant {
            id: id.to_string(),
            name: m.name.clone(),
            role: Role::Follower,
            follow_mode: m.follow_mode,
            status: m.status,
        })
    }

    /// The participant list: `me` (the master) first, then the connected members, then those
    /// recently gone, cut at the wire's limit (PROTOCOL.md §3): connected members alone stay
    /// within it, but members who dropped out are listed for a while too, and a longer list
    /// would make every follower refuse the JOIN_ACCEPT or snapshot that carries it.
    pub(super) fn participants(&self, me: Participant) -> Vec<Participant> {
        let mut members: Vec<Participant> = self
            .members
            .keys()
            .filter_map(|id| self.entry(id))
            .collect();
        // Stable: members keep their id order within each group.
        members.sort_by_key(|p| p.status != PresenceStatus::Connected);
        let mut list = vec![me];
        list.extend(members.into_iter().take(MAX_PARTICIPANTS - 1));
        list
    }

    /// `id` joined (or came back) on `peer`.
    pub(super) fn join(
        &mut self,
        now: Time,
        id: &str,
        name: String,
        follow_mode: FollowMode,
        peer: PeerId,
    ) {
        self.members.insert(
            id.to_string(),
            Member {
                name,
                follow_mode,
                status: PresenceStatus::Connected,
                peer: Some(peer),
                since: now,
            },
        );
    }

    /// `id`'s link `peer` is gone: it is disconnected, if it was connected on that link.
    pub(super) fn disconnect(&mut self, now: Time, id: &str, peer: PeerId) -> bool {
        match self.members.get_mut(id) {
            Some(m) if m.peer == Some(peer) && m.status == PresenceStatus::Connected => {
                m.status = PresenceStatus::Disconnected;
                m.peer = None;
                m.since = now;
                true
            }
            _ => false,
        }
    }

    /// `id` left for good.
    pub(super) fn leave(&mut self, id: &str) {
        if let Some(m) = self.members.get_mut(id) {
            m.status = PresenceStatus::Left;
            m.peer = None;
        }
    }

    /// `id` follows the master or navigates freely.
    pub(super) fn set_follow_mode(&mut self, id: &str, mode: FollowMode) {
        if let Some(m) = self.members.get_mut(id) {
            m.follow_mode = mode;
        }
    }

    /// Members disconnected for longer than the expiry.
    pub(super) fn expired(&self, now: Time) -> Vec<String> {
        self.members
            .iter()
            .filter(|(_, m)| {
                m.status == PresenceStatus::Disconnected && now >= m.since + self.expiry
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Lists `id` as left (its member secret still works) and announces it.
    pub(super) fn expire(&mut self, now: Time, id: &str) {
        if let Some(m) = self.members.get_mut(id) {
            m.status = PresenceStatus::Left;
        }
        self.changed(now, id);
    }

    /// `id`'s entry changed: announced with the next batch.
    pub(super) fn changed(&mut self, now: Time, id: &str) {
        self.changed.insert(id.to_string());
        self.due.get_or_insert(now + self.delay);
    }

    /// Whether the batched changes are due at `now`.
    pub(super) fn flush_due(&self, now: Time) -> bool {
        self.due.is_some_and(|t| now >= t)
    }

    /// The entries that changed since the last flush; members listed as left are forgotten once
    /// announced.
    pub(super) fn flush(&mut self) -> Vec<Participant> {
        self.due = None;
        let changed = std::mem::take(&mut self.changed);
        let participants: Vec<Participant> =
            changed.iter().filter_map(|id| self.entry(id)).collect();
        self.members.retain(|_, m| m.status != PresenceStatus::Left);
        participants
    }

    /// Forgets everyone (the session ended).
    pub(super) fn clear(&mut self) {
        self.members.clear();
        self.changed.clear();
        self.due = None;
    }

    /// When the roster next needs the clock: the batch, and each disconnected member's expiry.
    pub(super) fn deadlines(&self) -> impl Iterator<Item = Option<Time>> + '_ {
        let expiry = self
            .members
            .values()
            .filter(|m| m.status == PresenceStatus::Disconnected)
            .map(|m| Some(m.since + self.expiry));
        expiry.chain([self.due])
    }
}
