//! The shared clock state (PROTOCOL.md §12): playback/timer anchored to the master's clock, the
//! control mode and editor (§12.4), and the synced keys (§12.5). Participants only *ask* for
//! changes; these rules decide who may.

use crate::protocol::{
    Control, ControlMode, KeyEntry, KeyPolicy, Playback, PlaybackOp, Validate,
    MAX_SCHEDULE_AHEAD_MS,
};
use crate::session::keys::{KeyStore, Merge};
use crate::session::Origin;
use crate::time::Time;

/// Playback, control and keys, as the master holds them.
#[derive(Debug)]
pub(super) struct Shared {
    /// Shared playback/timer state, on the master's clock.
    pub(super) playback: Option<Box<Playback>>,
    /// Control mode and editor.
    pub(super) control: Control,
    /// Synced keys.
    pub(super) keys: KeyStore,
}

/// Why a key write was not applied, as an error event's code and message.
pub(super) type KeyError = (&'static str, String);

impl Shared {
    /// Whether a participant may ask for this playback change.
    pub(super) fn may_control(&self, sender: &str, op: &PlaybackOp) -> bool {
        let c = &self.control;
        c.editor.as_deref() == Some(sender)
            || (c.mode == ControlMode::SharedPause && op.is_pause_or_resume())
    }

    /// Applies a playback change; the new state.
    pub(super) fn apply_playback(
        &mut self,
        now: Time,
        op: &PlaybackOp,
        origin: Origin,
    ) -> Playback {
        let mut p = self.playback.take().unwrap_or_default();
        p.apply(now, op);
        tracing::debug!(?op, ?origin, revision = p.revision, "playback");
        let state = (*p).clone();
        self.playback = Some(p);
        state
    }

    /// Sets the control mode and editor; the new control, unless nothing changed.
    pub(super) fn set_control(
        &mut self,
        mode: ControlMode,
        editor: Option<String>,
    ) -> Option<Control> {
        if self.control.mode == mode && self.control.editor == editor {
            return None;
        }
        let control = Control {
            mode,
            editor,
            revision: self.control.revision + 1,
        };
        self.control = control.clone();
        Some(control)
    }

    /// A KEY_SET from a participant: stamped as its own, its clock bounded, and obeyed only for
    /// last-write-wins keys unless it is the editor. `Err` holds what a refused write gets back
    /// (the held value, if any), so the writer's optimistic change is undone.
    pub(super) fn key_from_peer(
        &self,
        now: Time,
        sender: &str,
        mut entry: KeyEntry,
    ) -> Result<KeyEntry, Option<KeyEntry>> {
        entry.stamp.sender_id = sender.to_string();
        entry.stamp.ts = entry
            .stamp
            .ts
            .min(now.as_millis().saturating_add(MAX_SCHEDULE_AHEAD_MS));
        let held = self.keys.get(&entry.key);
        let host_key =
            entry.policy == KeyPolicy::Host || held.is_some_and(|h| h.policy == KeyPolicy::Host);
        let editor = self.control.editor.as_deref() == Some(sender);
        if host_key && !editor {
            tracing::debug!(key = entry.key, sender, "host-authority key refused");
            return Err(held.cloned());
        }
        Ok(entry)
    }

    /// Merges a key write: `Ok(true)` when it applied, `Ok(false)` when a newer write is held.
    pub(super) fn set_key(&mut self, entry: &mut KeyEntry) -> Result<bool, KeyError> {
        if let Err(e) = entry.validate() {
            return Err(("invalid-key", e.to_string()));
        }
        match self.keys.merge(entry.clone()) {
            Merge::Applied => Ok(true),
            Merge::Stale => Ok(false),
            Merge::Full => Err((
                "too-many-keys",
                "the session holds the most keys it can".to_string(),
            )),
        }
    }
}
