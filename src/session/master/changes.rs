//! Changes of the session's state and how they go out: the concern that owns the state applies
//! the change, then the driver persists, tells the app and broadcasts (PROTOCOL.md §6.2, §12).
//! Also the snapshots and the batched PRESENCE.

use super::{Master, MasterState};
use crate::protocol::{
    ChoirSnapshot, ControlMode, KeyEntry, Message, PageState, PlaybackOp, Presence, SessionEnd,
    Snapshot, StreamClear,
};
use crate::session::{Event, LinkState, Origin, Output, PeerId};
use crate::time::Time;

impl Master {
    /// The session's state for a JOIN_ACCEPT (`with_participants`) or a periodic snapshot.
    pub(super) fn snapshot(&self, with_participants: bool) -> ChoirSnapshot {
        ChoirSnapshot {
            session_name: self.session_name.clone(),
            page: self.pages.page.clone(),
            stream: self.pages.stream.clone(),
            files: self.pages.files.clone(),
            playback: self.shared.playback.clone(),
            control: self.shared.control.clone(),
            keys: self.shared.keys.to_vec(),
            participants: if with_participants {
                self.participants()
            } else {
                Vec::new()
            },
        }
    }

    /// A STATE_SNAPSHOT without participants (PROTOCOL.md §6.2).
    pub(super) fn state_snapshot(&self) -> Message {
        Message::StateSnapshot(Snapshot::Choir(self.snapshot(false)))
    }

    /// Sends the batched presence changes as one PRESENCE (PROTOCOL.md §6.2).
    pub(super) fn flush_presence(&mut self, now: Time) {
        let participants = self.roster.flush();
        let count = self.count();
        self.out.event(Event::Presence { count });
        self.broadcast(
            now,
            Message::Presence(Presence {
                count,
                complete: false,
                participants,
            }),
        );
    }

    pub(super) fn set_page(&mut self, now: Time, page: u32, at: Option<u64>) {
        self.pages.set_page(now, page, at);
        self.announce_page(now, Message::SetPage);
    }

    pub(super) fn set_song(&mut self, now: Time, song_id: &str, at: Option<u64>) {
        self.pages.set_song(now, song_id, at);
        self.announce_page(now, Message::SetSong);
    }

    fn announce_page(&mut self, now: Time, wrap: fn(PageState) -> Message) {
        let page = self.pages.announce();
        // A timed turn shows here at `at`, as on every follower.
        let shown = (!self.pages.waiting()).then(|| Event::page(&page, Origin::Local));
        self.publish(now, shown, wrap(page));
    }

    /// Shows a timed turn whose time has come.
    pub(super) fn turn_due_page(&mut self) {
        self.pages.turned();
        self.persist();
        self.out.event(Event::page(&self.pages.page, Origin::Local));
    }

    pub(super) fn apply_playback(&mut self, now: Time, op: &PlaybackOp, origin: Origin) {
        let state = self.shared.apply_playback(now, op, origin);
        self.publish(
            now,
            Some(Event::Playback(state.clone())),
            Message::Playback(state),
        );
    }

    pub(super) fn set_control(&mut self, now: Time, mode: ControlMode, editor: Option<String>) {
        if let Some(control) = self.shared.set_control(mode, editor) {
            self.publish(
                now,
                Some(Event::Control(control.clone())),
                Message::Control(control),
            );
        }
    }

    /// A KEY_SET from a participant, by the rules of [`Shared::key_from_peer`]: a refused write
    /// gets the held value back.
    pub(super) fn key_from_peer(&mut self, now: Time, peer: PeerId, sender: &str, entry: KeyEntry) {
        match self.shared.key_from_peer(now, sender, entry) {
            Ok(entry) => self.set_key(now, entry, Origin::Remote),
            Err(Some(held)) => self.send(now, peer, Message::KeySet(held)),
            Err(None) => {}
        }
    }

    pub(super) fn set_key(&mut self, now: Time, mut entry: KeyEntry, origin: Origin) {
        match self.shared.set_key(&mut entry) {
            Err((code, message)) => self.out.error(code, message),
            Ok(false) => {}
            Ok(true) => {
                let event = Event::Key {
                    key: entry.key.clone(),
                    value: entry.value.clone(),
                    origin,
                };
                self.publish(now, Some(event), Message::KeySet(entry));
            }
        }
    }

    pub(super) fn clear_stream(&mut self, now: Time) {
        if let Some(s) = self.pages.clear_stream() {
            let clear = StreamClear {
                stream_id: s.stream_id,
            };
            self.publish(now, None, Message::StreamClear(clear));
        }
    }

    pub(super) fn end(&mut self, now: Time) {
        self.broadcast(now, Message::SessionEnd(SessionEnd::default()));
        self.ended = true;
        self.pages.clear_stream();
        self.persist();
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            self.out.push(Output::Close(peer));
            self.out.event(Event::Link {
                peer,
                state: LinkState::Ended,
            });
        }
        self.peers.clear();
        self.roster.clear();
        self.enter(MasterState::SessionEnded, "ended by the master");
        self.out.event(Event::SessionEnded);
    }
}
