//! One link to a follower (PROTOCOL.md §6.4): its heartbeat and clock estimate, its state-update
//! rate (§12.6), and the member it was admitted and joined as (§6.2).

use super::MasterConfig;
use crate::session::clock::ClockFilter;
use crate::session::earliest;
use crate::session::link::{Bucket, LinkHealth};
use crate::time::Time;

/// A link to one follower.
#[derive(Debug)]
pub(super) struct Peer {
    /// Heartbeat and sequence checks.
    pub(super) link: LinkHealth,
    /// The device id the join endpoint admitted this link as (PROTOCOL.md §9.4), if it did.
    pub(super) admitted: Option<String>,
    /// The member this link was joined as: every message on it is that member's.
    pub(super) member: Option<String>,
    /// The name its HELLO gave, for a JOIN_REQUEST without one.
    pub(super) hello_name: String,
    /// What the master's own PINGs tell about its clock.
    pub(super) clock: ClockFilter,
    /// PLAYBACK_REQUEST and KEY_SET allowance.
    pub(super) updates: Bucket,
    /// The link is closed unless it has joined by then.
    join_by: Time,
}

impl Peer {
    /// A link opened at `now`, made by the join endpoint for `admitted` if it was.
    pub(super) fn open(now: Time, admitted: Option<&str>, cfg: &MasterConfig) -> Peer {
        Peer {
            link: LinkHealth::open(now, cfg.heartbeat),
            admitted: admitted.map(str::to_string),
            member: None,
            hello_name: String::new(),
            clock: ClockFilter::default(),
            updates: Bucket::new(now, cfg.updates_per_sec, cfg.update_burst),
            join_by: now + cfg.join_timeout,
        }
    }

    /// Whether the link has not joined in time.
    pub(super) fn join_overdue(&self, now: Time) -> bool {
        self.member.is_none() && now >= self.join_by
    }

    /// When the link next needs the clock: its heartbeat, and its join timeout until it joins.
    pub(super) fn deadline(&self) -> Option<Time> {
        let join = self.member.is_none().then_some(self.join_by);
        earliest([Some(self.link.deadline()), join])
    }
}
