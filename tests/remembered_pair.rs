//! Remembered pairs (PROTOCOL.md §6.1) on the simulated network: two tablets paired once by
//! codes agree a pair secret over their link (PAIR_BOND), keep a record, and find each other
//! again after a long cut, a restart of either or both, or a goodbye — without codes. Strangers
//! and hostile messages get nothing. Each test reads as a script; the clock is virtual.

mod sim;

use lansync::session::{
    Command, DoorAuth, DoorQuery, DoorSecret, Event, LinkState, Machine, Record, SoloConfig,
    SoloRecord, SoloState, Time, PARTNER_LEFT,
};
use sim::{NodeId, Sim};
use std::time::Duration;

const HALF_A: &str = "000102030405060708090a0b0c0d0e0f";
const HALF_B: &str = "101112131415161718191a1b1c1d1e1f";
/// PROTOCOL.md §6.1's test vector: the secret of the halves above, `tab-a` offering.
const SECRET: &str = "465aaed32c065e4e8a21a7adbe9d3cb4";
const FP_A: &str = "sha-256 AA:AA";
const FP_B: &str = "sha-256 BB:BB";
const B_ENDPOINT: &str = "192.168.1.20:47000";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn page(p: u32) -> Command {
    Command::SetPage { page: p }
}

/// A tablet that can remember its pair (it has a state directory): a half, the partner's
/// fingerprint from the codes, and (the waiting side) its redial endpoint.
fn cfg(id: &str, half: Option<&str>, partner_fp: &str) -> SoloConfig {
    let mut c = SoloConfig::new(id);
    c.pair_id = "pair-1".into();
    c.device_name = format!("Tablet {id}");
    c.bond_half = half.map(str::to_string);
    c.partner_fingerprint = Some(partner_fp.into());
    c
}

/// Two tablets paired by codes: `tab-a` offered (it dials), `tab-b` waits; both remember.
fn remembered(seed: u64) -> (Sim, NodeId, NodeId) {
    let mut b = cfg("tab-b", Some(HALF_B), FP_A);
    b.own_endpoints = vec![B_ENDPOINT.parse::<std::net::SocketAddr>().unwrap()];
    pair_with(seed, cfg("tab-a", Some(HALF_A), FP_B), b)
}

fn pair_with(seed: u64, a: SoloConfig, b: SoloConfig) -> (Sim, NodeId, NodeId) {
    let mut sim = Sim::new(seed);
    let (a, b) = sim.add_solo_pair(a, b);
    sim.connect(a, b);
    sim.run_for(secs(1));
    (sim, a, b)
}

fn record(sim: &Sim, n: NodeId) -> SoloRecord {
    match &sim.nodes[n].record {
        Some(Record::Solo(r)) => r.clone(),
        other => panic!("node {n} persisted {other:?}, not a solo record"),
    }
}

fn both(sim: &Sim, a: NodeId, b: NodeId) -> (SoloState, SoloState) {
    (sim.solo(a).state(), sim.solo(b).state())
}

fn connected(sim: &Sim, a: NodeId, b: NodeId) -> bool {
    both(sim, a, b) == (SoloState::PairedConnected, SoloState::PairedConnected)
}

fn at(sim: &Sim, n: NodeId) -> u32 {
    sim.solo(n).page().page_index
}

/// Runs in 10 ms steps until both are connected; the virtual time it took, or `None`.
fn time_to_connect(sim: &mut Sim, a: NodeId, b: NodeId, within: Duration) -> Option<Duration> {
    let start = sim.now;
    while sim.now.since(start) <= within {
        if connected(sim, a, b) {
            return Some(sim.now.since(start));
        }
        sim.run_for(ms(10));
    }
    None
}

fn reasons(sim: &Sim, n: NodeId) -> Vec<String> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::State { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Pairing remembers
// ---------------------------------------------------------------------------------------------

#[test]
fn a_pair_made_from_codes_agrees_a_secret_and_both_keep_the_same_record() {
    let (sim, a, b) = remembered(1);
    let (ra, rb) = (record(&sim, a), record(&sim, b));
    assert_eq!(ra.pair_secret, SECRET, "the PROTOCOL.md §6.1 test vector");
    assert_eq!(rb.pair_secret, SECRET);
    assert_eq!(
        (ra.pair_id.as_str(), rb.pair_id.as_str()),
        ("pair-1", "pair-1")
    );
    assert_eq!(
        (ra.partner_id.as_str(), rb.partner_id.as_str()),
        ("tab-b", "tab-a")
    );
    assert_eq!(ra.partner_name, "Tablet tab-b");
    assert_eq!((ra.initiator, rb.initiator), (true, false));
    assert_eq!(ra.partner_fingerprint.as_deref(), Some(FP_B));
    assert_eq!(rb.partner_fingerprint.as_deref(), Some(FP_A));
    // the dialing side learnt where the waiting side's redial endpoint listens
    assert_eq!(
        ra.partner_endpoints,
        vec![B_ENDPOINT.parse::<std::net::SocketAddr>().unwrap()]
    );
    assert!(rb.partner_endpoints.is_empty());
    for (n, partner) in [(a, "tab-b"), (b, "tab-a")] {
        let told: Vec<_> = sim
            .events_of(n)
            .filter(|e| matches!(e, Event::PairRemembered { .. }))
            .collect();
        assert_eq!(
            told,
            [&Event::PairRemembered {
                pair_id: "pair-1".into(),
                partner_id: partner.into()
            }]
        );
        assert_eq!(sim.solo(n).record(), Some(&record(&sim, n)));
    }
    // events go to --json logs: neither the secret nor a half is ever in one
    for l in &sim.events {
        let json = serde_json::to_string(&l.event).unwrap().to_lowercase();
        for secret in [SECRET, HALF_A, HALF_B] {
            assert!(!json.contains(secret), "{json}");
        }
    }
}

#[test]
fn page_and_layout_changes_of_a_remembered_pair_are_persisted_on_both() {
    let (mut sim, a, b) = remembered(2);
    sim.command(a, page(6));
    sim.command(
        b,
        Command::SetParity {
            leader: String::new(),
            parity: lansync::protocol::Parity::Even,
        },
    );
    sim.run_for(ms(50));
    for n in [a, b] {
        let r = record(&sim, n);
        assert_eq!(r.page.page_index, 6);
        assert_eq!(&r.page_stamp, sim.solo(n).page_stamp());
        assert_eq!(r.layout.leader_device_id, "tab-b");
        assert_eq!(r.layout.parity, lansync::protocol::Parity::Even);
    }
}

#[test]
fn a_peer_that_never_sends_pair_bond_leaves_the_pair_unremembered_as_before() {
    // tab-b stands for an earlier release: no half, no PAIR_BOND; tab-a's PAIR_BOND is ignored.
    let (mut sim, a, b) = pair_with(
        3,
        cfg("tab-a", Some(HALF_A), FP_B),
        SoloConfig {
            pair_id: "pair-1".into(),
            ..SoloConfig::new("tab-b")
        },
    );
    assert!(connected(&sim, a, b));
    for n in [a, b] {
        assert_eq!(sim.nodes[n].record, None);
        assert_eq!(sim.solo(n).record(), None);
        assert!(!sim
            .events_of(n)
            .any(|e| matches!(e, Event::PairRemembered { .. })));
    }
    // a code-only pair redials with no secret, and a restart forgets the pair (as today)
    sim.cut(a, b);
    assert!(time_to_connect(&mut sim, a, b, secs(5)).is_some());
    sim.crash(a);
    sim.restart(a);
    sim.run_for(secs(30));
    assert_eq!(sim.solo(a).state(), SoloState::LocalOnly);
}

// ---------------------------------------------------------------------------------------------
// Finding each other again
// ---------------------------------------------------------------------------------------------

#[test]
fn after_a_cut_longer_than_the_heartbeat_and_ice_timeouts_the_pair_is_back_and_converged() {
    let (mut sim, a, b) = remembered(4);
    sim.partition(a, b);
    sim.run_for(secs(15)); // > dead_after (10 s): both reconnecting
    assert_eq!(
        both(&sim, a, b),
        (SoloState::PairedReconnecting, SoloState::PairedReconnecting)
    );
    sim.command(a, page(3));
    sim.run_for(secs(30)); // > the ICE timeout (30 s) too
    sim.command(b, page(8)); // the later change
    sim.heal();
    // the dialer's backoff is at most 30 s (+20 % jitter) by now
    let took = time_to_connect(&mut sim, a, b, secs(40));
    assert!(took.is_some(), "not back: {:?}", both(&sim, a, b));
    sim.run_for(ms(100));
    assert_eq!((at(&sim, a), at(&sim, b)), (8, 8));
    assert_eq!(record(&sim, a).page.page_index, 8);
}

#[test]
fn a_restarted_dialing_side_dials_at_once_and_the_pair_is_back() {
    let (mut sim, a, b) = remembered(5);
    sim.command(a, page(4));
    sim.run_for(ms(50));
    sim.crash(a);
    sim.run_for(secs(2));
    sim.clear_events();
    sim.restart(a);
    assert_eq!(sim.solo(a).state(), SoloState::PairedReconnecting);
    assert_eq!(reasons(&sim, a), ["resuming the remembered pair"]);
    assert_eq!(at(&sim, a), 4, "shows what the record kept");
    // one connect (20 ms) and a transit: not a heartbeat or backoff later
    let took = time_to_connect(&mut sim, a, b, secs(1)).expect("back");
    assert!(took <= ms(50), "took {took:?}");
    sim.command(b, page(9));
    sim.run_for(ms(50));
    assert_eq!(at(&sim, a), 9);
}

#[test]
fn a_restarted_waiting_side_is_back_as_soon_as_the_dialer_hears_of_it() {
    let (mut sim, a, b) = remembered(6);
    sim.crash(b);
    sim.run_for(secs(400)); // the dialer gave up long ago
    assert_eq!(sim.solo(a).state(), SoloState::LocalOnly);
    assert!(sim.events_of(a).any(|e| matches!(e, Event::GaveUp { .. })));
    sim.restart(b);
    assert_eq!(sim.solo(b).state(), SoloState::PairedReconnecting);
    sim.run_for(secs(5));
    assert_eq!(sim.solo(a).state(), SoloState::LocalOnly, "no timer redial");
    // the waiting side's advert (PROTOCOL.md §10.3) appears: the dialer retries now
    sim.network_changed(a);
    let took = time_to_connect(&mut sim, a, b, secs(1)).expect("back");
    assert!(took <= ms(50), "took {took:?}");
}

#[test]
fn a_waiting_side_restarted_before_the_dialer_noticed_is_back_when_its_advert_returns() {
    let (mut sim, a, b) = remembered(16);
    sim.crash(b);
    sim.run_for(secs(1));
    sim.restart(b);
    sim.run_for(ms(200));
    // the dialer has not noticed yet: its link to the dead process still looks alive
    assert_eq!(sim.solo(a).state(), SoloState::PairedConnected);
    assert_eq!(sim.solo(b).state(), SoloState::PairedReconnecting);
    // the restarted side's advert appears: the dialer dials at once, without waiting for its
    // heartbeat to declare the old link dead
    sim.network_changed(a);
    sim.run_for(ms(200));
    assert_eq!(sim.solo(b).state(), SoloState::PairedConnected);
    assert_eq!(sim.solo(a).state(), SoloState::PairedConnected);
    // a second change right after does not dial again (one probe per interval)
    let links_before = sim.events_of(b).filter(|e| is_connected_link(e)).count();
    sim.network_changed(a);
    sim.run_for(ms(200));
    assert_eq!(
        sim.events_of(b).filter(|e| is_connected_link(e)).count(),
        links_before
    );
}

fn is_connected_link(e: &Event) -> bool {
    matches!(
        e,
        Event::Link {
            state: LinkState::Connected,
            ..
        }
    )
}

#[test]
fn both_restarted_the_pair_is_back_with_the_page_they_kept() {
    let (mut sim, a, b) = remembered(7);
    sim.command(b, page(12));
    sim.run_for(ms(50));
    sim.crash(a);
    sim.crash(b);
    sim.run_for(secs(60));
    sim.restart(a); // first: its first dial fails, its backoff retries
    sim.run_for(secs(3));
    sim.restart(b);
    assert!(time_to_connect(&mut sim, a, b, secs(10)).is_some());
    assert_eq!((at(&sim, a), at(&sim, b)), (12, 12));
    for n in [a, b] {
        assert_eq!(record(&sim, n).pair_secret, SECRET);
    }
}

#[test]
fn a_restarted_devices_kept_page_loses_to_a_newer_partner_change_and_wins_over_an_older() {
    // newer partner change while the restarted device was down: the partner's wins
    let (mut sim, a, b) = remembered(8);
    sim.command(a, page(5));
    sim.run_for(ms(50));
    sim.crash(a);
    sim.run_for(secs(1));
    sim.command(b, page(8));
    sim.run_for(secs(1));
    sim.restart(a);
    assert_eq!(at(&sim, a), 5);
    assert!(time_to_connect(&mut sim, a, b, secs(1)).is_some());
    sim.run_for(ms(100));
    assert_eq!((at(&sim, a), at(&sim, b)), (8, 8));

    // the partner's change is older than the one the restarted device kept: the kept one wins
    let (mut sim, a, b) = remembered(9);
    sim.partition(a, b);
    sim.command(b, page(8));
    sim.run_for(secs(1));
    sim.command(a, page(5));
    sim.run_for(ms(50));
    sim.crash(a);
    sim.heal();
    sim.run_for(secs(1));
    sim.restart(a);
    assert!(time_to_connect(&mut sim, a, b, secs(1)).is_some());
    sim.run_for(ms(100));
    assert_eq!((at(&sim, a), at(&sim, b)), (5, 5));
    assert_eq!(record(&sim, b).page.page_index, 5);
}

#[test]
fn after_a_goodbye_the_pair_comes_back_only_when_the_partner_reappears() {
    // the waiting side says goodbye and quits; later it starts again and advertises
    let (mut sim, a, b) = remembered(10);
    sim.command(b, Command::Leave);
    sim.run_for(ms(100));
    assert_eq!(sim.solo(a).state(), SoloState::LocalOnly);
    assert_eq!(
        reasons(&sim, a).last().map(String::as_str),
        Some(PARTNER_LEFT)
    );
    sim.crash(b);
    sim.restart(b);
    sim.run_for(secs(60));
    assert_eq!(
        sim.solo(a).state(),
        SoloState::LocalOnly,
        "no redial on a timer"
    );
    sim.network_changed(a);
    assert!(time_to_connect(&mut sim, a, b, ms(100)).is_some());

    // the dialing side says goodbye and quits; it starts again and dials at once
    let (mut sim, a, b) = remembered(11);
    sim.command(a, Command::Leave);
    sim.run_for(ms(100));
    assert_eq!(sim.solo(b).state(), SoloState::LocalOnly);
    sim.run_for(secs(60));
    assert_eq!(sim.solo(b).state(), SoloState::LocalOnly);
    sim.crash(a);
    sim.restart(a);
    assert!(time_to_connect(&mut sim, a, b, ms(100)).is_some());
}

#[test]
fn a_device_that_left_neither_redials_nor_admits_until_it_retries() {
    let (mut sim, a, b) = remembered(12);
    sim.command(a, Command::Leave);
    sim.run_for(ms(100));
    sim.network_changed(a);
    sim.run_for(secs(5));
    assert_eq!(
        both(&sim, a, b),
        (SoloState::LocalOnly, SoloState::LocalOnly)
    );
    let member = DoorQuery {
        auth: DoorAuth::Member,
        session_code: None,
        device_id: "tab-a".into(),
    };
    let (mut sim, a, b) = remembered(13);
    sim.command(b, Command::Leave);
    sim.run_for(ms(100));
    assert_eq!(sim.solo(b).door(sim.now, &member).secret, None);
    sim.command(b, Command::Retry);
    assert!(sim.solo(b).door(sim.now, &member).secret.is_some());
    sim.network_changed(a);
    assert!(time_to_connect(&mut sim, a, b, ms(100)).is_some());
}

// ---------------------------------------------------------------------------------------------
// Strangers and hostile peers
// ---------------------------------------------------------------------------------------------

#[test]
fn the_door_admits_only_the_partner_proving_the_pair_secret() {
    let (sim, a, b) = remembered(14);
    let q = |auth, id: &str| DoorQuery {
        auth,
        session_code: Some("ABCD-EFGH".into()),
        device_id: id.into(),
    };
    let door = |n: NodeId, query: DoorQuery| sim.solo(n).door(Time(0), &query);
    let partner = door(b, q(DoorAuth::Member, "tab-a"));
    assert_eq!(partner.secret, Some(DoorSecret::Member(SECRET.into())));
    assert_eq!(partner.verdict, Ok(()));
    for (n, id) in [
        (b, "tab-c"),
        (b, "tab-b"),
        (b, ""),
        (a, "tab-a"),
        (a, "tab-c"),
    ] {
        assert_eq!(door(n, q(DoorAuth::Member, id)).secret, None, "{id}");
    }
    for auth in [DoorAuth::Token, DoorAuth::Code] {
        let reply = door(b, q(auth, "tab-a"));
        assert_eq!(reply.secret, None);
        assert!(reply.verdict.is_err());
    }
}

#[test]
fn a_stranger_or_an_impostor_with_a_wrong_secret_is_refused_and_the_pair_stays_linked() {
    let (mut sim, a, b) = remembered(15);
    let linked = sim.peer_to(b, a);
    // a third tablet that knows nothing
    let dialer = |id: &str| SoloConfig {
        initiator: true,
        ..cfg(id, None, FP_B)
    };
    let stranger = sim.add_solo(dialer("tab-c"), Some(b));
    sim.command(stranger, Command::Retry);
    // one that claims tab-a's id with a made-up secret
    let impostor = sim.add_solo(dialer("tab-a"), Some(b));
    let mut fake = record(&sim, a);
    fake.pair_secret = "f".repeat(32);
    sim.nodes[impostor].record = Some(Record::Solo(fake));
    sim.crash(impostor);
    sim.restart(impostor); // dials at once, with the wrong secret
    sim.run_for(secs(5));
    for n in [stranger, impostor] {
        assert_ne!(sim.solo(n).state(), SoloState::PairedConnected);
        assert_eq!(sim.peer_to(n, b), None, "no link was made");
    }
    assert!(connected(&sim, a, b));
    assert_eq!(sim.peer_to(b, a), linked, "the pair's link is untouched");
}

/// A hand-written envelope from `sender` on the pair.
fn bond(sender: &str, seq: u64, payload: &str) -> Vec<u8> {
    format!(
        r#"{{"v":1,"session_id":"pair-1","sender_id":"{sender}","type":"PAIR_BOND","ts":1,"seq":{seq},"payload":{payload}}}"#
    )
    .into_bytes()
}

#[test]
fn hostile_pair_bonds_are_ignored_and_leave_the_record_unchanged() {
    let (mut sim, a, b) = remembered(16);
    let before = record(&sim, b);
    let peer = sim.peer_to(b, a).unwrap();
    let nine: Vec<String> = (1..=9).map(|i| format!("\"10.0.0.{i}:1\"")).collect();
    let hostile = [
        r#"{"half":"zz0102030405060708090a0b0c0d0e0f"}"#.to_string(),
        r#"{"half":"0001"}"#.into(),
        r#"{"half":7}"#.into(),
        format!(r#"{{"endpoints":[{}]}}"#, nine.join(",")),
        r#"{"endpoints":["not-an-address"]}"#.into(),
        r#"{"endpoints":["10.0.0.1"]}"#.into(),
        format!(r#"{{"endpoints":["{}:1"]}}"#, "9".repeat(100)),
        r#"{"endpoints":"10.0.0.1:1"}"#.into(),
        "5".into(),
        // a second, different half on a remembered pair: the secret never changes
        r#"{"half":"ffffffffffffffffffffffffffffffff"}"#.into(),
    ];
    for (i, payload) in hostile.iter().enumerate() {
        sim.inject(b, peer, &bond("tab-a", 1_000_000 + i as u64, payload));
    }
    // endpoints from anyone but the partner
    sim.inject(
        b,
        peer,
        &bond("tab-x", 2_000_000, r#"{"endpoints":["10.9.9.9:9"]}"#),
    );
    sim.run_for(ms(50));
    assert_eq!(record(&sim, b), before);
    assert_eq!(sim.solo(b).record(), Some(&before));

    // the partner's own endpoints do update it (so the injections above were read)
    sim.inject(
        b,
        peer,
        &bond("tab-a", 3_000_000, r#"{"endpoints":["10.1.1.1:4000"]}"#),
    );
    assert_eq!(
        record(&sim, b).partner_endpoints,
        vec!["10.1.1.1:4000".parse::<std::net::SocketAddr>().unwrap()]
    );
    assert_eq!(record(&sim, b).pair_secret, SECRET);
}

#[test]
fn a_malformed_half_never_makes_a_record() {
    // tab-a has no state directory (no half); tab-b would remember if it got a half
    let (mut sim, a, b) = pair_with(
        17,
        SoloConfig {
            pair_id: "pair-1".into(),
            ..SoloConfig::new("tab-a")
        },
        cfg("tab-b", Some(HALF_B), FP_A),
    );
    assert_eq!(sim.nodes[b].record, None);
    let peer = sim.peer_to(b, a).unwrap();
    for (i, half) in ["zz", "0001", &"0".repeat(64), &"g".repeat(32)]
        .iter()
        .enumerate()
    {
        let payload = format!(r#"{{"half":"{half}"}}"#);
        sim.inject(b, peer, &bond("tab-a", 1_000_000 + i as u64, &payload));
    }
    assert_eq!(sim.nodes[b].record, None);
    assert_eq!(sim.solo(b).record(), None);
    // a well-formed half does (so the injections above were read)
    let payload = format!(r#"{{"half":"{HALF_A}"}}"#);
    sim.inject(b, peer, &bond("tab-a", 2_000_000, &payload));
    assert_eq!(record(&sim, b).pair_secret, SECRET);
}
