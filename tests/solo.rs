//! Solo scenarios (PROTOCOL.md §6.1): two tablets, either may turn, they mirror
//! each other, and after a split the latest change wins on both. Each test reads as a script.

mod sim;

use lansync::protocol::{Layout, Parity};
use lansync::session::{
    BackoffConfig, Command, Event, Input, LinkState, Machine, Origin, Output, Solo, SoloConfig,
    SoloState, Time, PARTNER_LEFT,
};
use sim::{NodeId, Sim, EPOCH_MS};
use std::time::Duration;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn page(p: u32) -> Command {
    Command::SetPage { page: p }
}

/// Two tablets, `tab-a` (dials after a loss) and `tab-b` (the higher device id), not yet paired.
fn tablets(seed: u64) -> (Sim, NodeId, NodeId) {
    tablets_with(seed, BackoffConfig::default())
}

fn tablets_with(seed: u64, backoff: BackoffConfig) -> (Sim, NodeId, NodeId) {
    let mut sim = Sim::new(seed);
    let cfg = |id: &str| {
        let mut c = SoloConfig::new(id);
        c.pair_id = "pair-1".into();
        c.backoff = backoff;
        c
    };
    let (a, b) = sim.add_solo_pair(cfg("tab-a"), cfg("tab-b"));
    (sim, a, b)
}

/// Two paired tablets.
fn pair(seed: u64) -> (Sim, NodeId, NodeId) {
    let (mut sim, a, b) = tablets(seed);
    sim.connect(a, b);
    sim.run_for(secs(1));
    (sim, a, b)
}

fn states(sim: &Sim, n: NodeId) -> Vec<String> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::State { state, .. } => Some(state.name().to_string()),
            _ => None,
        })
        .collect()
}

fn shown(sim: &Sim, n: NodeId) -> Vec<(u32, Origin)> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::Page { page, origin, .. } => Some((*page, *origin)),
            _ => None,
        })
        .collect()
}

fn at(sim: &Sim, n: NodeId) -> u32 {
    sim.solo(n).page().page_index
}

fn both(sim: &Sim, a: NodeId, b: NodeId) -> (SoloState, SoloState) {
    (sim.solo(a).state(), sim.solo(b).state())
}

// ---------------------------------------------------------------------------------------------
// Pairing and mirroring (PROTOCOL.md §6.1)
// ---------------------------------------------------------------------------------------------

#[test]
fn unpaired_tablets_are_local_only_and_pairing_makes_them_paired_connected() {
    let (mut sim, a, b) = tablets(1);
    assert_eq!(
        both(&sim, a, b),
        (SoloState::LocalOnly, SoloState::LocalOnly)
    );
    // alone, a tablet still turns its own pages
    sim.command(a, page(2));
    assert_eq!(at(&sim, a), 2);
    sim.connect(a, b);
    assert_eq!(
        both(&sim, a, b),
        (SoloState::PairedConnected, SoloState::PairedConnected)
    );
    sim.run_for(secs(1));
    for n in [a, b] {
        assert_eq!(states(&sim, n), ["SOLO_PAIRED_CONNECTED"]);
    }
    // the initial snapshot brought b to a's page
    assert_eq!(at(&sim, b), 2);
}

#[test]
fn either_tablet_turns_pages_and_the_other_mirrors_it() {
    let (mut sim, a, b) = pair(2);
    sim.clear_events();
    sim.command(a, page(3));
    sim.run_for(ms(50));
    assert_eq!((at(&sim, a), at(&sim, b)), (3, 3));
    sim.command(b, page(7));
    sim.run_for(ms(50));
    assert_eq!((at(&sim, a), at(&sim, b)), (7, 7));
    sim.command(
        b,
        Command::SetSong {
            song_id: "sonata-2".into(),
        },
    );
    sim.run_for(ms(50));
    assert_eq!(sim.solo(a).page().song_id.as_deref(), Some("sonata-2"));
    assert_eq!(at(&sim, a), 0);
    assert_eq!(
        shown(&sim, a),
        [(3, Origin::Local), (7, Origin::Remote), (0, Origin::Remote)]
    );
    assert_eq!(
        shown(&sim, b),
        [(3, Origin::Remote), (7, Origin::Local), (0, Origin::Local)]
    );
}

#[test]
fn layout_parity_command_propagates_to_the_partner() {
    let (mut sim, a, b) = pair(3);
    sim.clear_events();
    sim.command(
        a,
        Command::SetParity {
            leader: String::new(), // this device
            parity: Parity::Even,
        },
    );
    sim.run_for(ms(50));
    let want = Layout {
        leader_device_id: "tab-a".into(),
        parity: Parity::Even,
    };
    assert_eq!(sim.solo(a).layout(), want);
    assert_eq!(sim.solo(b).layout(), want);
    assert!(sim.events_of(b).any(|e| *e == Event::Layout(want.clone())));
    sim.command(
        b,
        Command::SetParity {
            leader: "tab-b".into(),
            parity: Parity::Odd,
        },
    );
    sim.run_for(ms(50));
    assert_eq!(sim.solo(a).layout().leader_device_id, "tab-b");
    assert_eq!(sim.solo(a).layout().parity, Parity::Odd);
}

#[test]
fn default_leader_is_the_higher_device_id_which_shows_page_n_and_its_partner_n_plus_1() {
    let (mut sim, a, b) = tablets(4);
    // unpaired, each tablet leads itself
    assert_eq!(sim.solo(a).layout().leader_device_id, "tab-a");
    sim.connect(a, b);
    sim.run_for(secs(1));
    for n in [a, b] {
        assert_eq!(sim.solo(n).layout().leader_device_id, "tab-b");
    }
    sim.command(a, page(4));
    sim.run_for(ms(50));
    assert_eq!(sim.solo(b).own_page(), 4);
    assert_eq!(sim.solo(a).own_page(), 5);
    // an explicit leader overrides the default
    sim.command(
        a,
        Command::SetParity {
            leader: String::new(),
            parity: Parity::Odd,
        },
    );
    sim.run_for(ms(50));
    assert_eq!(sim.solo(a).own_page(), 4);
    assert_eq!(sim.solo(b).own_page(), 5);
}

// ---------------------------------------------------------------------------------------------
// Link loss and reconnection (PROTOCOL.md §6.1, §6.4)
// ---------------------------------------------------------------------------------------------

#[test]
fn silence_degrades_then_the_dead_link_reconnects_and_pairs_again_after_heal() {
    let (mut sim, a, b) = pair(5);
    sim.clear_events();
    sim.partition(a, b);
    sim.run_for(secs(5)); // > degraded_after (3.5 s)
    assert_eq!(
        both(&sim, a, b),
        (SoloState::PairedDegraded, SoloState::PairedDegraded)
    );
    sim.run_for(secs(6)); // > dead_after (10 s)
    assert_eq!(
        both(&sim, a, b),
        (SoloState::PairedReconnecting, SoloState::PairedReconnecting)
    );
    sim.heal();
    sim.run_for(secs(40));
    assert_eq!(
        both(&sim, a, b),
        (SoloState::PairedConnected, SoloState::PairedConnected)
    );
    for n in [a, b] {
        assert_eq!(
            states(&sim, n),
            [
                "SOLO_PAIRED_DEGRADED",
                "SOLO_PAIRED_RECONNECTING",
                "SOLO_PAIRED_CONNECTED"
            ]
        );
    }
}

#[test]
fn degraded_pair_is_connected_again_when_the_partner_is_heard() {
    let (mut sim, a, b) = pair(6);
    sim.clear_events();
    sim.partition(a, b);
    sim.run_for(secs(5));
    assert_eq!(sim.solo(a).state(), SoloState::PairedDegraded);
    sim.heal();
    sim.run_for(secs(2));
    assert_eq!(
        both(&sim, a, b),
        (SoloState::PairedConnected, SoloState::PairedConnected)
    );
    assert_eq!(
        states(&sim, a),
        ["SOLO_PAIRED_DEGRADED", "SOLO_PAIRED_CONNECTED"]
    );
}

#[test]
fn cut_link_goes_reconnecting_and_the_redial_pairs_again() {
    let (mut sim, a, b) = pair(7);
    sim.clear_events();
    sim.cut(a, b);
    assert_eq!(
        both(&sim, a, b),
        (SoloState::PairedReconnecting, SoloState::PairedReconnecting)
    );
    sim.run_for(secs(5));
    assert_eq!(
        both(&sim, a, b),
        (SoloState::PairedConnected, SoloState::PairedConnected)
    );
    sim.command(b, page(9));
    sim.run_for(ms(50));
    assert_eq!(at(&sim, a), 9);
}

#[test]
fn reconnect_gives_up_after_max_attempts_to_local_only_until_retry() {
    let backoff = BackoffConfig {
        max_attempts: Some(3),
        ..Default::default()
    };
    let (mut sim, a, b) = tablets_with(8, backoff);
    sim.connect(a, b);
    sim.run_for(secs(1));
    sim.clear_events();
    sim.partition(a, b);
    sim.cut(a, b);
    sim.run_for(secs(60));
    assert_eq!(
        both(&sim, a, b),
        (SoloState::LocalOnly, SoloState::LocalOnly)
    );
    for n in [a, b] {
        assert_eq!(
            sim.events_of(n)
                .filter(|e| **e == Event::GaveUp { attempts: 3 })
                .count(),
            1
        );
        assert_eq!(states(&sim, n).last().unwrap(), "SOLO_LOCAL_ONLY");
    }
    // both stay usable on their own, and stay local even once the network is back
    sim.command(a, page(4));
    assert_eq!(at(&sim, a), 4);
    sim.heal();
    sim.run_for(secs(60));
    assert_eq!(
        both(&sim, a, b),
        (SoloState::LocalOnly, SoloState::LocalOnly)
    );
    // until someone asks
    sim.command(a, Command::Retry);
    assert_eq!(sim.solo(a).state(), SoloState::PairedReconnecting);
    sim.run_for(secs(1));
    assert_eq!(
        both(&sim, a, b),
        (SoloState::PairedConnected, SoloState::PairedConnected)
    );
    assert_eq!(at(&sim, b), 4);
}

/// Every state a tablet went through, with its reason.
fn reasons(sim: &Sim, n: NodeId) -> Vec<(String, String)> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::State { state, reason } => Some((state.name().to_string(), reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_tablet_that_leaves_says_goodbye_and_neither_waits_nor_redials() {
    // Either side may leave: the one that redials after a loss (tab-a) and the one that waits.
    for (seed, leaves_first) in [(30, true), (31, false)] {
        let (mut sim, a, b) = pair(seed);
        let (gone, partner) = if leaves_first { (a, b) } else { (b, a) };
        sim.clear_events();
        sim.command(gone, Command::Leave);
        // One network transit, not a heartbeat's 3.5 s of silence.
        sim.run_for(ms(100));
        assert_eq!(
            reasons(&sim, partner),
            [("SOLO_LOCAL_ONLY".to_string(), PARTNER_LEFT.to_string())]
        );
        assert_eq!(
            reasons(&sim, gone),
            [(
                "SOLO_LOCAL_ONLY".to_string(),
                "left by the user".to_string()
            )]
        );
        for n in [gone, partner] {
            assert!(sim.events_of(n).any(|e| matches!(
                e,
                Event::Link {
                    state: LinkState::Ended,
                    ..
                }
            )));
        }
        // Nobody redials or reconnects: the pair is over until a new pairing or a retry.
        sim.run_for(secs(120));
        assert_eq!(
            both(&sim, a, b),
            (SoloState::LocalOnly, SoloState::LocalOnly)
        );
        assert_eq!(reasons(&sim, partner).len(), 1);
        assert_eq!(reasons(&sim, gone).len(), 1);
        // Both still work alone.
        sim.command(partner, page(6));
        assert_eq!(at(&sim, partner), 6);
    }
}

// ---------------------------------------------------------------------------------------------
// Last write wins (PROTOCOL.md §6.1)
// ---------------------------------------------------------------------------------------------

/// Splits the pair long enough for the link to die, runs `during`, heals and waits for them to
/// pair again.
fn split(sim: &mut Sim, a: NodeId, b: NodeId, during: impl FnOnce(&mut Sim)) {
    sim.partition(a, b);
    sim.run_for(secs(11));
    assert_eq!(sim.solo(a).state(), SoloState::PairedReconnecting);
    during(sim);
    sim.heal();
    sim.run_for(secs(40));
    assert_eq!(
        both(sim, a, b),
        (SoloState::PairedConnected, SoloState::PairedConnected)
    );
}

#[test]
fn after_a_split_the_later_page_change_wins_on_both_tablets() {
    let (mut sim, a, b) = pair(9);
    split(&mut sim, a, b, |sim| {
        sim.command(b, page(5)); // the higher id changes first...
        sim.run_for(secs(1));
        sim.command(a, page(8)); // ...the lower id later: time beats id
        assert_eq!((at(sim, a), at(sim, b)), (8, 5));
        sim.clear_events();
    });
    assert_eq!((at(&sim, a), at(&sim, b)), (8, 8));
    assert_eq!(sim.solo(a).page_stamp(), sim.solo(b).page_stamp());
    assert_eq!(sim.solo(b).page_stamp().sender_id, "tab-a");
    // the loser jumps once to the winning page; the winner does not flicker
    assert_eq!(shown(&sim, b), [(8, Origin::Remote)]);
    assert!(shown(&sim, a).is_empty());
}

#[test]
fn on_equal_timestamps_the_higher_sender_id_wins() {
    let (mut sim, a, b) = pair(10);
    split(&mut sim, a, b, |sim| {
        // the same virtual instant: both stamps carry the same ts
        sim.command(a, page(5));
        sim.command(b, page(8));
        assert_eq!(sim.solo(a).page_stamp().ts, sim.solo(b).page_stamp().ts);
    });
    assert_eq!((at(&sim, a), at(&sim, b)), (8, 8));
    assert_eq!(sim.solo(a).page_stamp().sender_id, "tab-b");

    // the same rule settles a clash while connected
    sim.command(b, page(2));
    sim.command(a, page(3));
    sim.run_for(ms(50));
    assert_eq!((at(&sim, a), at(&sim, b)), (2, 2));
}

#[test]
fn local_navigation_is_never_blocked_while_disconnected() {
    let backoff = BackoffConfig {
        max_attempts: Some(2),
        ..Default::default()
    };
    let (mut sim, a, b) = tablets_with(11, backoff);
    sim.connect(a, b);
    sim.run_for(secs(1));
    sim.partition(a, b);
    let mut turned = 0;
    for (wait, expect) in [
        (secs(5), SoloState::PairedDegraded),
        (secs(6), SoloState::PairedReconnecting),
        (secs(60), SoloState::LocalOnly),
    ] {
        sim.run_for(wait);
        assert_eq!(sim.solo(a).state(), expect);
        turned += 1;
        sim.command(a, page(turned));
        // applied at once, with no virtual time passing
        assert_eq!(at(&sim, a), turned);
        assert!(sim.events_of(a).any(|e| matches!(
            e,
            Event::Page { page, origin: Origin::Local, .. } if *page == turned
        )));
    }
}

#[test]
fn after_a_split_the_later_layout_change_wins_on_both_tablets() {
    let (mut sim, a, b) = pair(12);
    split(&mut sim, a, b, |sim| {
        sim.command(
            b,
            Command::SetParity {
                leader: String::new(),
                parity: Parity::Even,
            },
        );
        sim.run_for(secs(1));
        sim.command(
            a,
            Command::SetParity {
                leader: String::new(),
                parity: Parity::Odd,
            },
        );
    });
    let want = Layout {
        leader_device_id: "tab-a".into(),
        parity: Parity::Odd,
    };
    assert_eq!(sim.solo(a).layout(), want);
    assert_eq!(sim.solo(b).layout(), want);
}

#[test]
fn periodic_snapshot_repairs_a_page_turn_lost_on_a_live_link() {
    let (mut sim, a, b) = pair(13);
    sim.partition(a, b); // the SET_PAGE is lost; the link survives
    sim.command(a, page(6));
    sim.run_for(ms(100));
    sim.heal();
    sim.run_for(ms(100));
    assert_eq!((at(&sim, a), at(&sim, b)), (6, 0));
    sim.run_for(secs(6)); // > snapshot_interval (5 s)
    assert_eq!((at(&sim, a), at(&sim, b)), (6, 6));
    assert_eq!(sim.solo(b).state(), SoloState::PairedConnected);
}

/// A solo tablet driven by hand on its own clock (the simulated network has one clock for every
/// node, so clock skew is tested with two machines wired directly).
fn tablet(id: &str, seed: u64) -> Solo {
    let mut c = SoloConfig::new(id);
    c.pair_id = "pair-1".into();
    Solo::new(c, seed)
}

/// Carries everything `from` sent on its link to `to`, whose end of the link is `peer` and whose
/// clock reads `now`.
fn carry(from: &mut Solo, to: &mut Solo, peer: u64, now: Time) {
    while let Some(out) = from.poll_output() {
        if let Output::Send(_, text) = out {
            to.handle(now, Input::Received(peer, text.as_bytes()));
        }
    }
}

#[test]
fn a_lagging_clock_still_wins_with_a_change_made_after_seeing_the_partners() {
    let t0 = EPOCH_MS;
    let a_clock = |ms: u64| Time::from_millis(t0 + 60_000 + ms); // a runs a minute fast
    let b_clock = |ms: u64| Time::from_millis(t0 + ms);
    let (mut a, mut b) = (tablet("tab-a", 1), tablet("tab-b", 2));
    a.handle(a_clock(0), Input::LinkUp(1));
    b.handle(b_clock(0), Input::LinkUp(1));
    carry(&mut a, &mut b, 1, b_clock(1));
    carry(&mut b, &mut a, 1, a_clock(1));

    a.handle(a_clock(100), Input::Command(&page(3)));
    carry(&mut a, &mut b, 1, b_clock(101));
    assert_eq!(b.page().page_index, 3);

    // b turns after seeing a's change; its wall clock says a minute earlier
    b.handle(b_clock(200), Input::Command(&page(4)));
    assert!(
        b.page_stamp().ts > t0 + 60_100,
        "stamp {:?}",
        b.page_stamp()
    );
    carry(&mut b, &mut a, 1, a_clock(201));
    assert_eq!(a.page().page_index, 4, "a kept its own older change");

    // and a reconnect (both send snapshots) agrees
    a.handle(a_clock(300), Input::LinkDown(1));
    b.handle(b_clock(300), Input::LinkDown(1));
    while a.poll_output().is_some() {}
    while b.poll_output().is_some() {}
    a.handle(a_clock(400), Input::LinkUp(2));
    b.handle(b_clock(400), Input::LinkUp(2));
    carry(&mut a, &mut b, 2, b_clock(401));
    carry(&mut b, &mut a, 2, a_clock(401));
    assert_eq!((a.page().page_index, b.page().page_index), (4, 4));
    assert_eq!(a.page_stamp(), b.page_stamp());
}
