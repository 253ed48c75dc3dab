//! The one link of a follower or solo device (PROTOCOL.md §6.4) and the machine skeleton both
//! roles share: which link is theirs, its health, the steps both take on it, and the routing of
//! each [`Input`] to what the role does about it.

use super::{Admit, HeartbeatConfig, LinkHealth, LinkState, Tick};
use crate::protocol::{DecodeError, Envelope, Message, Ping, Pong, RejectReason};
use crate::session::{Command, Event, Input, Outbox, Output, PeerId};
use crate::time::Time;
use std::time::Duration;

/// What the heartbeat of a role's one link asks of the role, the PING already sent and the
/// DEGRADED already announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Nothing more to do.
    Quiet,
    /// The link just became DEGRADED (announced): a role with its own degraded state enters it.
    Degraded,
    /// The link is dead: the role gives it up (closes it and treats it as down).
    Dead,
}

/// The one link of a role that has one peer at a time (follower, solo) and its health: which
/// link it is, and the steps both roles take on it. The master has a link per member and keeps a
/// [`LinkHealth`] in each.
#[derive(Debug, Default)]
pub(crate) struct OneLink(Option<(PeerId, LinkHealth)>);

impl OneLink {
    /// The open link's id.
    pub fn peer(&self) -> Option<PeerId> {
        self.0.as_ref().map(|(p, _)| *p)
    }

    /// Whether a link is open.
    pub fn is_open(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `peer` is the open link.
    pub fn is(&self, peer: PeerId) -> bool {
        self.peer() == Some(peer)
    }

    /// Takes `peer` as the link (one still open is closed, unannounced) and announces it
    /// CONNECTED.
    pub fn open(&mut self, now: Time, peer: PeerId, cfg: HeartbeatConfig, out: &mut Outbox) {
        if let Some((old, _)) = self.0.take() {
            out.push(Output::Close(old));
        }
        self.0 = Some((peer, LinkHealth::open(now, cfg)));
        out.event(Event::Link {
            peer,
            state: LinkState::Connected,
        });
    }

    /// Closes the link, if one is open, and announces it in `state`.
    pub fn close(&mut self, out: &mut Outbox, state: LinkState) {
        if let Some((peer, _)) = self.0.take() {
            out.push(Output::Close(peer));
            out.event(Event::Link { peer, state });
        }
    }

    /// The link went down by itself (nothing to close): forgotten and announced RECONNECTING.
    pub fn gone(&mut self, out: &mut Outbox) {
        if let Some((peer, _)) = self.0.take() {
            out.event(Event::Link {
                peer,
                state: LinkState::Reconnecting,
            });
        }
    }

    /// Smoothed round-trip time over the open link.
    pub fn rtt(&self) -> Option<Duration> {
        self.0.as_ref().and_then(|(_, h)| h.rtt)
    }

    /// When the heartbeat next has something to do.
    pub fn deadline(&self) -> Option<Time> {
        self.0.as_ref().map(|(_, h)| h.deadline())
    }

    /// A PING to send now outside the heartbeat (a clock probe), if a link is open.
    pub fn probe(&mut self, now: Time) -> Option<Ping> {
        self.0.as_mut().map(|(_, h)| h.probe(now))
    }

    /// Folds a PONG into the open link's round-trip estimate.
    pub fn on_pong(&mut self, now: Time, pong: &Pong) {
        if let Some((_, health)) = self.0.as_mut() {
            health.on_pong(now, pong);
        }
    }

    /// Decides whether an envelope received on the link is applied (see
    /// [`LinkHealth::admit_envelope`]) and announces the link CONNECTED again if it was
    /// DEGRADED. Returns the verdict and whether the link recovered.
    pub fn admit(&mut self, now: Time, env: &Envelope, out: &mut Outbox) -> (Admit, bool) {
        let Some((peer, health)) = self.0.as_mut() else {
            return (Admit::Stale, false);
        };
        let (admit, recovered) = health.admit_envelope(now, env);
        if recovered {
            out.event(Event::Link {
                peer: *peer,
                state: LinkState::Connected,
            });
        }
        (admit, recovered)
    }

    /// Sends `msg` in an envelope from `sender_id` in `session_id` stamped `ts` (ms), if a link
    /// is open (offline, nothing is sent: the snapshot on reconnect carries the state).
    pub fn send(
        &mut self,
        out: &mut Outbox,
        now: Time,
        (session_id, sender_id): (&str, &str),
        ts: u64,
        msg: Message,
    ) {
        let Some((peer, health)) = self.0.as_mut() else {
            return;
        };
        if let Some(text) = out.envelope(session_id, sender_id, ts, msg) {
            health.sent(now);
            out.push(Output::Send(*peer, text));
        }
    }

    /// Runs the heartbeat at `now`: sends the PING that is due (from `from`, stamped `now`),
    /// announces DEGRADED, and says what is left for the role to do.
    pub fn tick(&mut self, out: &mut Outbox, now: Time, from: (&str, &str)) -> Beat {
        let Some((peer, health)) = self.0.as_mut() else {
            return Beat::Quiet;
        };
        let peer = *peer;
        match health.tick(now) {
            Tick::Idle => Beat::Quiet,
            Tick::Ping(ping) => {
                self.send(out, now, from, now.as_millis(), Message::Ping(ping));
                Beat::Quiet
            }
            Tick::Degraded => {
                out.event(Event::Link {
                    peer,
                    state: LinkState::Degraded,
                });
                Beat::Degraded
            }
            Tick::Dead => Beat::Dead,
        }
    }
}

/// A role with one link at a time (follower, solo): what it does about each input. The skeleton
/// that routes inputs to these, [`OneLinkRole::route`], is written once; a role's
/// `Machine::handle` calls it. (The master has a link per member and routes by peer itself.)
pub(crate) trait OneLinkRole {
    /// The role's link and outbox.
    fn link_and_out(&mut self) -> (&mut OneLink, &mut Outbox);

    /// Whether `msg` carries its own order (a page revision, a stamp), so one overtaken on a
    /// reordering path is judged on that and not dropped for an older `seq`.
    fn carries_own_order(msg: &Message) -> bool;

    /// A link is open (`admitted`: as this device id, by the join endpoint, PROTOCOL.md §9.4).
    fn link_up(&mut self, now: Time, peer: PeerId, admitted: Option<&str>);

    /// The role's link went down by itself.
    fn link_down(&mut self, now: Time);

    /// A dial made no link (`refused`: the peer's join endpoint said why), no link being open.
    fn dial_failed(&mut self, now: Time, refused: Option<RejectReason>);

    /// The network came back: retry now instead of waiting.
    fn network_changed(&mut self, now: Time);

    /// The link was DEGRADED and is heard again (already announced CONNECTED).
    fn heard_again(&mut self) {}

    /// A message admitted on the link: fresh, or carrying its own order.
    fn message(&mut self, now: Time, env: Envelope);

    /// The application asks for something.
    fn command(&mut self, now: Time, cmd: &Command);

    /// `poll_timeout` has passed.
    fn timeout(&mut self, now: Time);

    /// Routes one input: link events of the role's own link, received messages decoded once
    /// (`TRANSFER_*` handed to the file service) and admitted by the link's health (PROTOCOL.md
    /// §3, §6.4), commands (after the cue a song change gives the file service) and timeouts.
    fn route(&mut self, now: Time, input: Input<'_>) {
        match input {
            Input::LinkUp(peer) => self.link_up(now, peer, None),
            Input::AdmittedLinkUp(peer, id) => self.link_up(now, peer, Some(id)),
            Input::LinkDown(peer) => {
                if self.link_and_out().0.is(peer) {
                    self.link_down(now);
                }
            }
            Input::DialFailed | Input::DialRefused(_) if self.link_and_out().0.is_open() => {}
            Input::DialFailed => self.dial_failed(now, None),
            Input::DialRefused(reason) => self.dial_failed(now, Some(reason)),
            Input::NetworkChanged => self.network_changed(now),
            Input::Received(peer, bytes) => {
                if let Some(decoded) = self.link_and_out().1.received(peer, bytes) {
                    self.receive(now, peer, decoded);
                }
            }
            Input::Command(cmd) => {
                self.link_and_out().1.stream_follows_the_song(cmd);
                self.command(now, cmd);
            }
            Input::Timeout => self.timeout(now),
        }
    }

    /// A message received on `peer`, as decoded: dropped unless on the role's link, decodable
    /// (an unknown type is ignored, PROTOCOL.md §3), within the rate and fresh or carrying its
    /// own order.
    fn receive(&mut self, now: Time, peer: PeerId, decoded: Result<Envelope, DecodeError>) {
        let (link, out) = self.link_and_out();
        if !link.is(peer) {
            return;
        }
        let env = match decoded {
            Ok(env) => env,
            Err(DecodeError::UnknownType(t)) => {
                tracing::debug!(t, "ignored unknown message type");
                return;
            }
            Err(e) => {
                tracing::debug!(%e, "ignored malformed message");
                return;
            }
        };
        let (admit, recovered) = link.admit(now, &env, out);
        if recovered {
            self.heard_again();
        }
        if admit == Admit::RateLimited
            || (admit == Admit::Stale && !Self::carries_own_order(&env.msg))
        {
            return;
        }
        self.message(now, env);
    }
}
