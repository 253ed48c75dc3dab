//! Choir scenarios on the simulated network (PROTOCOL.md §6.2–6.4). Each test reads as a
//! script: set up a master and followers, do something, check what every device shows.

mod sim;

use lansync::protocol::{FollowMode, PresenceStatus, RejectReason, Role, StreamInfo};
use lansync::session::{
    BackoffConfig, Command, DoorAuth, DoorQuery, DoorSecret, Event, FollowerConfig, FollowerState,
    Input, JoinCredentials, Machine, Master, MasterConfig, MasterState, Origin, Output, Record,
    SessionCode, Time,
};
use sim::{NodeId, Sim, EPOCH_MS};
use std::time::Duration;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A master and `n` followers joined by token.
fn choir(n: usize, seed: u64) -> (Sim, NodeId, Vec<NodeId>) {
    choir_with(n, seed, MasterConfig::new("master"), |i| {
        FollowerConfig::new(format!("f{i}"))
    })
}

/// A master and `n` followers joined by token, with chosen settings.
fn choir_with(
    n: usize,
    seed: u64,
    master: MasterConfig,
    follower: impl Fn(usize) -> FollowerConfig,
) -> (Sim, NodeId, Vec<NodeId>) {
    let mut sim = Sim::new(seed);
    let m = sim.add_master(master);
    let token = sim.master(m).record().token.clone();
    let followers: Vec<NodeId> = (0..n)
        .map(|i| {
            let f = sim.add_follower(follower(i), m);
            sim.command(f, join_token(&token));
            f
        })
        .collect();
    sim.run_for(secs(1));
    for &f in &followers {
        assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    }
    (sim, m, followers)
}

fn join_token(token: &str) -> Command {
    Command::Join(JoinCredentials {
        token: Some(token.into()),
        ..Default::default()
    })
}

fn join_code(code: &str, password: Option<&str>) -> Command {
    Command::Join(JoinCredentials {
        session_code: Some(code.into()),
        password: password.map(Into::into),
        ..Default::default()
    })
}

fn page(p: u32) -> Command {
    Command::SetPage { page: p }
}

fn song(s: &str) -> Command {
    Command::SetSong { song_id: s.into() }
}

fn mode(m: FollowMode) -> Command {
    Command::SetFollowMode { mode: m }
}

fn stream(id: &str) -> StreamInfo {
    StreamInfo {
        stream_id: id.into(),
        song_epoch: 0,
        name: "score.pdf".into(),
        mime: "application/pdf".into(),
        size: 120_000,
        sha256: String::new(),
    }
}

/// The state names a node moved through, in order.
fn states(sim: &Sim, n: NodeId) -> Vec<String> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::State { state, .. } => Some(state.name().to_string()),
            _ => None,
        })
        .collect()
}

/// Times at which a node entered `state`.
fn entered(sim: &Sim, n: NodeId, state: &str) -> Vec<Time> {
    sim.events
        .iter()
        .filter(|l| l.node == n && matches!(&l.event, Event::State { state: s, .. } if s == state))
        .map(|l| l.at)
        .collect()
}

/// Every page a node showed: (song epoch, page).
fn shown(sim: &Sim, n: NodeId) -> Vec<(u64, u32)> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::Page {
                song_epoch, page, ..
            } => Some((*song_epoch, *page)),
            _ => None,
        })
        .collect()
}

fn rejections(sim: &Sim, n: NodeId) -> Vec<RejectReason> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::Rejected { reason } => Some(*reason),
            _ => None,
        })
        .collect()
}

fn count_events(sim: &Sim, n: NodeId, pred: impl Fn(&Event) -> bool) -> usize {
    sim.events_of(n).filter(|e| pred(e)).count()
}

fn joined_ids(sim: &Sim, n: NodeId) -> Vec<String> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::ParticipantJoined(p) => Some(p.id.clone()),
            _ => None,
        })
        .collect()
}

fn left_ids(sim: &Sim, n: NodeId) -> Vec<String> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::ParticipantLeft(p) => Some(p.id.clone()),
            _ => None,
        })
        .collect()
}

fn view(sim: &Sim, f: NodeId) -> (Option<&str>, u64, u32) {
    let v = sim.follower(f).view();
    (v.song_id.as_deref(), v.song_epoch, v.page_index)
}

/// A hand-written control message, as a peer of another implementation or version would send.
fn raw(kind: &str, session_id: &str, sender: &str, seq: u64, payload: &str) -> Vec<u8> {
    format!(
        r#"{{"v":1,"session_id":"{session_id}","sender_id":"{sender}","type":"{kind}","ts":{EPOCH_MS},"seq":{seq},"payload":{payload}}}"#
    )
    .into_bytes()
}

/// A SET_PAGE the master could have sent, with a sequence number above anything sent so far on
/// the link (so the envelope filter lets it through and only the epoch/revision rule decides).
fn forged_set_page(sim: &Sim, m: NodeId, epoch: u64, revision: u64, page: u32) -> Vec<u8> {
    let session_id = sim.master(m).record().session_id.clone();
    let song = sim.master(m).page().song_id.clone().unwrap_or_default();
    raw(
        "SET_PAGE",
        &session_id,
        "master",
        1_000_000_000 + revision,
        &format!(
            r#"{{"song_id":"{song}","song_epoch":{epoch},"page_revision":{revision},"page_index":{page}}}"#
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Master states, session code and token (PROTOCOL.md §6.2)
// ---------------------------------------------------------------------------------------------

#[test]
fn master_is_session_active_on_creation_and_announces_code_and_token() {
    let mut sim = Sim::new(1);
    let m = sim.add_master(MasterConfig::new("master"));
    let rec = sim.master(m).record().clone();
    assert_eq!(sim.master(m).state(), MasterState::SessionActive);
    let events: Vec<&Event> = sim.events_of(m).collect();
    assert!(matches!(events[0], Event::State { state, .. } if state == "MASTER_SESSION_ACTIVE"));
    assert_eq!(
        events[1],
        &Event::Hosting {
            session_id: rec.session_id.clone(),
            session_code: rec.session_code.as_str().into(),
            token: rec.token.clone(),
            open: true,
        }
    );
    assert_eq!(sim.nodes[m].record, Some(Record::Master(rec)));
}

#[test]
fn master_goes_reconnecting_links_when_a_follower_is_lost_and_active_when_it_rejoins() {
    let (mut sim, m, fs) = choir(2, 2);
    sim.clear_events();
    sim.cut(m, fs[0]);
    assert_eq!(sim.master(m).state(), MasterState::ReconnectingLinks);
    sim.run_for(secs(5));
    assert_eq!(sim.follower(fs[0]).state(), FollowerState::ConnectedFollow);
    assert_eq!(sim.master(m).state(), MasterState::SessionActive);
    assert_eq!(
        states(&sim, m),
        ["MASTER_RECONNECTING_LINKS", "MASTER_SESSION_ACTIVE"]
    );
}

#[test]
fn master_end_moves_to_session_ended_and_refuses_further_commands() {
    let (mut sim, m, _fs) = choir(1, 3);
    sim.clear_events();
    sim.command(m, Command::End);
    assert_eq!(sim.master(m).state(), MasterState::SessionEnded);
    assert_eq!(states(&sim, m), ["MASTER_SESSION_ENDED"]);
    assert_eq!(count_events(&sim, m, |e| *e == Event::SessionEnded), 1);
    sim.command(m, page(3));
    assert!(sim
        .events_of(m)
        .any(|e| matches!(e, Event::Error { code, .. } if code == "session-ended")));
    assert_eq!(sim.master(m).page().page_index, 0);
}

#[test]
fn session_code_is_xxxx_xxxx_without_look_alike_characters() {
    let mut sim = Sim::new(4);
    for i in 0..50 {
        let m = sim.add_master(MasterConfig::new(format!("m{i}")));
        let code = sim.master(m).record().session_code.as_str().to_string();
        assert_eq!(code.len(), 9, "{code}");
        assert_eq!(&code[4..5], "-", "{code}");
        for c in code.chars().filter(|&c| c != '-') {
            assert!(
                c.is_ascii_uppercase() || c.is_ascii_digit(),
                "{code}: {c} is not upper-case alphanumeric"
            );
            assert!(!"IO01".contains(c), "{code}: look-alike {c}");
        }
        assert_eq!(SessionCode::parse(&code).unwrap().as_str(), code);
    }
}

#[test]
fn session_code_parse_normalises_case_spaces_and_dashes_and_rejects_look_alikes() {
    let want = SessionCode::parse("ABCD-EFGH").unwrap();
    assert_eq!(want.as_str(), "ABCD-EFGH");
    for typed in [
        "abcd-efgh",
        "ABCDEFGH",
        "abcd efgh",
        " ab-cd ef-gh ",
        "Ab\tCd-eFgH",
    ] {
        assert_eq!(SessionCode::parse(typed), Some(want.clone()), "{typed:?}");
    }
    for bad in [
        "ABCD-EFG0",  // zero
        "OBCD-EFGH",  // letter O
        "ABCD-EFG1",  // one
        "IBCD-EFGH",  // letter I
        "ABCD-EFG",   // too short
        "ABCD-EFGHJ", // too long
        "",
        "ABCD_EFGH", // not a separator
    ] {
        assert_eq!(SessionCode::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn token_and_session_id_are_long_hex_and_differ_with_the_entropy() {
    let now = Time::from_millis(EPOCH_MS);
    let a = Master::new(MasterConfig::new("m"), now, [1; 32]);
    let b = Master::new(MasterConfig::new("m"), now, [2; 32]);
    let a2 = Master::new(MasterConfig::new("m"), now, [1; 32]);
    let (ra, rb) = (a.record(), b.record());
    assert_eq!(ra.token.len(), 32, "128-bit token");
    assert_eq!(ra.session_id.len(), 16);
    for s in [&ra.token, &ra.session_id] {
        assert!(s.bytes().all(|c| c.is_ascii_hexdigit()), "{s}");
    }
    assert_ne!(ra.token, rb.token);
    assert_ne!(ra.session_id, rb.session_id);
    assert_ne!(ra.session_code, rb.session_code);
    // the token does not embed the (shared, less secret) session id
    assert!(!ra.token.contains(&ra.session_id));
    // derived from the entropy only: the same entropy gives the same session (restore relies on
    // the record, not on this, but it proves no clock or counter leaks into the token)
    assert_eq!(a2.record().token, ra.token);
}

// ---------------------------------------------------------------------------------------------
// Joining (PROTOCOL.md §6.2, §9) and follower states (§6.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn follower_joining_by_token_goes_idle_joining_connected_follow() {
    let mut sim = Sim::new(5);
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    let f = sim.add_follower(FollowerConfig::new("f0"), m);
    assert_eq!(sim.follower(f).state(), FollowerState::IdleLocal);
    sim.command(f, join_token(&token));
    assert_eq!(sim.follower(f).state(), FollowerState::Joining);
    sim.run_for(secs(1));
    assert_eq!(
        states(&sim, f),
        ["FOLLOWER_JOINING", "FOLLOWER_CONNECTED_FOLLOW"]
    );
    assert!(sim
        .events_of(f)
        .any(|e| matches!(e, Event::Joined { rejoin: false, .. })));
    assert_eq!(
        sim.follower(f).session_id(),
        sim.master(m).record().session_id
    );
    assert_eq!(joined_ids(&sim, m), ["f0"]);
}

#[test]
fn follower_joins_by_a_sloppily_typed_session_code_and_gets_a_member_secret_never_the_token() {
    let mut sim = Sim::new(6);
    let m = sim.add_master(MasterConfig::new("master"));
    let code = sim.master(m).record().session_code.as_str().to_string();
    let typed = code.to_lowercase().replace('-', " ");
    let f = sim.add_follower(FollowerConfig::new("f0"), m);
    sim.command(f, join_code(&typed, None));
    sim.run_for(secs(1));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    // The QR token is the session's key: knowing the code must not give it away (PROTOCOL.md §9.6).
    assert_eq!(sim.follower(f).token(), None);
    let token = sim.master(m).record().token.clone();
    assert!(
        matches!(&sim.nodes[f].record, Some(Record::Follower(r)) if r.token.is_none()),
        "the code joiner's record holds no token"
    );
    let secret = sim.follower(f).member_secret().expect("a member secret");
    assert_eq!(secret.len(), 32);
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(secret, token);
    assert!(sim
        .events_of(f)
        .any(|e| matches!(e, Event::Joined { session_code, .. } if *session_code == code)));
}

fn password_master(sim: &mut Sim) -> (NodeId, String) {
    let mut cfg = MasterConfig::new("master");
    cfg.password = Some("tenor-2024".into());
    let m = sim.add_master(cfg);
    let code = sim.master(m).record().session_code.as_str().to_string();
    (m, code)
}

#[test]
fn session_code_with_the_right_password_is_accepted() {
    let mut sim = Sim::new(7);
    let (m, code) = password_master(&mut sim);
    assert!(sim
        .events_of(m)
        .any(|e| matches!(e, Event::Hosting { open: false, .. })));
    let f = sim.add_follower(FollowerConfig::new("f0"), m);
    sim.command(f, join_code(&code, Some("tenor-2024")));
    sim.run_for(secs(1));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    assert!(rejections(&sim, f).is_empty());
    // a QR token needs no password
    let token = sim.master(m).record().token.clone();
    let g = sim.add_follower(FollowerConfig::new("f1"), m);
    sim.command(g, join_token(&token));
    sim.run_for(secs(1));
    assert_eq!(sim.follower(g).state(), FollowerState::ConnectedFollow);
}

#[test]
fn wrong_or_missing_password_is_rejected_and_follower_returns_to_idle_local() {
    let mut sim = Sim::new(8);
    let (m, code) = password_master(&mut sim);
    let wrong = sim.add_follower(FollowerConfig::new("wrong"), m);
    let missing = sim.add_follower(FollowerConfig::new("missing"), m);
    sim.command(wrong, join_code(&code, Some("bass-2024")));
    sim.command(missing, join_code(&code, None));
    sim.run_for(secs(5));
    for f in [wrong, missing] {
        assert_eq!(rejections(&sim, f), [RejectReason::InvalidPassword]);
        assert_eq!(sim.follower(f).state(), FollowerState::IdleLocal);
        assert_eq!(states(&sim, f), ["FOLLOWER_JOINING", "FOLLOWER_IDLE_LOCAL"]);
        assert_eq!(sim.follower(f).token(), None);
    }
    assert_eq!(sim.master(m).count(), 1);
    assert!(joined_ids(&sim, m).is_empty());
}

#[test]
fn unknown_session_code_is_session_not_found() {
    let mut sim = Sim::new(9);
    let m = sim.add_master(MasterConfig::new("master"));
    let real = sim.master(m).record().session_code.as_str().to_string();
    let other = if real == "ABCD-EFGH" {
        "HGFE-DCBA"
    } else {
        "ABCD-EFGH"
    };
    let f = sim.add_follower(FollowerConfig::new("f0"), m);
    sim.command(f, join_code(other, None));
    sim.run_for(secs(1));
    assert_eq!(rejections(&sim, f), [RejectReason::SessionNotFound]);
    assert_eq!(sim.follower(f).state(), FollowerState::IdleLocal);
}

#[test]
fn wrong_token_is_invalid_token() {
    let mut sim = Sim::new(10);
    let m = sim.add_master(MasterConfig::new("master"));
    let mut token = sim.master(m).record().token.clone();
    let last = if token.ends_with('0') { "1" } else { "0" };
    token.replace_range(31.., last);
    let f = sim.add_follower(FollowerConfig::new("f0"), m);
    sim.command(f, join_token(&token));
    sim.run_for(secs(1));
    assert_eq!(rejections(&sim, f), [RejectReason::InvalidToken]);
    assert_eq!(sim.follower(f).state(), FollowerState::IdleLocal);
    assert_eq!(sim.master(m).count(), 1);
}

#[test]
fn full_session_rejects_newcomers_but_a_known_follower_may_rejoin() {
    let mut mcfg = MasterConfig::new("master");
    mcfg.max_followers = 2;
    let (mut sim, m, fs) = choir_with(2, 11, mcfg, |i| FollowerConfig::new(format!("f{i}")));
    let token = sim.master(m).record().token.clone();
    let late = sim.add_follower(FollowerConfig::new("late"), m);
    sim.command(late, join_token(&token));
    sim.run_for(secs(1));
    assert_eq!(rejections(&sim, late), [RejectReason::SessionFull]);
    assert_eq!(sim.follower(late).state(), FollowerState::IdleLocal);

    // f0 drops out and its seat is taken: the session is full again...
    sim.cut(m, fs[0]);
    sim.partition(m, fs[0]);
    sim.command(late, join_token(&token));
    sim.run_for(secs(1));
    assert_eq!(sim.follower(late).state(), FollowerState::ConnectedFollow);
    // ...yet f0, a known member, gets back in
    sim.heal();
    sim.run_for(secs(30));
    assert_eq!(sim.follower(fs[0]).state(), FollowerState::ConnectedFollow);
    assert!(rejections(&sim, fs[0]).is_empty());
    // master + 3 followers: a member's seat is kept for it even past max_followers
    assert_eq!(sim.master(m).count(), 4);
}

#[test]
fn a_full_session_with_members_gone_still_admits_newcomers_within_the_participant_limit() {
    // 255 followers fill the session; 5 drop out and newcomers take their seats. The master
    // still knows the 5 that dropped out (they may come back), so it knows 261 participants,
    // more than a JOIN_ACCEPT may list (PROTOCOL.md §3): the newcomers must still be accepted.
    let mut mcfg = MasterConfig::new("master");
    mcfg.max_followers = 255; // the most a session may hold
    let (mut sim, m, fs) = choir_with(255, 31, mcfg, |i| FollowerConfig::new(format!("f{i}")));
    let token = sim.master(m).record().token.clone();
    for f in &fs[..5] {
        sim.cut(m, *f);
        sim.partition(m, *f);
    }
    sim.run_for(secs(1));
    let late: Vec<_> = (0..5)
        .map(|i| sim.add_follower(FollowerConfig::new(format!("late{i}")), m))
        .collect();
    for f in &late {
        sim.command(*f, join_token(&token));
    }
    sim.run_for(secs(3));
    for f in &late {
        assert_eq!(sim.follower(*f).state(), FollowerState::ConnectedFollow);
    }
    let listed = sim.master(m).participants();
    assert_eq!(listed.len(), 256);
    assert!(listed[..256 - 5]
        .iter()
        .all(|p| p.status == PresenceStatus::Connected));
}

#[test]
fn other_protocol_version_is_answered_with_version_mismatch() {
    let mut sim = Sim::new(12);
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    let f = sim.add_follower(FollowerConfig::new("f0"), m);
    sim.command(f, join_token(&token));
    sim.run_for(sim.net.connect_time); // the link is up, the JOIN_REQUEST still in flight
    let link = sim.peer_to(m, f).expect("link up");
    // a version-2 peer: the rest of the envelope may look like anything
    sim.inject(
        m,
        link,
        br#"{"v":2,"sender_id":"f0","kind":"JOIN","hdr":{"seq":1},"body":{}}"#,
    );
    sim.run_for(secs(1));
    assert_eq!(rejections(&sim, f), [RejectReason::VersionMismatch]);
    assert_eq!(sim.follower(f).state(), FollowerState::IdleLocal);
    assert!(sim.peer_to(m, f).is_none(), "master closed the link");
    assert_eq!(sim.master(m).count(), 1);
}

#[test]
fn lost_join_request_is_sent_again() {
    let mut sim = Sim::new(45);
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    let f = sim.add_follower(FollowerConfig::new("f0"), m);
    sim.net.loss = 1.0; // HELLO and JOIN_REQUEST vanish
    sim.command(f, join_token(&token));
    sim.run_for(ms(21));
    sim.net.loss = 0.0;
    sim.run_for(secs(1));
    assert_eq!(sim.follower(f).state(), FollowerState::Joining);
    sim.run_for(secs(2)); // join_retry is 2 s
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    assert_eq!(joined_ids(&sim, m), ["f0"]);
}

#[test]
fn lost_join_accept_is_answered_again_without_a_second_join() {
    let mut sim = Sim::new(46);
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    let f = sim.add_follower(FollowerConfig::new("f0"), m);
    sim.command(f, join_token(&token));
    sim.run_for(ms(21)); // the JOIN_REQUEST is on the wire
    sim.partition(m, f); // the JOIN_ACCEPT will not make it back
    sim.run_for(ms(2));
    assert_eq!(joined_ids(&sim, m), ["f0"]);
    sim.heal();
    sim.run_for(secs(1));
    assert_eq!(sim.follower(f).state(), FollowerState::Joining);
    sim.run_for(secs(2));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    assert_eq!(
        joined_ids(&sim, m),
        ["f0"],
        "the repeated request is not a new join"
    );
    assert_eq!(
        count_events(&sim, f, |e| matches!(e, Event::Joined { .. })),
        1
    );
}

#[test]
fn link_that_never_sends_join_request_is_closed_after_join_timeout() {
    let mut mcfg = MasterConfig::new("master");
    mcfg.join_timeout = secs(5);
    let mut sim = Sim::new(13);
    let m = sim.add_master(mcfg);
    // a solo tablet talks (HELLO, pings) but never asks to join
    let (stranger, _) = sim.add_solo_pair(
        lansync::session::SoloConfig::new("stranger"),
        lansync::session::SoloConfig::new("other"),
    );
    let t0 = sim.now;
    sim.connect(m, stranger);
    let link = sim.peer_to(m, stranger).unwrap();
    let closed = |sim: &Sim| {
        sim.events
            .iter()
            .filter(|l| {
                l.node == m
                    && l.event
                        == Event::Link {
                            peer: link,
                            state: lansync::session::LinkState::Idle,
                        }
            })
            .map(|l| l.at)
            .next()
    };
    sim.run_for(ms(4900));
    assert_eq!(closed(&sim), None, "closed before join_timeout");
    assert_eq!(sim.peer_to(m, stranger), Some(link));
    sim.run_for(secs(1));
    let at = closed(&sim).expect("closed after join_timeout");
    assert_eq!(at.since(t0), secs(5));
    assert_eq!(sim.peer_to(m, stranger), None);
    assert!(joined_ids(&sim, m).is_empty());
}

#[test]
fn follower_toggles_between_connected_follow_and_connected_free() {
    let (mut sim, m, fs) = choir(1, 14);
    let f = fs[0];
    sim.clear_events();
    sim.command(f, mode(FollowMode::Free));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFree);
    sim.run_for(secs(1));
    assert_eq!(
        sim.master(m).participants()[1].follow_mode,
        FollowMode::Free
    );
    sim.command(f, mode(FollowMode::Follow));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    sim.run_for(secs(1));
    assert_eq!(
        sim.master(m).participants()[1].follow_mode,
        FollowMode::Follow
    );
    assert_eq!(
        states(&sim, f),
        ["FOLLOWER_CONNECTED_FREE", "FOLLOWER_CONNECTED_FOLLOW"]
    );
}

#[test]
fn lost_link_goes_disconnected_local_then_rejoining_then_back_to_follow() {
    let (mut sim, m, fs) = choir(1, 15);
    let f = fs[0];
    sim.clear_events();
    sim.cut(m, f);
    assert_eq!(sim.follower(f).state(), FollowerState::DisconnectedLocal);
    sim.run_for(secs(5));
    assert_eq!(
        states(&sim, f),
        [
            "FOLLOWER_DISCONNECTED_LOCAL",
            "FOLLOWER_REJOINING",
            "FOLLOWER_CONNECTED_FOLLOW"
        ]
    );
    assert!(sim
        .events_of(f)
        .any(|e| matches!(e, Event::Joined { rejoin: true, .. })));
}

#[test]
fn lost_link_in_free_mode_rejoins_as_free() {
    let (mut sim, m, fs) = choir(1, 16);
    let f = fs[0];
    sim.command(f, mode(FollowMode::Free));
    sim.run_for(secs(1));
    sim.clear_events();
    sim.cut(m, f);
    sim.run_for(secs(5));
    assert_eq!(
        states(&sim, f),
        [
            "FOLLOWER_DISCONNECTED_LOCAL",
            "FOLLOWER_REJOINING",
            "FOLLOWER_CONNECTED_FREE"
        ]
    );
    assert_eq!(
        sim.master(m).participants()[1].follow_mode,
        FollowMode::Free
    );
}

// ---------------------------------------------------------------------------------------------
// Rapid page changes, song change priority (PROTOCOL.md §6.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn rapid_page_burst_with_reordering_ends_on_the_final_page_and_never_goes_back() {
    let (mut sim, m, fs) = choir(4, 17);
    sim.command(m, song("psalm-23"));
    sim.run_for(secs(1));
    sim.clear_events();
    sim.net.jitter = ms(40); // messages 1 ms apart arrive up to 40 ms late: heavy reordering
    for p in 1..=50 {
        sim.command(m, page(p)); // page p is revision p
        sim.run_for(ms(1));
    }
    // a snapshot period, so the final page is there even if a later PONG overtook it
    sim.run_for(secs(6));
    let mut skipped = 0;
    for &f in &fs {
        let pages: Vec<u32> = shown(&sim, f).into_iter().map(|(_, p)| p).collect();
        assert!(
            pages.windows(2).all(|w| w[0] < w[1]),
            "follower {f} went back to an older revision: {pages:?}"
        );
        assert_eq!(pages.last(), Some(&50));
        assert_eq!(view(&sim, f), (Some("psalm-23"), 1, 50));
        skipped += 50 - pages.len();
    }
    assert!(skipped > 0, "the network did not reorder anything");
}

#[test]
fn set_page_with_an_older_revision_is_discarded_even_in_a_fresh_envelope() {
    let (mut sim, m, fs) = choir(1, 18);
    let f = fs[0];
    sim.command(m, song("psalm-23"));
    for p in 1..=5 {
        sim.command(m, page(p));
    }
    sim.run_for(secs(1));
    assert_eq!(view(&sim, f), (Some("psalm-23"), 1, 5));
    let link = sim.peer_to(f, m).unwrap();
    // revision 3 of this song arrives after revision 5 (new sequence number, old revision)
    let old = forged_set_page(&sim, m, 1, 3, 3);
    sim.inject(f, link, &old);
    assert_eq!(view(&sim, f), (Some("psalm-23"), 1, 5));
    // a strictly newer revision on the same path is applied: the path works, the rule decided
    let newer = forged_set_page(&sim, m, 1, 6, 6);
    sim.inject(f, link, &newer);
    assert_eq!(view(&sim, f), (Some("psalm-23"), 1, 6));
}

#[test]
fn song_change_wins_over_a_late_page_of_the_previous_song() {
    let (mut sim, m, fs) = choir(8, 19);
    sim.command(m, song("kyrie"));
    sim.run_for(secs(1));
    sim.clear_events();
    sim.net.jitter = ms(30);
    // page 7 of the old song and the new song leave together; jitter reorders them
    sim.command(m, page(7));
    sim.command(m, song("gloria"));
    sim.run_for(secs(6));
    for &f in &fs {
        let epochs: Vec<u64> = shown(&sim, f).into_iter().map(|(e, _)| e).collect();
        assert!(
            epochs.windows(2).all(|w| w[0] <= w[1]),
            "follower {f} showed an older song after a newer one: {epochs:?}"
        );
        assert_eq!(view(&sim, f), (Some("gloria"), 2, 0));
    }
    // a SET_PAGE of the old epoch, even with the highest revision, is stale
    let f = fs[0];
    let link = sim.peer_to(f, m).unwrap();
    let late = forged_set_page(&sim, m, 1, 99, 7);
    sim.inject(f, link, &late);
    assert_eq!(view(&sim, f), (Some("gloria"), 2, 0));
    assert_eq!(sim.follower(f).master().unwrap().song_epoch, 2);
}

#[test]
fn rejoin_adopts_the_masters_current_song_over_the_followers_old_page() {
    let (mut sim, m, fs) = choir(2, 20);
    let (follow, free) = (fs[0], fs[1]);
    sim.command(free, mode(FollowMode::Free));
    sim.command(m, song("kyrie"));
    sim.command(m, page(4));
    sim.run_for(secs(1));
    // both lose the master; meanwhile they navigate and the master changes song
    for &f in &fs {
        sim.cut(m, f);
        sim.partition(m, f);
    }
    sim.command(follow, page(9));
    sim.command(free, page(11));
    sim.command(m, song("gloria"));
    sim.command(m, page(2));
    assert_eq!(view(&sim, follow), (Some("kyrie"), 1, 9));
    assert_eq!(view(&sim, free), (Some("kyrie"), 1, 11));
    sim.heal();
    sim.run_for(secs(30));
    assert_eq!(sim.follower(follow).state(), FollowerState::ConnectedFollow);
    assert_eq!(sim.follower(free).state(), FollowerState::ConnectedFree);
    // the new song epoch overrides both devices' page context, free or not
    assert_eq!(view(&sim, follow), (Some("gloria"), 2, 2));
    assert_eq!(view(&sim, free).0, Some("gloria"));
    assert_eq!(view(&sim, free).1, 2);
}

// ---------------------------------------------------------------------------------------------
// Follow / free (PROTOCOL.md §6.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn free_follower_ignores_set_page_but_applies_set_song() {
    let (mut sim, m, fs) = choir(2, 21);
    let (follow, free) = (fs[0], fs[1]);
    sim.command(m, song("kyrie"));
    sim.run_for(secs(1));
    sim.command(free, mode(FollowMode::Free));
    sim.command(free, page(8));
    sim.command(m, page(3));
    sim.run_for(secs(1));
    assert_eq!(view(&sim, follow), (Some("kyrie"), 1, 3));
    assert_eq!(view(&sim, free), (Some("kyrie"), 1, 8));
    sim.command(m, song("gloria"));
    sim.run_for(secs(1));
    assert_eq!(view(&sim, free), (Some("gloria"), 2, 0));
    assert_eq!(sim.follower(free).state(), FollowerState::ConnectedFree);
    sim.command(m, page(5));
    sim.run_for(secs(1));
    assert_eq!(view(&sim, free), (Some("gloria"), 2, 0));
    assert_eq!(view(&sim, follow), (Some("gloria"), 2, 5));
}

#[test]
fn free_to_follow_resyncs_at_once_without_a_round_trip() {
    let (mut sim, m, fs) = choir(1, 22);
    let f = fs[0];
    sim.command(m, song("kyrie"));
    sim.run_for(secs(1));
    sim.command(f, mode(FollowMode::Free));
    sim.command(m, page(6));
    sim.run_for(secs(1));
    assert_eq!(view(&sim, f), (Some("kyrie"), 1, 0));
    sim.clear_events();
    let before = sim.now;
    sim.command(f, mode(FollowMode::Follow));
    // no virtual time has passed: nothing could have crossed the network
    assert_eq!(sim.now, before);
    assert_eq!(view(&sim, f), (Some("kyrie"), 1, 6));
    assert!(sim.events_of(f).any(|e| matches!(
        e,
        Event::Page {
            page: 6,
            origin: Origin::Remote,
            ..
        }
    )));
}

// ---------------------------------------------------------------------------------------------
// Reconnection (PROTOCOL.md §6.3, §6.4)
// ---------------------------------------------------------------------------------------------

#[test]
fn rejoin_backoff_grows_with_jitter_then_caps_then_gives_up_until_retry() {
    let backoff = BackoffConfig {
        initial: secs(1),
        max: secs(8),
        factor: 2,
        jitter: 0.2,
        max_attempts: Some(7),
    };
    let (mut sim, m, fs) = choir_with(2, 23, MasterConfig::new("master"), |i| {
        let mut cfg = FollowerConfig::new(format!("f{i}"));
        cfg.backoff = backoff;
        cfg
    });
    sim.clear_events();
    sim.crash(m);
    sim.run_for(secs(120));
    let connect = sim.net.connect_time;
    let mut firsts = Vec::new();
    for &f in &fs {
        let lost = entered(&sim, f, "FOLLOWER_DISCONNECTED_LOCAL");
        let tries = entered(&sim, f, "FOLLOWER_REJOINING");
        assert_eq!(tries.len(), 7, "one dial per attempt, then stop");
        assert_eq!(lost.len(), 8, "the loss, then one failed dial per attempt");
        let waits: Vec<Duration> = tries.iter().zip(&lost).map(|(t, l)| t.since(*l)).collect();
        for (i, w) in waits.iter().enumerate() {
            let nominal = (1u64 << i).min(8) as f64;
            let s = w.as_secs_f64();
            assert!(
                s >= nominal * 0.8 - 1e-3 && s <= (nominal * 1.2).min(8.0) + 1e-3,
                "follower {f}, wait {i}: {s} s (nominal {nominal} s)"
            );
        }
        assert!(waits[3] > waits[0] * 3, "spacing grows: {waits:?}");
        assert!(
            waits[3..].iter().all(|w| *w <= secs(8)),
            "capped: {waits:?}"
        );
        // each failed dial takes connect_time: attempts are spaced by wait + dial
        assert_eq!(lost[1].since(tries[0]), connect);
        assert_eq!(
            count_events(&sim, f, |e| *e == Event::GaveUp { attempts: 7 }),
            1
        );
        assert_eq!(sim.follower(f).state(), FollowerState::DisconnectedLocal);
        firsts.push(waits[0]);
    }
    assert_ne!(firsts[0], firsts[1], "jitter spreads followers apart");

    // nothing happens on its own any more...
    sim.restart(m);
    sim.run_for(secs(60));
    assert_eq!(
        sim.follower(fs[0]).state(),
        FollowerState::DisconnectedLocal
    );
    // ...until the user asks: Retry dials at once, with a fresh schedule
    sim.clear_events();
    sim.command(fs[0], Command::Retry);
    assert_eq!(sim.follower(fs[0]).state(), FollowerState::Rejoining);
    sim.run_for(secs(1));
    assert_eq!(sim.follower(fs[0]).state(), FollowerState::ConnectedFollow);
    assert_eq!(
        sim.follower(fs[1]).state(),
        FollowerState::DisconnectedLocal
    );
}

#[test]
fn master_loss_keeps_pages_allows_local_navigation_and_follow_followers_resync_after_restart() {
    let (mut sim, m, fs) = choir(2, 24);
    let (follow, free) = (fs[0], fs[1]);
    sim.command(free, mode(FollowMode::Free));
    sim.command(m, song("kyrie"));
    sim.command(m, page(3));
    sim.run_for(secs(1));
    sim.command(free, page(10));
    let before = sim.master(m).record().clone();

    sim.crash(m);
    sim.run_for(secs(15));
    for &f in &fs {
        assert!(matches!(
            sim.follower(f).state(),
            FollowerState::DisconnectedLocal | FollowerState::Rejoining
        ));
    }
    // the last page stays on screen
    assert_eq!(view(&sim, follow), (Some("kyrie"), 1, 3));
    assert_eq!(view(&sim, free), (Some("kyrie"), 1, 10));
    // local navigation is not blocked
    sim.command(follow, page(5));
    assert_eq!(view(&sim, follow), (Some("kyrie"), 1, 5));
    assert!(sim.events_of(follow).any(|e| matches!(
        e,
        Event::Page {
            page: 5,
            origin: Origin::Local,
            ..
        }
    )));

    sim.restart(m);
    let after = sim.master(m).record().clone();
    assert_eq!(after.session_id, before.session_id);
    assert_eq!(after.token, before.token);
    assert_eq!(sim.master(m).page().page_index, 3);
    sim.run_for(secs(40));
    assert_eq!(sim.follower(follow).state(), FollowerState::ConnectedFollow);
    assert_eq!(sim.follower(free).state(), FollowerState::ConnectedFree);
    // follow resyncs to the master, free keeps its own page
    assert_eq!(view(&sim, follow), (Some("kyrie"), 1, 3));
    assert_eq!(view(&sim, free), (Some("kyrie"), 1, 10));
    sim.command(m, page(4));
    sim.run_for(secs(1));
    assert_eq!(view(&sim, follow), (Some("kyrie"), 1, 4));
    assert_eq!(view(&sim, free), (Some("kyrie"), 1, 10));
}

#[test]
fn follower_restarted_from_its_record_rejoins_by_token() {
    let (mut sim, m, fs) = choir(1, 43);
    let f = fs[0];
    sim.command(f, mode(FollowMode::Free));
    sim.command(m, song("kyrie"));
    sim.run_for(secs(1));
    let token = sim.master(m).record().token.clone();
    assert!(
        matches!(&sim.nodes[f].record, Some(Record::Follower(r)) if r.token.as_deref() == Some(token.as_str()))
    );
    sim.crash(f);
    sim.run_for(secs(12)); // the master notices the silence
    assert_eq!(sim.master(m).state(), MasterState::ReconnectingLinks);
    sim.clear_events();
    sim.restart(f);
    sim.run_for(secs(1));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFree);
    assert!(sim
        .events_of(f)
        .any(|e| matches!(e, Event::Joined { rejoin: true, .. })));
    assert_eq!(view(&sim, f).0, Some("kyrie"));
    assert_eq!(sim.master(m).state(), MasterState::SessionActive);
}

#[test]
fn network_changed_makes_a_disconnected_follower_retry_at_once() {
    let backoff = BackoffConfig {
        initial: secs(20),
        jitter: 0.0,
        ..Default::default()
    };
    let (mut sim, m, fs) = choir_with(2, 25, MasterConfig::new("master"), |i| {
        let mut cfg = FollowerConfig::new(format!("f{i}"));
        cfg.backoff = backoff;
        cfg
    });
    for &f in &fs {
        sim.cut(m, f);
    }
    sim.run_for(secs(1));
    sim.network_changed(fs[0]);
    assert_eq!(sim.follower(fs[0]).state(), FollowerState::Rejoining);
    sim.run_for(ms(100));
    assert_eq!(sim.follower(fs[0]).state(), FollowerState::ConnectedFollow);
    // the other one still waits for its 20 s backoff
    assert_eq!(
        sim.follower(fs[1]).state(),
        FollowerState::DisconnectedLocal
    );
}

// ---------------------------------------------------------------------------------------------
// Session end (PROTOCOL.md §6.2, §6.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn session_end_sends_followers_to_idle_local_clears_stream_and_stored_token() {
    let (mut sim, m, fs) = choir(2, 26);
    sim.command(m, song("kyrie"));
    sim.command(m, Command::StreamPrepare(stream("kyrie-pdf")));
    sim.run_for(secs(1));
    assert!(sim.follower(fs[0]).stream().is_some());
    sim.clear_events();
    sim.command(m, Command::End);
    sim.run_for(secs(1));
    for &f in &fs {
        let fl = sim.follower(f);
        assert_eq!(fl.state(), FollowerState::IdleLocal);
        assert_eq!(fl.stream(), None);
        assert_eq!(fl.token(), None);
        assert_eq!(fl.session_id(), "");
        assert_eq!(fl.participants().count(), 0);
        assert_eq!(fl.count(), 0, "no participants are shown outside a session");
        assert_eq!(count_events(&sim, f, |e| *e == Event::SessionEnded), 1);
        assert_eq!(count_events(&sim, f, |e| *e == Event::StreamCleared), 1);
        assert_eq!(states(&sim, f), ["FOLLOWER_IDLE_LOCAL"]);
        assert_eq!(sim.nodes[f].record, Some(Record::Cleared));
        // the page stays on screen
        assert_eq!(view(&sim, f).0, Some("kyrie"));
    }
    // and nobody tries to rejoin an ended session
    sim.run_for(secs(60));
    for &f in &fs {
        assert!(entered(&sim, f, "FOLLOWER_REJOINING").is_empty());
    }
}

#[test]
fn ended_session_token_is_refused_as_session_ended_also_after_master_restart() {
    let (mut sim, m, _fs) = choir(1, 27);
    let token = sim.master(m).record().token.clone();
    sim.command(m, Command::End);
    sim.run_for(secs(1));
    let newcomer = sim.add_follower(FollowerConfig::new("newcomer"), m);
    sim.command(newcomer, join_token(&token));
    sim.run_for(secs(1));
    assert_eq!(rejections(&sim, newcomer), [RejectReason::SessionEnded]);
    assert_eq!(sim.follower(newcomer).state(), FollowerState::IdleLocal);

    sim.crash(m);
    sim.restart(m);
    assert_eq!(sim.master(m).state(), MasterState::SessionEnded);
    let again = sim.add_follower(FollowerConfig::new("again"), m);
    sim.command(again, join_token(&token));
    sim.run_for(secs(1));
    assert_eq!(rejections(&sim, again), [RejectReason::SessionEnded]);
    assert_eq!(sim.follower(again).state(), FollowerState::IdleLocal);
}

#[test]
fn follower_that_missed_session_end_is_told_session_ended_when_it_retries() {
    let (mut sim, m, fs) = choir(2, 28);
    let away = fs[1];
    sim.cut(m, away);
    sim.partition(m, away);
    sim.command(m, Command::End);
    sim.run_for(secs(1));
    assert_eq!(sim.follower(away).state(), FollowerState::DisconnectedLocal);
    sim.heal();
    sim.run_for(secs(40));
    assert_eq!(rejections(&sim, away), [RejectReason::SessionEnded]);
    assert_eq!(sim.follower(away).state(), FollowerState::IdleLocal);
    assert_eq!(sim.follower(away).token(), None);
    assert_eq!(sim.nodes[away].record, Some(Record::Cleared));
}

// ---------------------------------------------------------------------------------------------
// Streamed score (PROTOCOL.md §5 STREAM_PREPARE, §11.5)
// ---------------------------------------------------------------------------------------------

#[test]
fn stream_prepare_reaches_followers_and_stream_clear_clears_it() {
    let (mut sim, m, fs) = choir(2, 29);
    sim.command(m, song("kyrie"));
    sim.command(m, Command::StreamPrepare(stream("kyrie-pdf")));
    sim.run_for(secs(1));
    for &f in &fs {
        let s = sim.follower(f).stream().expect("stream announced");
        assert_eq!(s.stream_id, "kyrie-pdf");
        assert_eq!(s.song_epoch, 1, "bound to the current song");
        assert!(sim
            .events_of(f)
            .any(|e| matches!(e, Event::StreamPrepared(s) if s.stream_id == "kyrie-pdf")));
    }
    // a follower joining now gets the stream with its snapshot
    let token = sim.master(m).record().token.clone();
    let late = sim.add_follower(FollowerConfig::new("late"), m);
    sim.command(late, join_token(&token));
    sim.run_for(secs(1));
    assert_eq!(sim.follower(late).stream().unwrap().stream_id, "kyrie-pdf");

    sim.command(m, Command::StreamClear);
    sim.run_for(secs(1));
    for f in [fs[0], fs[1], late] {
        assert_eq!(sim.follower(f).stream(), None);
        assert_eq!(count_events(&sim, f, |e| *e == Event::StreamCleared), 1);
    }
}

#[test]
fn song_change_clears_the_stream() {
    let (mut sim, m, fs) = choir(1, 30);
    let f = fs[0];
    sim.command(m, song("kyrie"));
    sim.command(m, Command::StreamPrepare(stream("kyrie-pdf")));
    sim.run_for(secs(1));
    assert!(sim.follower(f).stream().is_some());
    sim.command(m, song("gloria"));
    sim.run_for(secs(1));
    assert_eq!(sim.follower(f).stream(), None);
    assert_eq!(count_events(&sim, f, |e| *e == Event::StreamCleared), 1);
    assert_eq!(sim.master(m).record().stream, None);
}

// ---------------------------------------------------------------------------------------------
// Presence (C8)
// ---------------------------------------------------------------------------------------------

#[test]
fn joins_and_leaves_show_in_presence_on_master_and_other_followers() {
    let mut sim = Sim::new(31);
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    let alto = sim.add_follower(FollowerConfig::new("alto"), m);
    sim.command(alto, join_token(&token));
    sim.run_for(secs(1));
    let bass = sim.add_follower(FollowerConfig::new("bass"), m);
    sim.command(bass, join_token(&token));
    sim.run_for(secs(1));

    assert_eq!(joined_ids(&sim, m), ["alto", "bass"]);
    assert_eq!(sim.master(m).count(), 3);
    let list = sim.master(m).participants();
    assert_eq!(
        (list[0].id.as_str(), list[0].role),
        ("master", Role::Master)
    );
    assert!(list[1..].iter().all(|p| p.role == Role::Follower));
    // alto heard about bass; bass got the whole list when it joined
    assert!(joined_ids(&sim, alto).contains(&"bass".to_string()));
    for f in [alto, bass] {
        assert_eq!(sim.follower(f).count(), 3);
        let master = sim
            .follower(f)
            .participants()
            .find(|p| p.id == "master")
            .unwrap();
        assert_eq!(master.role, Role::Master);
    }

    sim.cut(m, bass);
    sim.partition(m, bass);
    sim.run_for(secs(1));
    assert_eq!(left_ids(&sim, m), ["bass"]);
    assert_eq!(left_ids(&sim, alto), ["bass"]);
    assert_eq!(sim.master(m).count(), 2);
    assert_eq!(sim.follower(alto).count(), 2);
    sim.heal();
    sim.run_for(secs(30));
    assert_eq!(joined_ids(&sim, m), ["alto", "bass", "bass"]);
    assert_eq!(sim.follower(alto).count(), 3);
}

#[test]
fn leave_session_removes_the_participant() {
    let (mut sim, m, fs) = choir(2, 32);
    sim.clear_events();
    sim.command(fs[1], Command::Leave);
    assert_eq!(sim.follower(fs[1]).state(), FollowerState::IdleLocal);
    assert_eq!(sim.nodes[fs[1]].record, Some(Record::Cleared));
    assert_eq!(sim.follower(fs[1]).count(), 0);
    sim.run_for(secs(1));
    assert_eq!(left_ids(&sim, m), ["f1"]);
    assert_eq!(left_ids(&sim, fs[0]), ["f1"]);
    assert!(sim.master(m).participants().iter().all(|p| p.id != "f1"));
    assert!(sim.follower(fs[0]).participants().all(|p| p.id != "f1"));
    assert_eq!(sim.master(m).count(), 2);
    // a leaver is gone, not disconnected: the master is not waiting for anyone
    assert_eq!(sim.master(m).state(), MasterState::SessionActive);
}

#[test]
fn disconnected_participant_expires_to_left_after_participant_expiry() {
    let mut mcfg = MasterConfig::new("master");
    mcfg.participant_expiry = secs(20);
    let (mut sim, m, fs) = choir_with(2, 33, mcfg, |i| FollowerConfig::new(format!("f{i}")));
    sim.crash(fs[1]); // gone without a word; the heartbeat notices after 10 s
    sim.run_for(secs(12));
    let status = |sim: &Sim| {
        sim.master(m)
            .participants()
            .iter()
            .find(|p| p.id == "f1")
            .map(|p| p.status)
    };
    assert_eq!(status(&sim), Some(PresenceStatus::Disconnected));
    assert_eq!(sim.master(m).state(), MasterState::ReconnectingLinks);
    let seen_by_f0 = sim
        .follower(fs[0])
        .participants()
        .find(|p| p.id == "f1")
        .unwrap();
    assert_eq!(seen_by_f0.status, PresenceStatus::Disconnected);
    sim.run_for(secs(15)); // 10 s to notice + 20 s expiry < 27 s
    assert_eq!(status(&sim), Some(PresenceStatus::Disconnected));
    sim.run_for(secs(5));
    assert_eq!(status(&sim), None);
    assert!(sim.follower(fs[0]).participants().all(|p| p.id != "f1"));
    assert_eq!(sim.master(m).state(), MasterState::SessionActive);
}

#[test]
fn fifty_followers_joining_at_once_cost_few_presence_broadcasts() {
    let mut sim = Sim::new(34);
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    sim.net.jitter = ms(30);
    // The join's own cost: the clock probes that follow a join are counted in shared_clock.rs.
    let fs: Vec<NodeId> = (0..50)
        .map(|i| {
            let mut cfg = FollowerConfig::new(format!("f{i}"));
            cfg.clock_burst = 0;
            sim.add_follower(cfg, m)
        })
        .collect();
    for &f in &fs {
        sim.command(f, join_token(&token));
    }
    sim.run_for(ms(500));
    assert_eq!(sim.master(m).count(), 51);
    for &f in &fs {
        assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
        assert_eq!(sim.follower(f).count(), 51);
    }
    // one PRESENCE broadcast per batch; unbatched would be one per join (50)
    let broadcasts = count_events(&sim, m, |e| matches!(e, Event::Presence { .. }));
    assert!(broadcasts <= 2, "{broadcasts} presence broadcasts");
    // the whole join costs a handful of messages per follower (unbatched: 1275 PRESENCE alone)
    assert!(sim.sent <= 50 * 8, "{} messages", sim.sent);
}

// ---------------------------------------------------------------------------------------------
// Envelope rules (PROTOCOL.md §2, §3)
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicated_messages_are_applied_once() {
    let mut sim = Sim::new(35);
    sim.net.duplicate = 0.5;
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    let fs: Vec<NodeId> = (0..3)
        .map(|i| sim.add_follower(FollowerConfig::new(format!("f{i}")), m))
        .collect();
    for &f in &fs {
        sim.command(f, join_token(&token));
    }
    sim.run_for(secs(1));
    sim.command(m, song("kyrie"));
    for p in 1..=10 {
        sim.run_for(ms(50));
        sim.command(m, page(p));
    }
    sim.run_for(secs(1));
    let expected: Vec<(u64, u32)> = (0..=10).map(|p| (1, p)).collect();
    for &f in &fs {
        assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
        assert_eq!(shown(&sim, f), expected, "follower {f}");
        assert_eq!(
            count_events(&sim, f, |e| matches!(e, Event::Joined { .. })),
            1
        );
    }
    assert_eq!(joined_ids(&sim, m), ["f0", "f1", "f2"]);
}

#[test]
fn unknown_message_types_and_garbage_are_ignored() {
    let (mut sim, m, fs) = choir(1, 36);
    let f = fs[0];
    let sid = sim.master(m).record().session_id.clone();
    sim.clear_events();
    let to_f = sim.peer_to(f, m).unwrap();
    let to_m = sim.peer_to(m, f).unwrap();
    let future = raw("SET_TEMPO", &sid, "master", 1, r#"{"bpm":96}"#);
    sim.inject(f, to_f, &future);
    let future = raw("RAISE_HAND", &sid, "f0", 1, r#"{"hand":"left"}"#);
    sim.inject(m, to_m, &future);
    sim.inject(f, to_f, b"\x00\xffnot json at all");
    sim.inject(m, to_m, br#"{"v":1,"type":"SET_PAGE"}"#);
    sim.command(m, page(3));
    sim.run_for(secs(1));
    assert_eq!(view(&sim, f).2, 3);
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    assert_eq!(sim.master(m).state(), MasterState::SessionActive);
    assert!(!sim
        .events
        .iter()
        .any(|l| matches!(l.event, Event::Error { .. })));
    assert!(left_ids(&sim, m).is_empty(), "no link was dropped");
}

#[test]
fn unknown_fields_are_ignored() {
    let (mut sim, m, fs) = choir(1, 37);
    let f = fs[0];
    let sid = sim.master(m).record().session_id.clone();
    let to_f = sim.peer_to(f, m).unwrap();
    let to_m = sim.peer_to(m, f).unwrap();
    // a newer master adds an envelope field and payload fields this version does not know
    let msg = format!(
        r#"{{"v":1,"trace":"abc","session_id":"{sid}","sender_id":"master","type":"SET_PAGE","ts":{EPOCH_MS},"seq":1000000,"payload":{{"song_id":null,"song_epoch":0,"page_revision":50,"page_index":8,"turn_style":"curl","colour":[1,2]}},"signature":"zz"}}"#
    );
    sim.inject(f, to_f, msg.as_bytes());
    assert_eq!(view(&sim, f).2, 8);
    // and a newer follower does the same
    let msg = raw(
        "SET_FOLLOW_MODE",
        &sid,
        "f0",
        1_000_000,
        r#"{"mode":"free","reason":"solo passage","since":12}"#,
    );
    sim.inject(m, to_m, &msg);
    assert_eq!(
        sim.master(m).participants()[1].follow_mode,
        FollowMode::Free
    );
}

#[test]
fn messages_on_a_stale_link_are_ignored() {
    let (mut sim, m, fs) = choir(1, 38);
    let f = fs[0];
    let old_f = sim.peer_to(f, m).unwrap();
    let old_m = sim.peer_to(m, f).unwrap();
    sim.cut(m, f);
    sim.run_for(secs(5));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    let new_f = sim.peer_to(f, m).unwrap();
    assert_ne!(new_f, old_f);

    // a late message on the old link, newer than anything on the new one
    let late = forged_set_page(&sim, m, 0, 1000, 77);
    sim.inject(f, old_f, &late);
    assert_eq!(view(&sim, f).2, 0);
    let sid = sim.master(m).record().session_id.clone();
    let late = raw(
        "SET_FOLLOW_MODE",
        &sid,
        "f0",
        1_000_000,
        r#"{"mode":"free"}"#,
    );
    sim.inject(m, old_m, &late);
    assert_eq!(
        sim.master(m).participants()[1].follow_mode,
        FollowMode::Follow
    );
    // the same message on the live link is applied
    let live = forged_set_page(&sim, m, 0, 1000, 77);
    sim.inject(f, new_f, &live);
    assert_eq!(view(&sim, f).2, 77);
}

/// Regression: a SET_PAGE overtaken on a reordering path by a later message of another kind
/// (here STREAM_PREPARE; in practice often a PONG) must still be applied, because state messages
/// are ordered by (song epoch, page revision), not by the envelope's per-link `seq`.
#[test]
fn set_page_overtaken_by_an_unrelated_message_is_still_applied() {
    let (mut sim, m, fs) = choir(8, 44);
    sim.command(m, song("kyrie"));
    sim.run_for(secs(1));
    sim.net.jitter = ms(30);
    sim.command(m, page(5));
    sim.command(m, Command::StreamPrepare(stream("kyrie-pdf")));
    sim.run_for(ms(200));
    let behind: Vec<NodeId> = fs
        .iter()
        .copied()
        .filter(|&f| view(&sim, f).2 != 5)
        .collect();
    assert!(
        behind.is_empty(),
        "followers still on the old page: {behind:?}"
    );
}

#[test]
fn periodic_state_snapshot_repairs_a_follower_that_missed_a_page() {
    let (mut sim, m, fs) = choir(2, 39);
    let (ok, missed) = (fs[0], fs[1]);
    sim.command(m, song("kyrie"));
    sim.run_for(secs(1));
    sim.partition(m, missed); // SET_PAGE to this one is lost; the link survives
    sim.command(m, page(5));
    sim.run_for(ms(100));
    sim.heal();
    sim.run_for(ms(100));
    assert_eq!(view(&sim, ok), (Some("kyrie"), 1, 5));
    assert_eq!(view(&sim, missed), (Some("kyrie"), 1, 0));
    sim.run_for(secs(6)); // > snapshot_interval (5 s)
    assert_eq!(view(&sim, missed), (Some("kyrie"), 1, 5));
    assert!(entered(&sim, missed, "FOLLOWER_DISCONNECTED_LOCAL").is_empty());
}

// ---------------------------------------------------------------------------------------------
// L1 link health
// ---------------------------------------------------------------------------------------------

fn link_states(sim: &Sim, n: NodeId) -> Vec<lansync::session::LinkState> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::Link { state, .. } => Some(*state),
            _ => None,
        })
        .collect()
}

#[test]
fn silence_marks_the_link_degraded_and_traffic_brings_it_back() {
    use lansync::session::LinkState::{Connected, Degraded};
    let (mut sim, m, fs) = choir(1, 40);
    let f = fs[0];
    sim.clear_events();
    sim.partition(m, f); // silence, no close
    sim.run_for(ms(2400)); // silence is counted from the last message, at most 1 s earlier
    assert!(
        link_states(&sim, f).is_empty(),
        "a short silence is still healthy"
    );
    sim.run_for(ms(2600));
    assert_eq!(link_states(&sim, f), [Degraded]);
    assert_eq!(link_states(&sim, m), [Degraded]);
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    sim.heal();
    sim.run_for(secs(2));
    assert_eq!(link_states(&sim, f), [Degraded, Connected]);
    assert_eq!(link_states(&sim, m), [Degraded, Connected]);
    assert!(states(&sim, f).is_empty(), "no rejoin was needed");
}

#[test]
fn dead_link_is_closed_and_the_follower_rejoins() {
    let (mut sim, m, fs) = choir(1, 41);
    let f = fs[0];
    sim.clear_events();
    sim.partition(m, f);
    sim.run_for(secs(11)); // dead_after is 10 s
    assert!(sim.peer_to(f, m).is_none(), "the dead link was closed");
    assert_eq!(sim.master(m).state(), MasterState::ReconnectingLinks);
    assert_eq!(states(&sim, f)[0], "FOLLOWER_DISCONNECTED_LOCAL");
    sim.heal();
    sim.run_for(secs(40));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    assert_eq!(sim.master(m).state(), MasterState::SessionActive);
}

#[test]
fn flooding_peer_is_rate_limited_and_the_master_keeps_serving_others() {
    let (mut sim, m, fs) = choir(2, 42);
    let (flooder, other) = (fs[0], fs[1]);
    let sid = sim.master(m).record().session_id.clone();
    let link = sim.peer_to(m, flooder).unwrap();
    let before = sim.sent;
    for i in 0..1000 {
        let ping = raw(
            "PING",
            &sid,
            "f0",
            1_000_000 + i,
            &format!(r#"{{"id":{i},"t0":1}}"#),
        );
        sim.inject(m, link, &ping);
    }
    let pongs = sim.sent - before;
    // the default bucket holds 200 messages: the rest of the flood is dropped unanswered
    assert!((150..=200).contains(&pongs), "{pongs} PINGs answered");
    sim.command(m, page(3));
    sim.run_for(ms(50));
    assert_eq!(view(&sim, other).2, 3);
    assert_eq!(sim.master(m).state(), MasterState::SessionActive);
}

// ---------------------------------------------------------------------------------------------
// Admission and identity (PROTOCOL.md §6.2, §9.3, §9.4): a member's id is only its own
// ---------------------------------------------------------------------------------------------

/// A follower whose display name differs from its id, so a list shows who is who.
fn named(id: &str, name: &str) -> FollowerConfig {
    let mut cfg = FollowerConfig::new(id);
    cfg.device_name = name.into();
    cfg
}

fn door(
    sim: &Sim,
    m: NodeId,
    auth: DoorAuth,
    code: Option<&str>,
    id: &str,
) -> lansync::session::DoorReply {
    let q = DoorQuery {
        auth,
        session_code: code.map(Into::into),
        device_id: id.into(),
    };
    sim.master(m).door(Time::from_millis(EPOCH_MS), &q)
}

/// The name the master lists a participant under.
fn listed_name(sim: &Sim, m: NodeId, id: &str) -> Option<String> {
    sim.master(m)
        .participants()
        .into_iter()
        .find(|p| p.id == id)
        .map(|p| p.name)
}

#[test]
fn a_members_device_id_cannot_be_taken_by_a_token_or_code_join() {
    let mut sim = Sim::new(70);
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    let code = sim.master(m).record().session_code.as_str().to_string();
    let victim = sim.add_follower(named("victim", "Victim"), m);
    sim.command(victim, join_token(&token));
    sim.run_for(secs(1));
    assert_eq!(sim.follower(victim).state(), FollowerState::ConnectedFollow);

    // Two impostors claim the victim's id, one with the QR token, one with the code.
    let by_token = sim.add_follower(named("victim", "evil"), m);
    let by_code = sim.add_follower(named("victim", "evil2"), m);
    sim.command(by_token, join_token(&token));
    sim.command(by_code, join_code(&code, None));
    sim.run_for(secs(5));
    for f in [by_token, by_code] {
        assert_eq!(rejections(&sim, f), [RejectReason::DeviceIdTaken]);
        assert_eq!(sim.follower(f).state(), FollowerState::IdleLocal);
    }
    // The victim was never displaced and is listed under its own name.
    assert_eq!(sim.follower(victim).state(), FollowerState::ConnectedFollow);
    assert_eq!(listed_name(&sim, m, "victim").as_deref(), Some("Victim"));
    assert_eq!(
        count_events(&sim, m, |e| matches!(e, Event::ParticipantLeft(_))),
        0
    );
    assert_eq!(sim.master(m).count(), 2);
    // Nor can anyone take the master's own id.
    let fake_master = sim.add_follower(named("master", "evil"), m);
    sim.command(fake_master, join_token(&token));
    sim.run_for(secs(1));
    assert_eq!(rejections(&sim, fake_master), [RejectReason::DeviceIdTaken]);
}

#[test]
fn a_member_rejoins_with_its_secret_also_after_a_master_restart_and_an_impostor_still_cannot() {
    let mut sim = Sim::new(71);
    let (m, code) = password_master(&mut sim);
    let f = sim.add_follower(named("alto", "Alto"), m);
    sim.command(f, join_code(&code, Some("tenor-2024")));
    sim.run_for(secs(1));
    let secret = sim
        .follower(f)
        .member_secret()
        .expect("a member secret")
        .to_string();
    assert!(matches!(&sim.nodes[m].record, Some(Record::Master(r))
        if r.members.get("alto").map(|x| x.secret.as_str()) == Some(secret.as_str())));

    // A lost link: the follower rejoins by its secret.
    sim.cut(m, f);
    sim.run_for(secs(5));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);

    // The master crashes and restarts from its record; so does the follower.
    sim.crash(m);
    sim.crash(f);
    sim.run_for(secs(1));
    sim.restart(m);
    sim.restart(f);
    sim.run_for(secs(15));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    assert_eq!(sim.follower(f).member_secret(), Some(secret.as_str()));
    assert!(rejections(&sim, f).is_empty());

    // The restarted master still knows whose id it is.
    let token = sim.master(m).record().token.clone();
    let evil = sim.add_follower(named("alto", "evil"), m);
    sim.command(evil, join_token(&token));
    sim.run_for(secs(1));
    assert_eq!(rejections(&sim, evil), [RejectReason::DeviceIdTaken]);
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    assert_eq!(listed_name(&sim, m, "alto").as_deref(), Some("Alto"));
}

#[test]
fn leaving_for_good_frees_the_device_id() {
    let (mut sim, m, fs) = choir(1, 72);
    let token = sim.master(m).record().token.clone();
    sim.command(fs[0], Command::Leave);
    sim.run_for(secs(1));
    let again = sim.add_follower(named("f0", "new tablet"), m);
    sim.command(again, join_token(&token));
    sim.run_for(secs(1));
    assert_eq!(sim.follower(again).state(), FollowerState::ConnectedFollow);
    assert_eq!(listed_name(&sim, m, "f0").as_deref(), Some("new tablet"));
}

#[test]
fn a_message_claiming_another_members_id_is_the_links_members() {
    let (mut sim, m, fs) = choir(2, 73);
    let sid = sim.master(m).record().session_id.clone();
    let a_link = sim.peer_to(m, fs[0]).unwrap();
    // f0 sends, on its own link, messages whose envelopes claim to be f1's.
    let follow = raw(
        "SET_FOLLOW_MODE",
        &sid,
        "f1",
        1_000_000,
        r#"{"mode":"free"}"#,
    );
    sim.inject(m, a_link, &follow);
    let key = raw(
        "KEY_SET",
        &sid,
        "f1",
        1_000_001,
        &format!(
            r#"{{"key":"view.zoom","value":2,"policy":"lww","stamp":{{"ts":{EPOCH_MS},"sender_id":"f1"}}}}"#
        ),
    );
    sim.inject(m, a_link, &key);
    sim.run_for(ms(200));
    let mode_of = |id: &str| {
        sim.master(m)
            .participants()
            .into_iter()
            .find(|p| p.id == id)
            .map(|p| p.follow_mode)
    };
    assert_eq!(mode_of("f0"), Some(FollowMode::Free), "f0 changed itself");
    assert_eq!(mode_of("f1"), Some(FollowMode::Follow), "f1 untouched");
    let zoom = sim
        .master(m)
        .keys()
        .get("view.zoom")
        .cloned()
        .expect("key applied");
    assert_eq!(zoom.stamp.sender_id, "f0", "written by the link's member");
}

#[test]
fn a_join_request_on_a_link_admitted_as_one_id_claiming_another_is_refused() {
    let now = Time::from_millis(EPOCH_MS);
    let mut master = Master::new(MasterConfig::new("master"), now, [5; 32]);
    let sid = master.record().session_id.clone();
    let token = master.record().token.clone();
    while master.poll_output().is_some() {}
    let join = |sender: &str| {
        raw(
            "JOIN_REQUEST",
            &sid,
            sender,
            1,
            &format!(r#"{{"token":"{token}","device_name":"x"}}"#),
        )
    };
    master.handle(now, Input::AdmittedLinkUp(1, "alice"));
    master.handle(now, Input::Received(1, &join("bob")));
    let outs: Vec<Output> = std::iter::from_fn(|| master.poll_output()).collect();
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Send(1, t) if t.contains("JOIN_REJECT") && t.contains("device_id_taken"))));
    assert!(outs.contains(&Output::Close(1)));
    assert_eq!(master.count(), 1);
    // The same link joining as the id it was admitted as is accepted.
    master.handle(now, Input::AdmittedLinkUp(2, "alice"));
    master.handle(now, Input::Received(2, &join("alice")));
    let outs: Vec<Output> = std::iter::from_fn(|| master.poll_output()).collect();
    assert!(outs.iter().any(
        |o| matches!(o, Output::Send(2, t) if t.contains("JOIN_ACCEPT") && !t.contains(&token))
    ));
    assert_eq!(master.count(), 2);
}

#[test]
fn the_door_names_the_secret_to_prove_and_the_verdict_the_machine_holds() {
    let mut cfg = MasterConfig::new("master");
    cfg.max_followers = 1;
    cfg.password = Some("tenor-2024".into());
    let mut sim = Sim::new(74);
    let m = sim.add_master(cfg);
    let token = sim.master(m).record().token.clone();
    let code = sim.master(m).record().session_code.as_str().to_string();

    // Before anyone joined: token and code name their secrets, a wrong code names none.
    let r = door(&sim, m, DoorAuth::Token, None, "f0");
    assert_eq!(r.secret, Some(DoorSecret::Token(token.clone())));
    assert_eq!(r.verdict, Ok(()));
    let sloppy = code.to_lowercase().replace('-', "");
    let r = door(&sim, m, DoorAuth::Code, Some(&sloppy), "f0");
    assert_eq!(
        r.secret,
        Some(DoorSecret::Code {
            code: code.clone(),
            password: "tenor-2024".into()
        })
    );
    let other = if code == "ABCD-EFGH" {
        "HGFE-DCBA"
    } else {
        "ABCD-EFGH"
    };
    assert_eq!(
        door(&sim, m, DoorAuth::Code, Some(other), "f0").secret,
        None
    );
    assert_eq!(door(&sim, m, DoorAuth::Member, None, "f0").secret, None);
    assert_eq!(
        door(&sim, m, DoorAuth::Token, None, "master").verdict,
        Err(RejectReason::DeviceIdTaken)
    );

    let f = sim.add_follower(FollowerConfig::new("f0"), m);
    sim.command(f, join_token(&token));
    sim.run_for(secs(1));
    let secret = sim.follower(f).member_secret().unwrap().to_string();
    // A member's id: taken for token and code, its own secret for a rejoin, full or not.
    assert_eq!(
        door(&sim, m, DoorAuth::Token, None, "f0").verdict,
        Err(RejectReason::DeviceIdTaken)
    );
    assert_eq!(
        door(&sim, m, DoorAuth::Code, Some(&code), "f0").verdict,
        Err(RejectReason::DeviceIdTaken)
    );
    let r = door(&sim, m, DoorAuth::Member, None, "f0");
    assert_eq!(r.secret, Some(DoorSecret::Member(secret)));
    assert_eq!(r.verdict, Ok(()));
    // A newcomer: the session is full (one follower at most).
    assert_eq!(
        door(&sim, m, DoorAuth::Token, None, "f1").verdict,
        Err(RejectReason::SessionFull)
    );
    // Ended: every verdict says so.
    sim.command(m, Command::End);
    sim.run_for(secs(1));
    for (auth, id) in [(DoorAuth::Token, "f1"), (DoorAuth::Member, "f0")] {
        assert_eq!(
            door(&sim, m, auth, None, id).verdict,
            Err(RejectReason::SessionEnded)
        );
    }
}

#[test]
fn a_link_joined_as_one_member_cannot_join_again_as_another() {
    let (mut sim, m, fs) = choir(2, 75);
    let sid = sim.master(m).record().session_id.clone();
    let token = sim.master(m).record().token.clone();
    let a_link = sim.peer_to(m, fs[0]).unwrap();
    let join_as_f1 = raw(
        "JOIN_REQUEST",
        &sid,
        "f1",
        1_000_000,
        &format!(r#"{{"token":"{token}","device_name":"evil"}}"#),
    );
    sim.inject(m, a_link, &join_as_f1);
    sim.run_for(ms(200));
    assert_eq!(listed_name(&sim, m, "f1").as_deref(), Some("Follower"));
    assert_eq!(sim.follower(fs[1]).state(), FollowerState::ConnectedFollow);
    assert_eq!(
        count_events(
            &sim,
            m,
            |e| matches!(e, Event::ParticipantLeft(p) if p.id == "f1")
        ),
        0
    );
}

#[test]
fn the_master_remembers_at_most_1024_member_secrets_and_forgets_the_oldest_absent_one_first() {
    let mut now = Time::from_millis(EPOCH_MS);
    let mut master = Master::new(MasterConfig::new("master"), now, [6; 32]);
    let sid = master.record().session_id.clone();
    let token = master.record().token.clone();
    let drain = |m: &mut Master| while m.poll_output().is_some() {};
    let join = |m: &mut Master, now: Time, peer: u64, id: &str| {
        let req = raw(
            "JOIN_REQUEST",
            &sid,
            id,
            1,
            &format!(r#"{{"token":"{token}"}}"#),
        );
        m.handle(now, Input::LinkUp(peer));
        m.handle(now, Input::Received(peer, &req));
    };
    // The first member stays connected throughout: it is never forgotten.
    join(&mut master, now, 0, "keeper");
    drain(&mut master);
    for batch in 0..11u64 {
        now = now + secs(1);
        for i in batch * 100..((batch + 1) * 100).min(1024) {
            join(&mut master, now, i + 1, &format!("d{i}"));
            master.handle(now, Input::LinkDown(i + 1));
            drain(&mut master);
        }
        // Absent long enough to be listed as left (and dropped from the participant list);
        // the keeper's link stays alive.
        for step in [121, 1] {
            now = now + secs(step);
            let seq = now.as_millis();
            let ping = raw("PING", &sid, "keeper", seq, r#"{"id":1,"t0":1}"#);
            master.handle(now, Input::Received(0, &ping));
            master.handle(now, Input::Timeout);
        }
        drain(&mut master);
    }
    let members = &master.record().members;
    assert_eq!(members.len(), 1024, "keeper and d1..d1023: d0 went");
    assert!(members.contains_key("keeper"));
    assert!(!members.contains_key("d0"));
    assert!(members.contains_key("d1") && members.contains_key("d1023"));
}
