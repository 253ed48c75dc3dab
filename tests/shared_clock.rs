//! The shared clock on the simulated network (PROTOCOL.md §12): clock offsets, shared
//! playback, timed page turns, control modes, synced keys and their limits. Links carry 20 ms
//! ± 10 ms of one-way delay and every follower's clock is skewed, as on a real LAN; `Sim` records
//! the virtual (global) time of every event, so "together" is measured, not assumed.

mod sim;

use lansync::protocol::{
    ControlMode, Direction, KeyPolicy, LoopMode, PlaybackOp, Rate, MAX_RATE, ZOOM_RANGE,
};
use lansync::session::{
    Command, Event, FollowerConfig, FollowerState, JoinCredentials, MasterConfig, Origin, Record,
    Time,
};
use serde_json::json;
use sim::{NodeId, Sim, EPOCH_MS};
use std::collections::BTreeSet;
use std::time::Duration;

/// One frame at 24 fps, µs.
const FRAME_US: u64 = 41_667;
/// Follower clock skews, ms: 50 ms either way, and some in between.
const SKEWS_MS: [i64; 6] = [50, -50, 50, -50, 20, -35];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A master and one follower per skew, on 20 ms ± 10 ms links, joined and settled for 2 s.
fn room(seed: u64, skews_ms: &[i64]) -> (Sim, NodeId, Vec<NodeId>) {
    room_with(seed, skews_ms, |i| FollowerConfig::new(format!("f{i}")))
}

fn room_with(
    seed: u64,
    skews_ms: &[i64],
    follower: impl Fn(usize) -> FollowerConfig,
) -> (Sim, NodeId, Vec<NodeId>) {
    let mut sim = Sim::new(seed);
    sim.net.delay = ms(10);
    sim.net.jitter = ms(20); // uniform in [10, 30) ms: 20 ms ± 10 ms
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    let fs: Vec<NodeId> = skews_ms
        .iter()
        .enumerate()
        .map(|(i, &skew)| {
            let f = sim.add_follower_skewed(follower(i), m, skew * 1000);
            sim.command(f, join(&token));
            f
        })
        .collect();
    sim.run_for(secs(2));
    for &f in &fs {
        assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    }
    (sim, m, fs)
}

fn join(token: &str) -> Command {
    Command::Join(JoinCredentials {
        token: Some(token.into()),
        ..Default::default()
    })
}

fn play(op: PlaybackOp) -> Command {
    Command::Playback(op)
}

fn set_key(key: &str, value: serde_json::Value) -> Command {
    Command::SetKey {
        key: key.into(),
        value,
        policy: KeyPolicy::Lww,
    }
}

/// What the master's clock reads now, ms.
fn master_ms(sim: &Sim, m: NodeId) -> u64 {
    sim.local_now(m).as_millis()
}

/// Position error of follower `f` against the master right now, µs.
fn position_error(sim: &Sim, m: NodeId, f: NodeId) -> u64 {
    let playback = sim.master(m).playback().expect("master plays");
    let master = playback.position_at(sim.local_now(m));
    let follower = sim
        .follower(f)
        .playback_position(sim.local_now(f))
        .expect("follower applies playback");
    playback.distance(master, follower)
}

/// Worst position error over `span`, sampled every 5 ms.
fn worst_error(sim: &mut Sim, m: NodeId, fs: &[NodeId], span: Duration) -> u64 {
    let mut worst = 0;
    let end = sim.now + span;
    while sim.now < end {
        sim.run_for(ms(5));
        for &f in fs {
            worst = worst.max(position_error(sim, m, f));
        }
    }
    worst
}

/// Global times at which node `n` showed `page`.
fn turned_to(sim: &Sim, n: NodeId, page: u32) -> Vec<Time> {
    sim.events_with_time_of(n)
        .filter(|(_, e)| matches!(e, Event::Page { page: p, .. } if *p == page))
        .map(|(t, _)| t)
        .collect()
}

fn count(sim: &Sim, n: NodeId, pred: impl Fn(&Event) -> bool) -> usize {
    sim.events_of(n).filter(|e| pred(e)).count()
}

fn errors(sim: &Sim, n: NodeId) -> Vec<String> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::Error { code, .. } => Some(code.clone()),
            _ => None,
        })
        .collect()
}

fn key_events(sim: &Sim, n: NodeId) -> Vec<(String, serde_json::Value)> {
    sim.events_of(n)
        .filter_map(|e| match e {
            Event::Key { key, value, .. } => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

/// A hand-written control message from `sender` (a hostile or buggy peer).
fn raw(kind: &str, session_id: &str, sender: &str, seq: u64, payload: &str) -> Vec<u8> {
    format!(
        r#"{{"v":1,"session_id":"{session_id}","sender_id":"{sender}","type":"{kind}","ts":{EPOCH_MS},"seq":{seq},"payload":{payload}}}"#
    )
    .into_bytes()
}

/// A participant that may not seek asks for one, directly and with a forged request (envelope
/// sequence `seq`): the master refuses both, the participant is told `forbidden-not-host`.
fn assert_seek_refused(sim: &mut Sim, m: NodeId, f: NodeId, id: &str, seq: u64) {
    sim.command(f, play(PlaybackOp::Seek { position_us: 0 }));
    forge_to_master(
        sim,
        m,
        f,
        id,
        seq,
        "PLAYBACK_REQUEST",
        r#"{"op":"seek","position_us":0}"#,
    );
    sim.run_for(ms(100));
    assert_eq!(errors(sim, f), vec!["forbidden-not-host"]);
}

/// Feeds the master a message as if follower `f` (device id `id`) had sent it.
fn forge_to_master(sim: &mut Sim, m: NodeId, f: NodeId, id: &str, seq: u64, kind: &str, p: &str) {
    let session = sim.master(m).record().session_id.clone();
    let peer = sim.peer_to(m, f).expect("linked");
    sim.inject(m, peer, &raw(kind, &session, id, 1_000_000 + seq, p));
}

// ---------------------------------------------------------------------------------------------
// Clock offset
// ---------------------------------------------------------------------------------------------

#[test]
fn followers_estimate_the_master_clock_within_its_error_bound() {
    let (sim, m, fs) = room(1, &SKEWS_MS);
    let mut worst = 0;
    for (&f, skew) in fs.iter().zip(SKEWS_MS) {
        let est = sim.follower(f).clock().expect("an estimate after joining");
        let truth = -skew * 1000; // master clock − follower clock
        let err = est.offset_us.abs_diff(truth);
        worst = worst.max(err);
        assert!(err <= est.error_us, "follower {f}: {est:?} vs {truth}");
        assert!(err <= 3_000, "follower {f}: off by {err} µs");
        assert!(est.rtt_us >= 20_000, "a round trip is at least 2 × 10 ms");
        assert!(
            est.samples >= 16,
            "the join burst gave {} samples",
            est.samples
        );
        // The master measures the other way round from its own PINGs.
        let peer = sim.peer_to(m, f).unwrap();
        if let Some(back) = sim.master(m).clock(peer) {
            assert!(back.offset_us.abs_diff(-truth) <= back.error_us);
        }
    }
    println!("worst offset error after 2 s: {worst} µs");
}

// ---------------------------------------------------------------------------------------------
// Shared playback
// ---------------------------------------------------------------------------------------------

#[test]
fn playing_followers_stay_within_one_frame_of_the_master() {
    let (mut sim, m, fs) = room(2, &SKEWS_MS);
    sim.command(
        m,
        play(PlaybackOp::Load {
            media_id: "clip".into(),
        }),
    );
    sim.command(m, play(PlaybackOp::Play));
    sim.run_for(secs(2));
    let worst = worst_error(&mut sim, m, &fs, secs(10));
    println!("worst follower position error while playing: {worst} µs");
    assert!(worst <= FRAME_US, "{worst} µs is more than a frame");
    // Not a message per frame: the followers were told a handful of times in 12 s.
    for &f in &fs {
        let told = count(&sim, f, |e| matches!(e, Event::Playback(_)));
        assert!(told <= 8, "follower {f} got {told} playback events");
    }
}

#[test]
fn seek_pause_speed_direction_loop_and_range_propagate() {
    let (mut sim, m, fs) = room(3, &SKEWS_MS);
    let s = 1_000_000;
    let changes = [
        PlaybackOp::Load {
            media_id: "clip".into(),
        },
        PlaybackOp::Play,
        PlaybackOp::Seek {
            position_us: 30 * s,
        },
        PlaybackOp::SetRate {
            rate: Rate::new(2.0),
        },
        PlaybackOp::SetDirection {
            direction: Direction::Backward,
        },
        PlaybackOp::SetRange {
            in_us: 20 * s,
            out_us: Some(25 * s),
        },
        PlaybackOp::SetLoop {
            loop_mode: LoopMode::Loop,
        },
        PlaybackOp::Pause,
        PlaybackOp::SetPhase {
            phase: "take 2".into(),
        },
        PlaybackOp::Play,
    ];
    let mut worst = 0;
    for op in changes {
        sim.command(m, play(op.clone()));
        sim.run_for(ms(60)); // longer than the slowest path (30 ms)
        let master = sim.master(m).playback().unwrap().clone();
        for &f in &fs {
            let local = sim.follower(f).playback().unwrap();
            assert_eq!(local.revision, master.revision, "{op:?}");
            assert_eq!(
                (local.running, local.rate, local.direction, local.loop_mode),
                (
                    master.running,
                    master.rate,
                    master.direction,
                    master.loop_mode
                ),
                "{op:?}"
            );
            assert_eq!((local.in_us, local.out_us), (master.in_us, master.out_us));
            assert_eq!(local.phase, master.phase);
        }
        worst = worst.max(worst_error(&mut sim, m, &fs, ms(1500)));
    }
    println!("worst error across changes: {worst} µs");
    assert!(worst <= FRAME_US);
    // Looping backward between 20 s and 25 s at 2×: always inside the range.
    let p = sim.master(m).playback_position(sim.local_now(m)).unwrap();
    assert!((20 * s..=25 * s).contains(&p));
}

#[test]
fn a_drawing_timer_counts_down_the_same_everywhere() {
    let (mut sim, m, fs) = room(4, &SKEWS_MS[..3]);
    sim.command(
        m,
        play(PlaybackOp::Timer {
            duration_us: 60_000_000,
            phase: "pose 1".into(),
        }),
    );
    sim.run_for(secs(30));
    let left_m = sim
        .master(m)
        .playback()
        .unwrap()
        .remaining_at(sim.local_now(m))
        .unwrap();
    assert!(left_m.abs_diff(secs(30)) <= ms(30), "{left_m:?}");
    for &f in &fs {
        let p = sim.follower(f).playback().unwrap();
        let left = p.remaining_at(sim.local_now(f)).unwrap();
        assert!(left.abs_diff(left_m) <= ms(5), "{left:?} vs {left_m:?}");
        assert_eq!(p.phase, "pose 1");
    }
    sim.run_for(secs(31));
    for &f in &fs {
        assert!(sim
            .follower(f)
            .playback()
            .unwrap()
            .ended_at(sim.local_now(f)));
    }
}

// ---------------------------------------------------------------------------------------------
// Timed page turns
// ---------------------------------------------------------------------------------------------

#[test]
fn timed_page_turns_land_within_5ms_across_followers() {
    let (mut sim, m, fs) = room(5, &SKEWS_MS);
    let mut worst = Duration::ZERO;
    for page in 1..=10u32 {
        let at = master_ms(&sim, m) + 400;
        sim.command(m, Command::SetPageAt { page, at });
        // Not yet: everyone waits for `at`.
        sim.run_for(ms(200));
        assert_eq!(sim.master(m).page().page_index, page);
        assert!(turned_to(&sim, m, page).is_empty());
        sim.run_for(ms(400));
        let mut times = turned_to(&sim, m, page);
        for &f in &fs {
            times.extend(turned_to(&sim, f, page));
            assert_eq!(sim.follower(f).view().page_index, page);
        }
        assert_eq!(times.len(), fs.len() + 1, "everyone turned once");
        let spread = times
            .iter()
            .max()
            .unwrap()
            .since(*times.iter().min().unwrap());
        worst = worst.max(spread);
    }
    println!("worst spread of a timed page turn: {worst:?}");
    assert!(worst <= ms(5), "{worst:?}");
}

#[test]
fn a_timed_song_change_waits_too() {
    let (mut sim, m, fs) = room(6, &SKEWS_MS[..2]);
    let at = master_ms(&sim, m) + 1000;
    sim.command(
        m,
        Command::SetSongAt {
            song_id: "gloria".into(),
            at,
        },
    );
    sim.run_for(ms(500));
    assert_eq!(sim.follower(fs[0]).view().song_epoch, 0);
    assert_eq!(sim.follower(fs[0]).master().unwrap().song_epoch, 1);
    sim.run_for(ms(600));
    for &f in &fs {
        assert_eq!(sim.follower(f).view().song_id.as_deref(), Some("gloria"));
    }
}

#[test]
fn a_turn_in_the_past_or_too_far_ahead_happens_at_once() {
    let (mut sim, m, fs) = room(7, &SKEWS_MS[..2]);
    let now = master_ms(&sim, m);
    sim.command(
        m,
        Command::SetPageAt {
            page: 3,
            at: now - 5_000,
        },
    );
    assert_eq!(turned_to(&sim, m, 3).len(), 1, "the master turned at once");
    sim.run_for(ms(40));
    assert!(fs.iter().all(|&f| sim.follower(f).view().page_index == 3));
    let now = master_ms(&sim, m);
    sim.command(
        m,
        Command::SetPageAt {
            page: 4,
            at: now + 3_600_000,
        },
    );
    sim.run_for(ms(40));
    assert!(fs.iter().all(|&f| sim.follower(f).view().page_index == 4));
}

#[test]
fn a_newer_change_replaces_a_pending_timed_turn() {
    let (mut sim, m, fs) = room(8, &SKEWS_MS[..2]);
    let at = master_ms(&sim, m) + 2_000;
    sim.command(m, Command::SetPageAt { page: 5, at });
    sim.run_for(ms(100));
    sim.command(m, Command::SetPage { page: 6 });
    sim.run_for(secs(3));
    for n in [m, fs[0], fs[1]] {
        assert!(
            turned_to(&sim, n, 5).is_empty(),
            "node {n} showed the replaced page"
        );
        assert_eq!(turned_to(&sim, n, 6).len(), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Sync groups
// ---------------------------------------------------------------------------------------------

fn view_only(i: usize) -> FollowerConfig {
    let mut cfg = FollowerConfig::new(format!("f{i}"));
    if i == 1 {
        cfg.sync_groups = BTreeSet::from(["view".to_string()]);
    }
    cfg
}

#[test]
fn a_follower_that_only_syncs_view_ignores_playback() {
    let (mut sim, m, fs) = room_with(9, &SKEWS_MS[..2], view_only);
    let (all, view) = (fs[0], fs[1]);
    sim.command(
        m,
        play(PlaybackOp::Load {
            media_id: "clip".into(),
        }),
    );
    sim.command(m, play(PlaybackOp::Play));
    sim.command(m, set_key("view.zoom", json!(2.0)));
    sim.command(m, set_key("mode.tool", json!("pen")));
    sim.run_for(secs(1));
    assert!(sim.follower(all).playback().is_some());
    assert_eq!(sim.follower(view).playback(), None);
    assert_eq!(
        sim.follower(view).playback_position(sim.local_now(view)),
        None
    );
    assert_eq!(count(&sim, view, |e| matches!(e, Event::Playback(_))), 0);
    assert!(
        sim.follower(view).master_playback().is_some(),
        "tracked, not applied"
    );
    for f in [all, view] {
        // view is on by default, other groups off.
        assert_eq!(
            key_events(&sim, f),
            vec![("view.zoom".to_string(), json!(2.0))]
        );
        assert_eq!(
            sim.follower(f).keys().get("mode.tool").unwrap().value,
            json!("pen")
        );
    }
    // Turning playback on applies the current state at once, in step.
    sim.command(
        view,
        Command::SetSync {
            group: "playback".into(),
            apply: true,
        },
    );
    assert_eq!(count(&sim, view, |e| matches!(e, Event::Playback(_))), 1);
    assert!(position_error(&sim, m, view) <= FRAME_US);
}

#[test]
fn sync_settings_survive_a_reconnect_and_a_restart() {
    let (mut sim, m, fs) = room(10, &SKEWS_MS[..1]);
    let f = fs[0];
    sim.command(
        f,
        Command::SetSync {
            group: "view".into(),
            apply: false,
        },
    );
    sim.command(
        f,
        Command::SetSync {
            group: "mode".into(),
            apply: true,
        },
    );
    let chosen: BTreeSet<String> = ["mode", "playback"].map(String::from).into();
    assert_eq!(sim.follower(f).sync_groups(), &chosen);
    let check = |sim: &mut Sim, value: i64| {
        sim.clear_events();
        sim.command(m, set_key("view.zoom", json!(value)));
        sim.command(m, set_key("mode.tool", json!(value)));
        sim.run_for(ms(100));
        assert_eq!(
            key_events(sim, f),
            vec![("mode.tool".to_string(), json!(value))]
        );
        assert_eq!(sim.follower(f).sync_groups(), &chosen);
    };
    check(&mut sim, 1);
    // A reconnect: the link is cut, the follower rejoins by itself.
    sim.cut(m, f);
    sim.run_for(secs(5));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    check(&mut sim, 2);
    // A restart from the persisted record.
    let Some(Record::Follower(rec)) = sim.nodes[f].record.clone() else {
        panic!("no follower record")
    };
    assert_eq!(rec.sync_groups, chosen);
    sim.crash(f);
    sim.restart(f);
    sim.run_for(secs(15));
    assert_eq!(sim.follower(f).state(), FollowerState::ConnectedFollow);
    check(&mut sim, 3);
}

// ---------------------------------------------------------------------------------------------
// Control modes and the editor
// ---------------------------------------------------------------------------------------------

fn running(sim: &Sim, m: NodeId) -> bool {
    sim.master(m).playback().unwrap().running
}

#[test]
fn host_only_refuses_participants_and_shared_pause_lets_them_pause_and_resume() {
    let (mut sim, m, fs) = room(11, &SKEWS_MS[..2]);
    sim.command(
        m,
        play(PlaybackOp::Load {
            media_id: "clip".into(),
        }),
    );
    sim.command(m, play(PlaybackOp::Play));
    sim.run_for(ms(100));
    // host-only (the default): refused locally, and by the master if forged.
    sim.command(fs[0], play(PlaybackOp::Pause));
    assert_eq!(errors(&sim, fs[0]), vec!["forbidden-not-host"]);
    forge_to_master(
        &mut sim,
        m,
        fs[0],
        "f0",
        1,
        "PLAYBACK_REQUEST",
        r#"{"op":"pause"}"#,
    );
    sim.run_for(ms(100));
    assert!(running(&sim, m));
    // shared-pause: pause and resume, nothing else.
    sim.command(
        m,
        Command::SetControlMode {
            mode: ControlMode::SharedPause,
        },
    );
    sim.run_for(ms(100));
    for &f in &fs {
        assert_eq!(sim.follower(f).control().mode, ControlMode::SharedPause);
    }
    // (f0's link carries a forged sequence number now; f1 acts.)
    sim.command(fs[1], play(PlaybackOp::Pause));
    sim.run_for(ms(100));
    assert!(!running(&sim, m));
    assert!(
        !sim.follower(fs[0]).playback().unwrap().running,
        "everyone paused"
    );
    sim.command(fs[1], play(PlaybackOp::Play));
    sim.run_for(ms(100));
    assert!(running(&sim, m));
    assert!(sim.follower(fs[0]).playback().unwrap().running);
    assert_seek_refused(&mut sim, m, fs[1], "f1", 2);
    assert!(sim.master(m).playback_position(sim.local_now(m)).unwrap() > 200_000);
}

#[test]
fn the_host_can_hand_the_editor_role_over_and_take_it_back() {
    let (mut sim, m, fs) = room(12, &SKEWS_MS[..2]);
    sim.command(
        m,
        play(PlaybackOp::Load {
            media_id: "clip".into(),
        }),
    );
    sim.command(
        m,
        Command::SetEditor {
            device_id: Some("f0".into()),
        },
    );
    sim.run_for(ms(100));
    assert_eq!(sim.follower(fs[1]).control().editor.as_deref(), Some("f0"));
    assert!(sim
        .events_of(fs[1])
        .any(|e| matches!(e, Event::Control(c) if c.editor.as_deref() == Some("f0"))));
    // The editor drives playback and host-authority keys.
    // (Spaced by more than the jitter: a request overtaken on the wire is dropped as stale.)
    sim.command(
        fs[0],
        play(PlaybackOp::Seek {
            position_us: 7_000_000,
        }),
    );
    sim.run_for(ms(40));
    sim.command(
        fs[0],
        play(PlaybackOp::SetRate {
            rate: Rate::new(0.5),
        }),
    );
    sim.run_for(ms(40));
    sim.command(
        fs[0],
        Command::SetKey {
            key: "mode.layout".into(),
            value: json!("grid"),
            policy: KeyPolicy::Host,
        },
    );
    sim.run_for(ms(100));
    let p = sim.master(m).playback().unwrap();
    assert_eq!((p.position_us, p.rate), (7_000_000, Rate::new(0.5)));
    assert!(!p.running);
    assert_eq!(
        sim.master(m).keys().get("mode.layout").unwrap().value,
        json!("grid")
    );
    // Others may not, and the host key stays the editor's and host's.
    sim.command(fs[1], play(PlaybackOp::Seek { position_us: 0 }));
    sim.command(fs[1], set_key("mode.layout", json!("list")));
    assert_eq!(
        errors(&sim, fs[1]),
        vec!["forbidden-not-host", "forbidden-not-host"]
    );
    // Taken back: the former editor is an ordinary participant again.
    sim.command(m, Command::SetEditor { device_id: None });
    sim.run_for(ms(100));
    assert_seek_refused(&mut sim, m, fs[0], "f0", 3);
    assert_eq!(sim.master(m).playback().unwrap().position_us, 7_000_000);
}

// ---------------------------------------------------------------------------------------------
// Synced keys
// ---------------------------------------------------------------------------------------------

#[test]
fn last_write_wins_keys_converge_everywhere() {
    let (mut sim, m, fs) = room(13, &SKEWS_MS[..3]);
    // Three writes at once from devices whose clocks disagree by up to 100 ms.
    sim.command(fs[0], set_key("view.zoom", json!(1.5)));
    sim.command(fs[1], set_key("view.zoom", json!(2.5)));
    sim.command(m, set_key("view.zoom", json!(3.5)));
    sim.run_for(ms(200));
    let winner = sim.master(m).keys().get("view.zoom").unwrap().clone();
    for &f in &fs {
        assert_eq!(sim.follower(f).keys().get("view.zoom"), Some(&winner));
        let last = key_events(&sim, f).last().cloned();
        assert_eq!(last, Some(("view.zoom".into(), winner.value.clone())));
    }
    // A later write wins even from the device with the slowest clock.
    sim.run_for(ms(500));
    sim.command(fs[1], set_key("view.zoom", json!(4.0)));
    sim.run_for(ms(200));
    assert_eq!(
        sim.master(m).keys().get("view.zoom").unwrap().value,
        json!(4.0)
    );
    assert!(fs
        .iter()
        .all(|&f| sim.follower(f).keys().get("view.zoom").unwrap().value == json!(4.0)));
}

#[test]
fn host_keys_refuse_participants_and_undo_a_forged_write() {
    let (mut sim, m, fs) = room(14, &SKEWS_MS[..1]);
    let f = fs[0];
    sim.command(
        f,
        Command::SetSync {
            group: "colour".into(),
            apply: true,
        },
    );
    sim.command(
        m,
        Command::SetKey {
            key: "colour.scheme".into(),
            value: json!("dark"),
            policy: KeyPolicy::Host,
        },
    );
    sim.run_for(ms(100));
    sim.command(f, set_key("colour.scheme", json!("light")));
    assert_eq!(errors(&sim, f), vec!["forbidden-not-host"]);
    // A participant claiming last-write-wins for a host key is ignored and told the held value.
    forge_to_master(
        &mut sim,
        m,
        f,
        "f0",
        1,
        "KEY_SET",
        r#"{"key":"colour.scheme","value":"light","policy":"lww","stamp":{"ts":99999999999999,"sender_id":"master"}}"#,
    );
    sim.run_for(ms(100));
    assert_eq!(
        sim.master(m).keys().get("colour.scheme").unwrap().value,
        json!("dark")
    );
    assert_eq!(
        sim.follower(f).keys().get("colour.scheme").unwrap().value,
        json!("dark")
    );
}

// ---------------------------------------------------------------------------------------------
// Catching up: rejoin, late join, master restart
// ---------------------------------------------------------------------------------------------

#[test]
fn a_late_joiner_and_a_restarted_master_catch_up_on_everything() {
    let (mut sim, m, fs) = room(15, &SKEWS_MS[..1]);
    sim.command(
        m,
        play(PlaybackOp::Load {
            media_id: "clip".into(),
        }),
    );
    sim.command(m, play(PlaybackOp::Play));
    sim.command(
        m,
        Command::SetControlMode {
            mode: ControlMode::SharedPause,
        },
    );
    sim.command(
        m,
        Command::SetEditor {
            device_id: Some("f0".into()),
        },
    );
    sim.command(m, set_key("view.channel", json!(3)));
    sim.run_for(secs(1));
    // The master crashes and comes back from its record: nothing lost, still playing.
    sim.crash(m);
    sim.run_for(ms(500));
    sim.restart(m);
    let master = sim.master(m);
    assert_eq!(master.control().mode, ControlMode::SharedPause);
    assert_eq!(master.control().editor.as_deref(), Some("f0"));
    assert_eq!(master.keys().get("view.channel").unwrap().value, json!(3));
    let pos = master.playback_position(sim.local_now(m)).unwrap();
    assert!(pos.abs_diff(1_500_000) <= 1_000, "position {pos}");
    // A follower joining late gets all of it in JOIN_ACCEPT.
    let token = sim.master(m).record().token.clone();
    let late = sim.add_follower_skewed(FollowerConfig::new("late"), m, -40_000);
    sim.command(late, join(&token));
    sim.run_for(secs(2));
    let f = sim.follower(late);
    assert_eq!(f.control().editor.as_deref(), Some("f0"));
    assert_eq!(f.keys().get("view.channel").unwrap().value, json!(3));
    assert!(key_events(&sim, late).contains(&("view.channel".into(), json!(3))));
    assert!(position_error(&sim, m, late) <= FRAME_US);
    // The old follower rejoined the restarted master and is in step too.
    sim.run_for(secs(15));
    assert_eq!(sim.follower(fs[0]).state(), FollowerState::ConnectedFollow);
    assert!(position_error(&sim, m, fs[0]) <= FRAME_US);
}

// ---------------------------------------------------------------------------------------------
// Errors and limits
// ---------------------------------------------------------------------------------------------

#[test]
fn peer_values_are_clamped_and_unknown_or_malformed_keys_ignored() {
    let (mut sim, m, fs) = room(16, &SKEWS_MS[..1]);
    let f = fs[0];
    forge_to_master(
        &mut sim,
        m,
        f,
        "f0",
        1,
        "KEY_SET",
        r#"{"key":"view.zoom","value":1e9,"stamp":{"ts":1,"sender_id":"f0"}}"#,
    );
    forge_to_master(
        &mut sim,
        m,
        f,
        "f0",
        2,
        "KEY_SET",
        r#"{"key":"nogroup","value":1,"stamp":{"ts":1,"sender_id":"f0"}}"#,
    );
    forge_to_master(
        &mut sim,
        m,
        f,
        "f0",
        3,
        "KEY_SET",
        r#"{"key":"a.b","value":1,"stamp":{"ts":1,"sender_id":"f0"},"extra":[1]}"#,
    );
    sim.run_for(ms(100));
    let keys = sim.master(m).keys();
    assert_eq!(
        keys.get("view.zoom").unwrap().value.as_f64(),
        Some(ZOOM_RANGE.1)
    );
    assert!(keys.get("nogroup").is_none());
    assert!(keys.get("a.b").is_some(), "unknown fields are ignored");
    // A master-side rate far out of range reaches followers clamped.
    sim.command(
        m,
        play(PlaybackOp::Load {
            media_id: "clip".into(),
        }),
    );
    sim.command(
        m,
        play(PlaybackOp::SetRate {
            rate: Rate::new(1e6),
        }),
    );
    sim.run_for(ms(100));
    assert_eq!(sim.follower(f).playback().unwrap().rate.get(), MAX_RATE);
    // A hostile PLAYBACK straight to the follower is clamped too.
    let session = sim.master(m).record().session_id.clone();
    let peer = sim.peer_to(f, m).unwrap();
    let p = r#"{"media_id":"x","revision":999,"running":true,"rate":-4,"in_us":9,"out_us":3,"position_us":1}"#;
    sim.inject(f, peer, &raw("PLAYBACK", &session, "master", 1 << 40, p));
    let got = sim.follower(f).master_playback().unwrap();
    assert_eq!(
        (got.rate.get(), got.in_us, got.out_us, got.position_us),
        (1.0 / 16.0, 9, Some(9), 9)
    );
}

#[test]
fn a_flood_of_updates_from_one_participant_is_rate_limited() {
    let (mut sim, m, fs) = room(17, &SKEWS_MS[..2]);
    sim.clear_events();
    for i in 0..500u64 {
        let p = format!(
            r#"{{"key":"view.zoom","value":1,"stamp":{{"ts":{},"sender_id":"f0"}}}}"#,
            EPOCH_MS + i
        );
        forge_to_master(&mut sim, m, fs[0], "f0", i, "KEY_SET", &p);
    }
    let applied = count(&sim, m, |e| {
        matches!(
            e,
            Event::Key {
                origin: Origin::Remote,
                ..
            }
        )
    });
    assert_eq!(applied, MasterConfig::new("m").update_burst as usize);
    // Another participant is not affected, and the flooder recovers after a pause.
    sim.command(fs[1], set_key("view.pan_x", json!(10)));
    sim.run_for(secs(1));
    assert_eq!(
        sim.master(m).keys().get("view.pan_x").unwrap().value,
        json!(10)
    );
    let p = format!(
        r#"{{"key":"view.pan_y","value":5,"stamp":{{"ts":{},"sender_id":"f0"}}}}"#,
        EPOCH_MS + 9_000
    );
    forge_to_master(&mut sim, m, fs[0], "f0", 1_000, "KEY_SET", &p);
    sim.run_for(ms(100));
    assert_eq!(
        sim.master(m).keys().get("view.pan_y").unwrap().value,
        json!(5)
    );
}
