//! Who is in the session, as the master last announced it (PRESENCE and the snapshot's list,
//! PROTOCOL.md §5).

use crate::protocol::{Participant, Presence, PresenceStatus};
use crate::session::{Event, Outbox};
use std::collections::BTreeMap;

/// The participants, master included, and how many are connected.
#[derive(Debug, Default)]
pub(super) struct Roster {
    pub participants: BTreeMap<String, Participant>,
    pub count: u32,
}

impl Roster {
    /// Takes a snapshot's whole participant list (ignored when empty).
    pub fn apply_list(&mut self, participants: Vec<Participant>, out: &mut Outbox) {
        if participants.is_empty() {
            return;
        }
        let count = participants
            .iter()
            .filter(|p| p.status == PresenceStatus::Connected)
            .count() as u32;
        self.apply(
            Presence {
                count,
                complete: true,
                participants,
            },
            out,
        );
    }

    /// Applies a PRESENCE, announcing who joined or left and the new count.
    pub fn apply(&mut self, p: Presence, out: &mut Outbox) {
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
                    out.event(Event::ParticipantLeft(old));
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
                (false, true) => out.event(Event::ParticipantJoined(entry.clone())),
                (true, false) => out.event(Event::ParticipantLeft(entry.clone())),
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
            out.event(Event::Presence { count: p.count });
        }
    }

    /// Out of the session: nobody.
    pub fn clear(&mut self) {
        self.participants.clear();
        self.count = 0;
    }
}
