//! The synced state beyond pages (PROTOCOL.md §12.2, §12.4, §12.5): the master's playback
//! moved onto this clock, the control mode and editor, the synced keys, and which groups of them
//! this device applies.
//!
//! The local playback model is re-announced only on a discrete change or when the prediction
//! drifts beyond the tolerance; keys and playback reach the app only for the groups this device
//! applies (`groups`, persisted).

use crate::protocol::{
    check_id, Control, ControlMode, KeyEntry, KeyPolicy, Playback, PlaybackOp, Validate,
};
use crate::session::keys::{KeyStore, Merge, PLAYBACK_GROUP};
use crate::session::{Event, Origin, Outbox};
use crate::time::Time;
use std::collections::BTreeSet;
use std::time::Duration;

/// Playback, control, keys and the groups applied.
#[derive(Debug)]
pub(super) struct Synced {
    /// The master's playback state, on the master's clock.
    pub master_playback: Option<Playback>,
    /// The same moved onto this clock, as last announced to the app.
    pub playback: Option<Playback>,
    pub control: Control,
    pub keys: KeyStore,
    /// The groups of synced state this device applies.
    pub groups: BTreeSet<String>,
    tolerance: Duration,
}

impl Synced {
    /// Nothing known yet; applies `groups`, corrects playback drift beyond `tolerance`.
    pub fn new(groups: BTreeSet<String>, tolerance: Duration) -> Synced {
        Synced {
            master_playback: None,
            playback: None,
            control: Control::default(),
            keys: KeyStore::default(),
            groups,
            tolerance,
        }
    }

    /// Whether this device applies a group.
    pub fn applies(&self, group: &str) -> bool {
        self.groups.contains(group)
    }

    /// Applies the master's playback state if newer (or, from a JOIN_ACCEPT, whatever it is).
    /// `offset_us` is the master's clock minus this one.
    pub fn apply_playback(
        &mut self,
        now: Time,
        offset_us: i64,
        p: Playback,
        authoritative: bool,
        out: &mut Outbox,
    ) {
        let known = self.master_playback.as_ref().map(|m| m.revision);
        if !authoritative && known.is_some_and(|r| p.revision <= r) {
            // Same state again (a snapshot): only the drift check.
            self.resync_playback(now, offset_us, out);
            return;
        }
        self.master_playback = Some(p);
        self.resync_playback(now, offset_us, out);
    }

    /// Moves the master's playback onto this clock and tells the app when it is a new state or
    /// the local model has drifted beyond the tolerance.
    pub fn resync_playback(&mut self, now: Time, offset_us: i64, out: &mut Outbox) {
        if !self.applies(PLAYBACK_GROUP) {
            return;
        }
        let Some(master) = &self.master_playback else {
            return;
        };
        let target = master.rebased(now, offset_us);
        let tolerance = self.tolerance.as_micros() as u64;
        let stale = match &self.playback {
            None => true,
            Some(local) => {
                local.revision != target.revision
                    || local.distance(local.position_at(now), target.position_us) > tolerance
            }
        };
        if stale {
            self.playback = Some(target.clone());
            out.event(Event::Playback(target));
        }
    }

    /// Takes the master's control mode and editor if newer (or, authoritative, whatever it is).
    pub fn apply_control(&mut self, control: Control, authoritative: bool, out: &mut Outbox) {
        if !authoritative && control.revision <= self.control.revision {
            return;
        }
        if control != self.control {
            self.control = control.clone();
            out.event(Event::Control(control));
        }
    }

    /// Stores a key and tells the app if it applies the key's group.
    pub fn apply_key(&mut self, entry: KeyEntry, origin: Origin, out: &mut Outbox) {
        if self.keys.merge(entry.clone()) == Merge::Applied && self.applies(entry.group()) {
            out.event(Event::Key {
                key: entry.key,
                value: entry.value,
                origin,
            });
        }
    }

    fn is_editor(&self, me: &str) -> bool {
        self.control.editor.as_deref() == Some(me)
    }

    /// The PLAYBACK_REQUEST to send for `op` from `me`, if it may ask (the editor; anyone's
    /// pause or resume in `shared-pause` mode); otherwise the refusal is reported.
    pub fn playback_request(
        &self,
        me: &str,
        op: &PlaybackOp,
        out: &mut Outbox,
    ) -> Option<PlaybackOp> {
        let shared = self.control.mode == ControlMode::SharedPause && op.is_pause_or_resume();
        if !(self.is_editor(me) || shared) {
            out.error(
                "forbidden-not-host",
                "only the host or the editor may do that",
            );
            return None;
        }
        let mut op = op.clone();
        let _ = op.validate(); // clamps only
        Some(op)
    }

    /// A local write by `me`: applied here at once (last-write-wins) and returned for the
    /// master, which relays it or, for a key this device may not write, answers with the held
    /// value. `None` (reported) if it is invalid or forbidden.
    pub fn write_key(
        &mut self,
        now: Time,
        me: &str,
        (key, value, policy): (&str, &serde_json::Value, KeyPolicy),
        out: &mut Outbox,
    ) -> Option<KeyEntry> {
        let mut entry = KeyEntry {
            key: key.to_string(),
            value: value.clone(),
            policy,
            stamp: self.keys.stamp(now, me),
        };
        if let Err(e) = entry.validate() {
            out.error("invalid-key", e.to_string());
            return None;
        }
        let held_host = self
            .keys
            .get(key)
            .is_some_and(|h| h.policy == KeyPolicy::Host);
        if (policy == KeyPolicy::Host || held_host) && !self.is_editor(me) {
            out.error(
                "forbidden-not-host",
                "only the host or the editor may set this key",
            );
            return None;
        }
        self.apply_key(entry.clone(), Origin::Local, out);
        Some(entry)
    }

    /// Applies `group` or not (announced); `false` if it is not a group name (reported) or
    /// nothing changed. Then [`Synced::catch_up`] once the choice is persisted.
    pub fn set_group(&mut self, group: &str, apply: bool, out: &mut Outbox) -> bool {
        if check_id("group", group, false).is_err() || group.contains('.') {
            out.error("invalid-group", "not a group name");
            return false;
        }
        let changed = if apply {
            self.groups.insert(group.to_string())
        } else {
            self.groups.remove(group)
        };
        if !changed {
            return false;
        }
        out.event(Event::SyncGroups {
            groups: self.groups.iter().cloned().collect(),
        });
        true
    }

    /// After `group` was applied or dropped: a newly applied group's current values reach the
    /// app at once; a dropped playback group forgets the local model.
    pub fn catch_up(
        &mut self,
        now: Time,
        offset_us: i64,
        (group, apply): (&str, bool),
        out: &mut Outbox,
    ) {
        match (group == PLAYBACK_GROUP, apply) {
            (true, true) => self.resync_playback(now, offset_us, out),
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
                    out.event(Event::Key {
                        key: e.key,
                        value: e.value,
                        origin: Origin::Remote,
                    });
                }
            }
            (false, false) => {}
        }
    }

    /// Out of the session: nothing known of the master's state (the groups stay).
    pub fn leave(&mut self) {
        self.master_playback = None;
        self.playback = None;
        self.control = Control::default();
        self.keys = KeyStore::default();
    }
}
