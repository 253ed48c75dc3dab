//! Synced keys: app-defined named values (`view.zoom`, `mode.tool`, …), merged by
//! last-write-wins on a stamp `(ts, sender_id)` as solo pages are. Who may write a key (anyone,
//! or only the host and editor) is the master's check; this store only orders writes and bounds
//! their number.

use super::Time;
use crate::protocol::{KeyEntry, Stamp, MAX_KEYS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The group that carries the shared playback state (applied or not like key groups).
pub const PLAYBACK_GROUP: &str = "playback";
/// Groups a follower applies unless told otherwise.
pub const DEFAULT_SYNC_GROUPS: [&str; 2] = [PLAYBACK_GROUP, "view"];

/// What [`KeyStore::merge`] did with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Newer than what was held: stored.
    Applied,
    /// Not newer: ignored (a duplicate, or overtaken).
    Stale,
    /// A new key when [`MAX_KEYS`] are held: ignored.
    Full,
}

/// Every synced key of a session, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyStore {
    entries: BTreeMap<String, KeyEntry>,
}

impl KeyStore {
    /// The entry of a key.
    pub fn get(&self, key: &str) -> Option<&KeyEntry> {
        self.entries.get(key)
    }

    /// Every entry, by name.
    pub fn iter(&self) -> impl Iterator<Item = &KeyEntry> {
        self.entries.values()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stores `entry` if its stamp is greater than the held one's.
    pub fn merge(&mut self, entry: KeyEntry) -> Merge {
        match self.entries.get(&entry.key) {
            Some(held) if entry.stamp <= held.stamp => Merge::Stale,
            None if self.entries.len() >= MAX_KEYS => Merge::Full,
            _ => {
                self.entries.insert(entry.key.clone(), entry);
                Merge::Applied
            }
        }
    }

    /// A stamp for a write by `me` at `now`: never below the newest stamp held plus one, so a
    /// write made after seeing another's wins even on a clock that lags (a hybrid clock).
    pub fn stamp(&self, now: Time, me: &str) -> Stamp {
        let newest = self.entries.values().map(|e| e.stamp.ts).max().unwrap_or(0);
        Stamp {
            ts: now.as_millis().max(newest.saturating_add(1)),
            sender_id: me.to_string(),
        }
    }

    /// Every entry, for a snapshot.
    pub fn to_vec(&self) -> Vec<KeyEntry> {
        self.entries.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::KeyPolicy;
    use serde_json::json;

    fn entry(key: &str, value: serde_json::Value, ts: u64, who: &str) -> KeyEntry {
        KeyEntry {
            key: key.into(),
            value,
            policy: KeyPolicy::Lww,
            stamp: Stamp {
                ts,
                sender_id: who.into(),
            },
        }
    }

    #[test]
    fn the_latest_stamp_wins_and_the_higher_device_breaks_ties() {
        let mut s = KeyStore::default();
        assert_eq!(
            s.merge(entry("view.zoom", json!(2), 10, "a")),
            Merge::Applied
        );
        assert_eq!(s.merge(entry("view.zoom", json!(3), 9, "z")), Merge::Stale);
        assert_eq!(s.merge(entry("view.zoom", json!(4), 10, "a")), Merge::Stale);
        assert_eq!(
            s.merge(entry("view.zoom", json!(5), 10, "b")),
            Merge::Applied
        );
        assert_eq!(s.get("view.zoom").unwrap().value, json!(5));
    }

    #[test]
    fn new_keys_beyond_the_cap_are_ignored_but_held_ones_still_change() {
        let mut s = KeyStore::default();
        for i in 0..MAX_KEYS {
            assert_eq!(
                s.merge(entry(&format!("g.k{i}"), json!(i), 1, "a")),
                Merge::Applied
            );
        }
        assert_eq!(s.merge(entry("g.extra", json!(0), 2, "a")), Merge::Full);
        assert_eq!(s.merge(entry("g.k0", json!(9), 2, "a")), Merge::Applied);
        assert_eq!(s.len(), MAX_KEYS);
    }

    #[test]
    fn stamps_run_ahead_of_a_lagging_clock() {
        let mut s = KeyStore::default();
        s.merge(entry("view.zoom", json!(2), 5_000, "b"));
        let st = s.stamp(Time::from_millis(1_000), "a");
        assert_eq!(st.ts, 5_001);
        assert!(s.merge(entry("view.zoom", json!(3), st.ts, "a")) == Merge::Applied);
    }
}
