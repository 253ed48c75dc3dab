//! A link's life at the master (PROTOCOL.md §6.2, §6.4): HELLO on link-up, the JOIN_REQUEST
//! that makes it a member's (checked by [`Admission`](super::admission::Admission)), and what
//! its loss does to the member.

use super::peer::Peer;
use super::{Master, MasterState};
use crate::protocol::{Hello, JoinAccept, JoinReject, JoinRequest, Message, Mode, RejectReason};
use crate::session::{Event, LinkState, Output, PeerId};
use crate::time::Time;

impl Master {
    /// A new link: HELLO, then its JOIN_REQUEST is awaited (PROTOCOL.md §6.2).
    pub(super) fn on_link_up(&mut self, now: Time, peer: PeerId, admitted: Option<&str>) {
        // Even after the end a link is heard out, so its JOIN_REQUEST gets `session_ended`
        // and the follower stops retrying.
        self.peers
            .insert(peer, Peer::open(now, admitted, &self.cfg));
        // Connected (and served files) only once admitted: see `on_join_request`.
        self.out.event(Event::Link {
            peer,
            state: LinkState::Connecting,
        });
        let hello = Message::Hello(Hello {
            mode: Mode::ChoirMaster,
            device_name: self.cfg.device_name.clone(),
            capabilities: vec![],
        });
        self.send(now, peer, hello);
    }

    /// Forgets a link; its member, if any, becomes disconnected.
    pub(super) fn on_link_down(&mut self, now: Time, peer: PeerId, reason: &str) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        let mut state = LinkState::Idle;
        if let Some(id) = p.member {
            if self.roster.disconnect(now, &id, peer) {
                state = LinkState::Reconnecting;
                if let Some(entry) = self.roster.entry(&id) {
                    self.out.event(Event::ParticipantLeft(entry));
                }
                self.roster.changed(now, &id);
            }
        }
        self.out.event(Event::Link { peer, state });
        self.update_link_state(reason);
    }

    /// Closes a link from this side, as a loss of it.
    pub(super) fn close(&mut self, now: Time, peer: PeerId, reason: &str) {
        self.out.push(Output::Close(peer));
        self.on_link_down(now, peer, reason);
    }

    /// A JOIN_REQUEST: admitted by the one rule, or refused and the link closed.
    pub(super) fn on_join_request(
        &mut self,
        now: Time,
        peer: PeerId,
        claimed: &str,
        req: JoinRequest,
    ) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        // A JOIN_REQUEST sent again (its answer was slow or lost) gets the same answer, no news.
        if p.member.as_deref() == Some(claimed) {
            let accept = self.accept_message(claimed);
            self.send(now, peer, accept);
            return;
        }
        // A link joins once, as the id the join endpoint admitted it as when it did.
        let bound = p.member.as_deref().or(p.admitted.as_deref());
        if bound.is_some_and(|id| id != claimed) {
            tracing::info!(peer, claimed, ?bound, "join request for another device id");
            self.reject(now, peer, RejectReason::DeviceIdTaken);
            return;
        }
        let ended = self.state == MasterState::SessionEnded;
        let connected = self.roster.connected();
        if let Err(reason) = self.admission.check(&req, claimed, ended, connected) {
            self.reject(now, peer, reason);
            return;
        }
        if !self.admission.holds(claimed) {
            // The member secret is persisted before the device hears it.
            let roster = &self.roster;
            self.admission
                .remember(now, claimed, |id| roster.present(id));
            self.persist();
        }
        // The same device on a newer link replaces its old link.
        let old_peer = self.roster.peer_of(claimed);
        if let Some(old) = old_peer.filter(|&old| old != peer) {
            self.out.push(Output::Close(old));
            self.peers.remove(&old);
        }
        let name = if req.device_name.is_empty() {
            self.peers
                .get(&peer)
                .map(|p| p.hello_name.clone())
                .unwrap_or_default()
        } else {
            req.device_name
        };
        self.roster.join(now, claimed, name, req.follow_mode, peer);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.member = Some(claimed.to_string());
        }
        let accept = self.accept_message(claimed);
        self.send(now, peer, accept);
        self.out.event(Event::Link {
            peer,
            state: LinkState::Connected,
        });
        if let Some(entry) = self.roster.entry(claimed) {
            self.out.event(Event::ParticipantJoined(entry));
        }
        self.roster.changed(now, claimed);
        self.update_link_state("participant joined");
    }

    pub(super) fn accept_message(&self, device_id: &str) -> Message {
        Message::JoinAccept(JoinAccept {
            member_secret: self.admission.secret_of(device_id),
            token: None,
            session_code: self.admission.code.as_str().into(),
            snapshot: self.snapshot(true),
        })
    }

    pub(super) fn reject(&mut self, now: Time, peer: PeerId, reason: RejectReason) {
        tracing::info!(peer, ?reason, "join rejected");
        self.send(now, peer, Message::JoinReject(JoinReject { reason }));
        self.close(now, peer, "join rejected");
    }
}
