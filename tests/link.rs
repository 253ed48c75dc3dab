//! L1: the generic link state machine (PROTOCOL.md §6.4) as the application sees it through
//! `Event::Link`: IDLE → CONNECTING → CONNECTED → DEGRADED → RECONNECTING → CONNECTED, and
//! → ENDED when the session closes or the user leaves.

mod sim;

use lansync::session::{
    Command, Event, FollowerConfig, FollowerState, JoinCredentials, LinkState, MasterConfig,
    SoloConfig, Time,
};
use sim::{NodeId, Sim};
use std::time::Duration;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Link states a node reported, consecutive repeats folded (a redial reports RECONNECTING again).
fn link_states(sim: &Sim, n: NodeId) -> Vec<LinkState> {
    let mut out: Vec<LinkState> = Vec::new();
    for e in sim.events_of(n) {
        if let Event::Link { state, .. } = e {
            if out.last() != Some(state) {
                out.push(*state);
            }
        }
    }
    out
}

fn first_time(sim: &Sim, n: NodeId, pred: impl Fn(&Event) -> bool) -> Option<Time> {
    sim.events
        .iter()
        .find(|l| l.node == n && pred(&l.event))
        .map(|l| l.at)
}

fn joined_follower(seed: u64) -> (Sim, NodeId, NodeId) {
    let mut sim = Sim::new(seed);
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    let f = sim.add_follower(FollowerConfig::new("f0"), m);
    sim.command(
        f,
        Command::Join(JoinCredentials {
            token: Some(token),
            ..Default::default()
        }),
    );
    (sim, m, f)
}

#[test]
fn follower_link_walks_the_generic_states_from_connecting_to_ended() {
    use LinkState::*;
    let (mut sim, m, f) = joined_follower(1);
    sim.run_for(secs(1));
    // a short silence: DEGRADED, then CONNECTED again when the master is heard
    sim.partition(m, f);
    sim.run_for(secs(5));
    sim.heal();
    sim.run_for(secs(2));
    // a long silence: the link is given up and redialled
    sim.partition(m, f);
    sim.run_for(secs(15));
    sim.heal();
    sim.run_for(secs(40));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    sim.command(f, Command::Leave);
    assert_eq!(
        link_states(&sim, f),
        [
            Connecting,
            Connected,
            Degraded,
            Connected,
            Degraded,
            Reconnecting,
            Connected,
            Ended
        ]
    );
}

#[test]
fn dead_link_reports_reconnecting_at_once() {
    let (mut sim, m, f) = joined_follower(2);
    sim.run_for(secs(1));
    sim.partition(m, f);
    sim.run_for(secs(11));
    let lost = first_time(
        &sim,
        f,
        |e| matches!(e, Event::State { state, .. } if state == "FOLLOWER_DISCONNECTED_LOCAL"),
    )
    .expect("heartbeat declared the link dead");
    let reconnecting = first_time(&sim, f, |e| {
        matches!(
            e,
            Event::Link {
                state: LinkState::Reconnecting,
                ..
            }
        )
    });
    assert_eq!(
        reconnecting,
        Some(lost),
        "the indicator must not stay on DEGRADED"
    );
}

#[test]
fn session_end_reports_every_link_ended_on_both_sides() {
    let (mut sim, m, f) = joined_follower(3);
    sim.run_for(secs(1));
    sim.clear_events();
    sim.command(m, Command::End);
    sim.run_for(secs(1));
    assert_eq!(link_states(&sim, m), [LinkState::Ended]);
    assert_eq!(link_states(&sim, f), [LinkState::Ended]);
}

#[test]
fn master_reports_a_link_connected_only_once_its_follower_is_admitted() {
    let (mut sim, m, _f) = joined_follower(5);
    sim.run_for(secs(1));
    assert_eq!(
        link_states(&sim, m),
        [LinkState::Connecting, LinkState::Connected]
    );
    // The Connected report comes with the admission (what the node serves files upon).
    let connected = first_time(&sim, m, |e| {
        matches!(
            e,
            Event::Link {
                state: LinkState::Connected,
                ..
            }
        )
    });
    let joined = first_time(&sim, m, |e| matches!(e, Event::ParticipantJoined(_)));
    assert_eq!(connected, joined);
}

#[test]
fn master_reports_a_link_that_never_joined_as_idle_when_closed() {
    let mut cfg = MasterConfig::new("master");
    cfg.join_timeout = secs(3);
    let mut sim = Sim::new(4);
    let m = sim.add_master(cfg);
    let (stranger, _) = sim.add_solo_pair(SoloConfig::new("stranger"), SoloConfig::new("other"));
    sim.connect(m, stranger);
    sim.run_for(secs(4));
    assert_eq!(
        link_states(&sim, m),
        [LinkState::Connecting, LinkState::Idle]
    );
}

#[test]
fn solo_link_degrades_reconnects_and_connects_again() {
    use LinkState::*;
    let mut sim = Sim::new(5);
    let (a, b) = sim.add_solo_pair(SoloConfig::new("tab-a"), SoloConfig::new("tab-b"));
    sim.connect(a, b);
    sim.run_for(secs(1));
    sim.partition(a, b);
    sim.run_for(secs(11));
    sim.heal();
    sim.run_for(secs(40));
    for n in [a, b] {
        assert_eq!(
            link_states(&sim, n),
            [Connected, Degraded, Reconnecting, Connected],
            "node {n}"
        );
    }
}
