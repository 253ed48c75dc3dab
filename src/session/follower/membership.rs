//! Membership of a session (PROTOCOL.md §6.3, §9.2): the credentials a (re)join presents, the
//! session it joined, the reconnection schedule, and the record a restart rejoins from.

use super::config::default_sync_groups;
use crate::protocol::{FollowMode, JoinRequest, PageState, RejectReason};
use crate::session::{Backoff, BackoffConfig, Event, Outbox, Record, Rng};
use crate::time::Time;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

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

/// The session this follower is a member of, and how it gets (back) in.
#[derive(Debug)]
pub(super) struct Membership {
    rng: Rng,
    backoff: Backoff,
    creds: Option<JoinCredentials>,
    pub session_id: String,
    pub session_code: String,
    pub session_name: String,
    /// Device id of the master: the only peer whose files are accepted.
    pub host_id: String,
    /// Whether a join was ever accepted: the next one is a rejoin.
    pub joined_once: bool,
    retry_at: Option<Time>,
    join_resend_at: Option<Time>,
    join_retry: Duration,
}

impl Membership {
    /// No session yet. `seed` drives backoff jitter.
    pub fn new(backoff: BackoffConfig, join_retry: Duration, seed: u64) -> Membership {
        Membership {
            rng: Rng::new(seed),
            backoff: Backoff::new(backoff),
            creds: None,
            session_id: String::new(),
            session_code: String::new(),
            session_name: String::new(),
            host_id: String::new(),
            joined_once: false,
            retry_at: None,
            join_resend_at: None,
            join_retry,
        }
    }

    /// The stored membership after a restart, rejoining at `now`.
    pub fn restore(&mut self, now: Time, rec: &FollowerRecord) {
        self.creds = Some(JoinCredentials {
            token: rec.token.clone(),
            session_code: Some(rec.session_code.clone()).filter(|c| !c.is_empty()),
            password: None,
            member_secret: rec.member_secret.clone(),
        });
        self.session_id = rec.session_id.clone();
        self.session_code = rec.session_code.clone();
        self.session_name = rec.session_name.clone();
        self.joined_once = true;
        self.retry_at = Some(now);
    }

    /// The stored token, if any.
    pub fn token(&self) -> Option<&str> {
        self.creds.as_ref().and_then(|c| c.token.as_deref())
    }

    /// The member secret the master gave this device, if any.
    pub fn member_secret(&self) -> Option<&str> {
        self.creds.as_ref().and_then(|c| c.member_secret.as_deref())
    }

    /// Whether there is anything to (re)join with.
    pub fn has_credentials(&self) -> bool {
        self.creds.is_some()
    }

    /// A join the user asked for, with these credentials, from a fresh schedule.
    pub fn join(&mut self, creds: &JoinCredentials) {
        self.creds = Some(creds.clone());
        self.backoff.reset();
    }

    /// A fresh reconnection schedule (a manual retry).
    pub fn reset_backoff(&mut self) {
        self.backoff.reset();
    }

    /// A dial goes out now, with these credentials.
    pub fn dial(&mut self) -> JoinCredentials {
        self.retry_at = None;
        self.creds.clone().unwrap_or_default()
    }

    /// The JOIN_REQUEST to send (again).
    pub fn request(&self, device_name: &str, follow_mode: FollowMode) -> JoinRequest {
        let creds = self.creds.clone().unwrap_or_default();
        JoinRequest {
            token: creds.token,
            session_code: creds.session_code,
            password: creds.password,
            member_secret: creds.member_secret,
            device_name: device_name.to_string(),
            follow_mode,
        }
    }

    /// The JOIN_REQUEST just went out: it is sent again if unanswered.
    pub fn requested(&mut self, now: Time) {
        self.join_resend_at = Some(now + self.join_retry);
    }

    /// Whether the JOIN_REQUEST is due again at `now` (then it is rescheduled).
    pub fn resend_due(&mut self, now: Time) -> bool {
        if self.join_resend_at.is_none_or(|t| now < t) {
            return false;
        }
        self.join_resend_at = Some(now + self.join_retry);
        true
    }

    /// Whether a redial is due at `now`.
    pub fn retry_due(&self, now: Time) -> bool {
        self.retry_at.is_some_and(|t| now >= t)
    }

    /// The link is gone: no JOIN_REQUEST to resend on it.
    pub fn link_lost(&mut self) {
        self.join_resend_at = None;
    }

    /// A JOIN_ACCEPT from `host_id` for `session_id`: the session is this device's. Returns
    /// whether it was a rejoin.
    pub fn accepted(
        &mut self,
        session_id: String,
        host_id: String,
        session_code: String,
        member_secret: Option<String>,
        token: Option<String>,
    ) -> bool {
        self.host_id = host_id;
        let rejoin = self.joined_once;
        self.join_resend_at = None;
        self.session_id = session_id;
        self.session_code = session_code;
        // Rejoins prove the member secret; the token stays only if this device had it (a QR
        // join), or an older master sent it.
        let mut creds = self.creds.take().unwrap_or_default();
        creds.member_secret = member_secret.or(creds.member_secret);
        creds.token = creds.token.or(token);
        self.creds = Some(creds);
        self.backoff.reset();
        self.joined_once = true;
        rejoin
    }

    /// Schedules the next redial, or gives up (announced) when the schedule is spent.
    pub fn schedule_retry(&mut self, now: Time, out: &mut Outbox) {
        match self.backoff.next_delay(&mut self.rng) {
            Some(delay) => self.retry_at = Some(now + delay),
            None => {
                self.retry_at = None;
                out.event(Event::GaveUp {
                    attempts: self.backoff.attempts(),
                });
                out.event(Event::Error {
                    code: "network-unavailable".into(),
                    message: "cannot reach the master; retry manually".into(),
                });
            }
        }
    }

    /// Out of the session for good: nothing left to rejoin.
    pub fn leave(&mut self) {
        self.creds = None;
        self.session_id.clear();
        self.session_code.clear();
        self.retry_at = None;
        self.join_resend_at = None;
        self.joined_once = false;
    }

    /// What to persist: the membership with what the device shows, or `Cleared` when there is
    /// nothing a rejoin could prove.
    pub fn record(
        &self,
        follow_mode: FollowMode,
        view: &PageState,
        sync_groups: &BTreeSet<String>,
    ) -> Record {
        let creds = self
            .creds
            .as_ref()
            .filter(|c| c.token.is_some() || c.member_secret.is_some());
        match creds {
            Some(creds) if !self.session_id.is_empty() => Record::Follower(FollowerRecord {
                session_id: self.session_id.clone(),
                session_code: self.session_code.clone(),
                session_name: self.session_name.clone(),
                token: creds.token.clone(),
                member_secret: creds.member_secret.clone(),
                follow_mode,
                view: view.clone(),
                sync_groups: sync_groups.clone(),
            }),
            _ => Record::Cleared,
        }
    }

    /// When a redial or a JOIN_REQUEST resend is next due.
    pub fn deadlines(&self) -> [Option<Time>; 2] {
        [self.retry_at, self.join_resend_at]
    }
}

/// What the app is told when the master refuses a join for `reason`.
pub(super) fn reject_message(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::InvalidToken => "the session token is not valid",
        RejectReason::InvalidPassword => "wrong password",
        RejectReason::SessionEnded => "the session has ended",
        RejectReason::VersionMismatch => "the master speaks another protocol version",
        RejectReason::SessionFull => "the session is full",
        RejectReason::SessionNotFound => "no session with that code",
        RejectReason::DeviceIdTaken => "another member of the session has this device id",
        RejectReason::Unknown => "the master refused the join",
    }
}
