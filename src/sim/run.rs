//! The simulation's run loop: feeding inputs to the machines, carrying out their outputs over
//! the simulated links (delay, jitter, loss, duplication, partitions), dials and the virtual
//! clock.

use super::{skewed, Blueprint, Delivery, Logged, NodeId, Role, Sim};
use crate::protocol::RejectReason;
use crate::session::{DoorAuth, DoorQuery, DoorSecret, Input, JoinCredentials, Output, Time};
use std::cmp::Reverse;
use std::time::Duration;

impl Sim {
    pub(super) fn input(&mut self, n: NodeId, input: Input<'_>) {
        let now = self.local_now(n);
        if let Some(role) = self.nodes[n].role.as_mut() {
            role.machine().handle(now, input);
            self.drain(n);
        }
    }

    pub(super) fn schedule(&mut self, at: Time, d: Delivery) {
        self.order += 1;
        self.pending.insert(self.order, d);
        self.queue.push(Reverse((at, self.order)));
    }

    pub(super) fn partitioned(&self, a: NodeId, b: NodeId) -> bool {
        self.partitions.contains(&(a.min(b), a.max(b)))
    }

    pub(super) fn transit(&mut self) -> Duration {
        let jitter = self.net.jitter.as_micros() as f64 * self.rng.next_f64();
        self.net.delay + Duration::from_micros(jitter as u64)
    }

    /// Carries out everything node `n` asked for.
    pub(super) fn drain(&mut self, n: NodeId) {
        loop {
            let Some(out) = self.nodes[n]
                .role
                .as_mut()
                .and_then(|r| r.machine().poll_output())
            else {
                return;
            };
            match out {
                Output::Send(peer, data) => {
                    let Some(end) = self.links.get(&(n, peer)).copied() else {
                        continue; // link already gone: the message is lost with it
                    };
                    if self.closing.contains(&(n, peer)) {
                        continue; // sent after Close
                    }
                    if self.partitioned(n, end.remote) || self.rng.next_f64() < self.net.loss {
                        continue;
                    }
                    let copies = if self.rng.next_f64() < self.net.duplicate {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        self.sent += 1;
                        let at = self.now + self.transit();
                        let d = Delivery::Message {
                            to: end.remote,
                            peer: end.remote_peer,
                            data: data.clone(),
                        };
                        self.schedule(at, d);
                    }
                }
                Output::Close(peer) => {
                    // Flush first: the close lands after the slowest message sent before it.
                    if self.closing.insert((n, peer)) {
                        let at = self.now + self.net.delay + self.net.jitter;
                        self.schedule(at, Delivery::Closed { node: n, peer });
                    }
                }
                Output::Dial(creds) => self.dial(n, &creds),
                Output::Persist(rec) => self.nodes[n].record = Some(rec),
                Output::Event(event) => self.events.push(Logged {
                    at: self.now,
                    node: n,
                    event,
                }),
                // The simulated network moves no files.
                Output::Files(_) => {}
            }
        }
    }

    /// A dial from `n`. A solo device that remembers its pair answers through its door
    /// (PROTOCOL.md §6.1): the dialer must prove the pair secret as the member secret of its own
    /// id. Any other target is reached directly, as if the codes or the join had been exchanged.
    pub(super) fn dial(&mut self, n: NodeId, creds: &JoinCredentials) {
        let at = self.now + self.net.connect_time;
        let Some(t) = self.nodes[n].dial_target else {
            return self.schedule(at, Delivery::DialFailed { to: n });
        };
        if !self.is_up(t) || self.partitioned(n, t) {
            return self.schedule(at, Delivery::DialFailed { to: n });
        }
        let mut admitted = None;
        if self.nodes[t]
            .role
            .as_ref()
            .is_some_and(Role::remembers_pair)
        {
            let device_id = match &self.nodes[n].blueprint {
                Blueprint::Solo(cfg) => cfg.device_id.clone(),
                _ => String::new(),
            };
            let query = DoorQuery {
                auth: DoorAuth::Member,
                session_code: None,
                device_id: device_id.clone(),
            };
            let now = self.local_now(t);
            let reply = match self.nodes[t].role.as_mut() {
                Some(role) => role.machine().door(now, &query),
                None => return,
            };
            let proven = match (&reply.secret, &creds.member_secret) {
                (Some(DoorSecret::Member(want)), Some(got)) => want == got,
                _ => false,
            };
            if !proven || reply.verdict.is_err() {
                return self.schedule(at, Delivery::DialRefused { to: n });
            }
            admitted = Some(device_id);
        }
        let (pn, pt) = self.new_link(n, t);
        let up = |to, peer, dialer, admitted| Delivery::LinkUp {
            to,
            peer,
            dialer,
            admitted,
        };
        self.schedule(at, up(t, pt, false, admitted));
        self.schedule(at, up(n, pn, true, None));
    }

    pub(super) fn deliver(&mut self, d: Delivery) {
        match d {
            Delivery::Message { to, peer, data } => {
                if self.links.contains_key(&(to, peer)) {
                    self.input(to, Input::Received(peer, data.as_bytes()));
                }
            }
            Delivery::LinkUp {
                to,
                peer,
                dialer,
                admitted,
            } => {
                if !self.links.contains_key(&(to, peer)) {
                    if dialer {
                        // Cut while connecting: a real driver reports the dial as failed.
                        self.input(to, Input::DialFailed);
                    }
                } else if let Some(id) = admitted {
                    self.input(to, Input::AdmittedLinkUp(peer, &id));
                } else {
                    self.input(to, Input::LinkUp(peer));
                }
            }
            Delivery::Closed { node, peer } => {
                self.closing.remove(&(node, peer));
                if let Some(end) = self.links.remove(&(node, peer)) {
                    self.links.remove(&(end.remote, end.remote_peer));
                    if !self.partitioned(node, end.remote) {
                        self.input(end.remote, Input::LinkDown(end.remote_peer));
                    }
                }
            }
            Delivery::DialFailed { to } => self.input(to, Input::DialFailed),
            Delivery::DialRefused { to } => {
                self.input(to, Input::DialRefused(RejectReason::InvalidToken))
            }
        }
    }

    /// When the next thing happens.
    pub(super) fn next_time(&self) -> Option<Time> {
        let timers = self
            .nodes
            .iter()
            .filter_map(|n| Some(skewed(n.role.as_ref()?.timeout()?, -n.skew_us)));
        let wire = self.queue.peek().map(|Reverse((t, _))| *t);
        timers.chain(wire).min()
    }

    /// Runs until virtual time `until`, jumping from event to event.
    pub fn run_until(&mut self, until: Time) {
        let mut steps_at_same_time = 0u32;
        while let Some(next) = self.next_time() {
            if next > until {
                break;
            }
            let next = next.max(self.now);
            steps_at_same_time = if next == self.now {
                steps_at_same_time + 1
            } else {
                0
            };
            assert!(steps_at_same_time < 100_000, "livelock at {:?}", self.now);
            self.now = next;
            while let Some(&Reverse((t, order))) = self.queue.peek() {
                if t > self.now {
                    break;
                }
                self.queue.pop();
                if let Some(d) = self.pending.remove(&order) {
                    self.deliver(d);
                }
            }
            for n in 0..self.nodes.len() {
                let due = self.nodes[n].role.as_ref().and_then(Role::timeout);
                if due.is_some_and(|t| t <= self.local_now(n)) {
                    self.input(n, Input::Timeout);
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for a span of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }
}
