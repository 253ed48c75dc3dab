//! Property tests over random schedules on the simulated network.
//!
//! A schedule mixes page and song changes, followers toggling follow/free and navigating locally,
//! up to 30 % loss, duplication, jitter (reordering), partitions, cut links and a master crash and
//! restart. After it, the network heals and every property must hold within bounded virtual time:
//! - every follow-mode follower shows the master's song and page;
//! - every free-mode follower shows the master's song (and whatever page it chose);
//! - no follower ever goes back to an older song epoch;
//! - a free-mode follower's page only moves by its own navigation or a song change;
//! - a solo pair agrees on the latest change (highest stamp) after heal;
//! - so does a remembered solo pair whose devices also crash and restart from their records;
//! - the clock filter's estimate is never further from the true offset than its error bound,
//!   whatever the (non-negative) delays;
//! - a playback state moved onto another clock predicts the same positions.
//!
//! `PROPTEST_CASES` sets the number of schedules (default 10 000 each, as CI runs them).

mod sim;

use lansync::protocol::FollowMode;
use lansync::protocol::{Direction, LoopMode, Playback, Pong, Rate};
use lansync::session::{
    BackoffConfig, Command, Event, FollowerConfig, FollowerState, JoinCredentials, MasterConfig,
    Origin, SoloConfig, SoloState,
};
use lansync::session::{ClockFilter, Time};
use proptest::prelude::*;
use sim::Sim;
use std::time::Duration;

const FOLLOWERS: usize = 3;
/// Virtual time allowed for convergence after heal: the backoff cap (30 s) plus a join and a
/// snapshot period, with margin.
const SETTLE: Duration = Duration::from_secs(60);

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[derive(Debug, Clone)]
enum Step {
    Wait(u64),
    MasterPage(u32),
    MasterSong(u8),
    Toggle(usize),
    LocalPage(usize, u32),
    Partition(usize),
    Heal,
    Cut(usize),
    CrashMaster,
    RestartMaster,
    Net {
        loss: f64,
        duplicate: f64,
        jitter_ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let f = 0..FOLLOWERS;
    prop_oneof![
        4 => (0u64..3_000).prop_map(Step::Wait),
        4 => (0u32..40).prop_map(Step::MasterPage),
        1 => (0u8..4).prop_map(Step::MasterSong),
        1 => f.clone().prop_map(Step::Toggle),
        1 => (f.clone(), 0u32..40).prop_map(|(i, p)| Step::LocalPage(i, p)),
        1 => f.clone().prop_map(Step::Partition),
        1 => Just(Step::Heal),
        1 => f.prop_map(Step::Cut),
        1 => Just(Step::CrashMaster),
        1 => Just(Step::RestartMaster),
        1 => (0.0..0.3f64, 0.0..0.2f64, 0u64..40).prop_map(|(loss, duplicate, jitter_ms)| {
            Step::Net { loss, duplicate, jitter_ms }
        }),
    ]
}

fn never_give_up() -> BackoffConfig {
    BackoffConfig {
        max_attempts: None,
        ..BackoffConfig::default()
    }
}

fn run_choir(seed: u64, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(seed);
    let m = sim.add_master(MasterConfig::new("master"));
    let token = sim.master(m).record().token.clone();
    let fs: Vec<usize> = (0..FOLLOWERS)
        .map(|i| {
            let mut cfg = FollowerConfig::new(format!("f{i}"));
            cfg.backoff = never_give_up();
            let f = sim.add_follower(cfg, m);
            sim.command(
                f,
                Command::Join(JoinCredentials {
                    token: Some(token.clone()),
                    ..Default::default()
                }),
            );
            f
        })
        .collect();
    sim.run_for(Duration::from_millis(500));

    for s in steps {
        match *s {
            Step::Wait(ms) => sim.run_for(Duration::from_millis(ms)),
            Step::MasterPage(p) if sim.is_up(m) => sim.command(m, Command::SetPage { page: p }),
            Step::MasterSong(n) if sim.is_up(m) => sim.command(
                m,
                Command::SetSong {
                    song_id: format!("song-{n}"),
                },
            ),
            Step::Toggle(i) => {
                let mode = match sim.follower(fs[i]).follow_mode() {
                    FollowMode::Follow => FollowMode::Free,
                    FollowMode::Free => FollowMode::Follow,
                };
                sim.command(fs[i], Command::SetFollowMode { mode });
            }
            Step::LocalPage(i, p) => sim.command(fs[i], Command::SetPage { page: p }),
            Step::Partition(i) => sim.partition(m, fs[i]),
            Step::Heal => sim.heal(),
            Step::Cut(i) => sim.cut(m, fs[i]),
            Step::CrashMaster if sim.is_up(m) => sim.crash(m),
            Step::RestartMaster if !sim.is_up(m) => sim.restart(m),
            Step::Net {
                loss,
                duplicate,
                jitter_ms,
            } => {
                sim.net.loss = loss;
                sim.net.duplicate = duplicate;
                sim.net.jitter = Duration::from_millis(jitter_ms);
            }
            _ => {}
        }
    }
    sim.heal();
    if !sim.is_up(m) {
        sim.restart(m);
    }
    sim.run_for(SETTLE);

    let master = sim.master(m).page().clone();
    for &f in &fs {
        let fol = sim.follower(f);
        let view = fol.view();
        let expected_state = match fol.follow_mode() {
            FollowMode::Follow => FollowerState::ConnectedFollow,
            FollowMode::Free => FollowerState::ConnectedFree,
        };
        prop_assert_eq!(fol.state(), expected_state, "follower {} not rejoined", f);
        prop_assert_eq!(
            &view.song_id,
            &master.song_id,
            "follower {} on another song",
            f
        );
        prop_assert_eq!(view.song_epoch, master.song_epoch);
        if fol.follow_mode() == FollowMode::Follow {
            prop_assert_eq!(
                view.page_index,
                master.page_index,
                "follower {} on another page",
                f
            );
        }
        check_history(&sim, f)?;
    }
    Ok(())
}

/// Replays one follower's events: epochs never go back; in free mode only a song change (or the
/// follower itself) moves the page.
fn check_history(sim: &Sim, f: usize) -> Result<(), TestCaseError> {
    let mut mode = FollowMode::Follow;
    let mut epoch = 0u64;
    for e in sim.events_of(f) {
        match e {
            Event::FollowMode { mode: m } => mode = *m,
            Event::Page {
                song_epoch, origin, ..
            } => {
                prop_assert!(
                    *song_epoch >= epoch,
                    "follower {} went back to epoch {}",
                    f,
                    song_epoch
                );
                if mode == FollowMode::Free && *origin == Origin::Remote {
                    prop_assert!(
                        *song_epoch > epoch,
                        "free follower {} moved without a song change",
                        f
                    );
                }
                epoch = *song_epoch;
            }
            _ => {}
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum SoloStep {
    Wait(u64),
    Turn(bool, u32),
    Partition,
    Heal,
    Cut,
    Net {
        loss: f64,
        duplicate: f64,
        jitter_ms: u64,
    },
}

fn solo_step() -> impl Strategy<Value = SoloStep> {
    prop_oneof![
        4 => (0u64..3_000).prop_map(SoloStep::Wait),
        5 => (any::<bool>(), 0u32..60).prop_map(|(a, p)| SoloStep::Turn(a, p)),
        1 => Just(SoloStep::Partition),
        1 => Just(SoloStep::Heal),
        1 => Just(SoloStep::Cut),
        1 => (0.0..0.3f64, 0.0..0.2f64, 0u64..40).prop_map(|(loss, duplicate, jitter_ms)| {
            SoloStep::Net { loss, duplicate, jitter_ms }
        }),
    ]
}

fn run_solo(seed: u64, steps: &[SoloStep]) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(seed);
    let mut a = SoloConfig::new("tablet-a");
    let mut b = SoloConfig::new("tablet-b");
    a.backoff = never_give_up();
    b.backoff = never_give_up();
    let (a, b) = sim.add_solo_pair(a, b);
    sim.connect(a, b);
    sim.run_for(Duration::from_millis(100));
    for s in steps {
        solo_apply(&mut sim, a, b, s);
    }
    solo_settled(&mut sim, a, b)
}

fn solo_apply(sim: &mut Sim, a: usize, b: usize, step: &SoloStep) {
    match *step {
        SoloStep::Wait(ms) => sim.run_for(Duration::from_millis(ms)),
        SoloStep::Turn(first, page) => {
            sim.command(if first { a } else { b }, Command::SetPage { page })
        }
        SoloStep::Partition => sim.partition(a, b),
        SoloStep::Heal => sim.heal(),
        SoloStep::Cut => sim.cut(a, b),
        SoloStep::Net {
            loss,
            duplicate,
            jitter_ms,
        } => {
            sim.net.loss = loss;
            sim.net.duplicate = duplicate;
            sim.net.jitter = Duration::from_millis(jitter_ms);
        }
    }
}

/// Heals the network and checks both devices are paired again and show the latest change.
fn solo_settled(sim: &mut Sim, a: usize, b: usize) -> Result<(), TestCaseError> {
    // The latest change anywhere is the one both must show.
    let winner = [a, b]
        .into_iter()
        .map(|n| {
            (
                sim.solo(n).page_stamp().clone(),
                sim.solo(n).page().page_index,
            )
        })
        .max()
        .unwrap();
    sim.heal();
    sim.run_for(SETTLE);
    for n in [a, b] {
        let s = sim.solo(n);
        prop_assert_eq!(
            s.state(),
            SoloState::PairedConnected,
            "device {} not reconnected",
            n
        );
        prop_assert_eq!(s.page_stamp(), &winner.0);
        prop_assert_eq!(s.page().page_index, winner.1);
    }
    Ok(())
}

/// A remembered pair's schedule: the solo steps plus restarts of either device.
#[derive(Debug, Clone)]
enum RememberedStep {
    Solo(SoloStep),
    /// The device (`true`: the dialing side) crashes, stays down this many ms, and restarts
    /// from its record.
    Restart(bool, u64),
}

fn remembered_step() -> impl Strategy<Value = RememberedStep> {
    prop_oneof![
        8 => solo_step().prop_map(RememberedStep::Solo),
        1 => (any::<bool>(), 0u64..20_000).prop_map(|(a, down)| RememberedStep::Restart(a, down)),
    ]
}

fn run_remembered(seed: u64, steps: &[RememberedStep]) -> Result<(), TestCaseError> {
    let mut sim = Sim::new(seed);
    let cfg = |id: &str, half: &str| {
        let mut c = SoloConfig::new(id);
        c.backoff = never_give_up();
        c.pair_id = "pair-1".into();
        c.bond_half = Some(half.into());
        c
    };
    let (a, b) = sim.add_solo_pair(
        cfg("tablet-a", "000102030405060708090a0b0c0d0e0f"),
        cfg("tablet-b", "101112131415161718191a1b1c1d1e1f"),
    );
    sim.connect(a, b);
    sim.run_for(Duration::from_millis(100));
    for n in [a, b] {
        prop_assert!(
            sim.solo(n).record().is_some(),
            "device {} not remembered",
            n
        );
    }
    for s in steps {
        match s {
            RememberedStep::Solo(s) => solo_apply(&mut sim, a, b, s),
            RememberedStep::Restart(first, down) => {
                let n = if *first { a } else { b };
                sim.crash(n);
                sim.run_for(Duration::from_millis(*down));
                sim.restart(n);
            }
        }
    }
    // The waiting side's advert tells the dialing side to retry now (PROTOCOL.md §6.1).
    sim.heal();
    sim.network_changed(a);
    solo_settled(&mut sim, a, b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn choir_converges_after_any_schedule(seed in any::<u64>(), steps in proptest::collection::vec(step(), 1..40)) {
        run_choir(seed, &steps)?;
    }

    #[test]
    fn clock_estimate_stays_within_its_error_bound(
        offset in -10_000_000i64..10_000_000,
        exchanges in proptest::collection::vec((0u64..2_000_000, 0u64..2_000_000, 0u64..5_000), 1..40),
    ) {
        let mut filter = ClockFilter::default();
        let mut t0 = 1_735_689_600_000_000u64;
        for (up, down, hold) in exchanges {
            let t1 = (t0 + up).saturating_add_signed(offset);
            let pong = Pong { id: 1, t0, t1, t2: t1 + hold };
            filter.on_pong(Time(t0 + up + hold + down), &pong);
            let e = filter.estimate().unwrap();
            prop_assert!(e.offset_us.abs_diff(offset) <= e.error_us, "{:?} vs {}", e, offset);
            t0 += 1_000_000;
        }
    }

    #[test]
    fn rebased_playback_predicts_the_same_positions(
        position in 0u64..100_000_000, span in (0u64..50_000_000, 0u64..50_000_000),
        rate16 in 1u32..=256, back in any::<bool>(), looping in any::<bool>(), running in any::<bool>(),
        offset in -1_000_000i64..1_000_000, later in 0u64..100_000_000,
    ) {
        let anchor = 1_735_689_600_000_000u64;
        let mut master = Playback {
            media_id: "m".into(),
            running,
            position_us: position,
            anchor_us: anchor,
            rate: Rate::new(f64::from(rate16) / 16.0),
            direction: if back { Direction::Backward } else { Direction::Forward },
            loop_mode: if looping { LoopMode::Loop } else { LoopMode::Off },
            in_us: span.0.min(span.1),
            out_us: Some(span.0.max(span.1)),
            ..Playback::default()
        };
        master.clamp();
        let here = Time(anchor + 500_000);
        let local = master.rebased(here, offset);
        let t = Time(here.0 + later);
        let want = master.position_at(Time(t.0.saturating_add_signed(offset)));
        // One µs of rounding per conversion at most (rate × time in floating point).
        prop_assert!(master.distance(local.position_at(t), want) <= 2);
    }

    #[test]
    fn solo_pair_agrees_on_the_latest_change(seed in any::<u64>(), steps in proptest::collection::vec(solo_step(), 1..30)) {
        run_solo(seed, &steps)?;
    }

    #[test]
    fn remembered_pair_agrees_on_the_latest_change_across_restarts(seed in any::<u64>(), steps in proptest::collection::vec(remembered_step(), 1..30)) {
        run_remembered(seed, &steps)?;
    }
}
