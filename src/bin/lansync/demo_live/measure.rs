//! The script's measured moves: a page turn and its latency to each follower, a page turn timed
//! ahead on the master's clock, and a played recording sampled against the master's position.

use super::log::{shown, Log, Who};
use super::setup::tell;
use super::Rehearsal;
use crate::demo::Report;
use lansync::node::{Clock, Node};
use lansync::protocol::{PlaybackOp, Rate};
use lansync::session::{Command, Event};
use std::time::{Duration, Instant};

/// One master command, then waits until the followers `who` show `expect`; returns whether they
/// did and every follower's latency for it.
pub(super) async fn turn(
    master: &Node,
    log: &Log,
    cmd: Command,
    expect: (u64, u32),
    who: &[usize],
) -> (bool, Vec<f64>) {
    let t0 = Instant::now();
    tell(master, cmd);
    let ok = log
        .wait(Duration::from_secs(10), |e| {
            who.iter().all(|&f| shown(e, f) == Some(expect))
        })
        .await;
    let lat = log
        .since(t0)
        .into_iter()
        .filter_map(|(w, at, e)| match (w, e) {
            (
                Who::Follower(_),
                Event::Page {
                    song_epoch, page, ..
                },
            ) if (song_epoch, page) == expect => Some(at.duration_since(t0).as_secs_f64() * 1000.0),
            _ => None,
        })
        .collect();
    (ok, lat)
}

/// A page turn announced 300 ms ahead on the master's clock: every follower turns at that moment
/// of its own clock (estimated from ping/pong), not when the message arrives. Returns the spread
/// of the followers' turns, ms.
pub(super) async fn timed_turn(
    r: &mut Report,
    master: &Node,
    log: &Log,
    epoch: u64,
    who: &[usize],
) -> f64 {
    r.say("a page turn timed 300 ms ahead on the master's clock");
    let clock = Clock::new();
    let t0 = Instant::now();
    let at_ms = clock.now().as_millis() + 300;
    let due = t0 + Duration::from_millis(300);
    tell(master, Command::SetPageAt { page: 9, at: at_ms });
    let ok = log
        .wait(Duration::from_secs(10), |e| {
            who.iter().all(|&f| shown(e, f) == Some((epoch, 9)))
        })
        .await;
    let turns: Vec<Instant> = log
        .since(t0)
        .into_iter()
        .filter_map(|(w, at, e)| match (w, e) {
            (Who::Follower(_), Event::Page { page: 9, .. }) => Some(at),
            _ => None,
        })
        .collect();
    let (Some(first), Some(last)) = (turns.iter().min(), turns.iter().max()) else {
        r.check("every follower turns at the announced time", false);
        return f64::NAN;
    };
    let spread = last.duration_since(*first).as_secs_f64() * 1000.0;
    // Early by more than a few ms would mean the turn was applied on arrival, not scheduled.
    let offset_ms = if *first >= due {
        first.duration_since(due).as_secs_f64() * 1000.0
    } else {
        -(due.duration_since(*first).as_secs_f64() * 1000.0)
    };
    r.check(
        &format!(
            "every follower turned at the announced time: first {offset_ms:+.1} ms from it, spread {spread:.1} ms"
        ),
        ok && offset_ms >= -5.0,
    );
    spread
}

/// The master plays a media item (with a speed change and a seek); every follower predicts the
/// position from the master's clock with no message per frame. Samples every follower's
/// predicted position against the master's every 20 ms while playing; returns the worst error, ms.
pub(super) async fn played_segment(r: &mut Report, master: &Node, log: &Log, who: &[usize]) -> f64 {
    r.say("the master plays a recording: 1.5 s, then 1.5x speed, then a seek");
    let clock = Clock::new();
    let latest = |w: Who| {
        log.entries
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|(x, _, e)| match e {
                Event::Playback(p) if *x == w => Some(p.clone()),
                _ => None,
            })
    };
    let loaded = |media: &'static str, running: bool, rate: f64| {
        move |e: &[(Who, Instant, Event)]| {
            who.iter().all(|&f| {
                e.iter()
                    .rev()
                    .find_map(|(x, _, e)| match e {
                        Event::Playback(p) if *x == Who::Follower(f) => Some(p),
                        _ => None,
                    })
                    .is_some_and(|p| {
                        p.media_id == media && p.running == running && p.rate.get() == rate
                    })
            })
        }
    };
    let mut worst = 0f64;
    let mut samples = 0usize;
    let steps: [(PlaybackOp, f64, u64); 3] = [
        (PlaybackOp::Play, 1.0, 1500),
        (
            PlaybackOp::SetRate {
                rate: Rate::new(1.5),
            },
            1.5,
            1000,
        ),
        (
            PlaybackOp::Seek {
                position_us: 20_000_000,
            },
            1.5,
            1000,
        ),
    ];
    tell(
        master,
        Command::Playback(PlaybackOp::Load {
            media_id: "warm-up".into(),
        }),
    );
    let mut ok = log
        .wait(Duration::from_secs(5), loaded("warm-up", false, 1.0))
        .await;
    for (op, rate, ms) in steps {
        tell(master, Command::Playback(op));
        ok &= log
            .wait(Duration::from_secs(5), loaded("warm-up", true, rate))
            .await;
        let end = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < end {
            let now = clock.now();
            if let Some(m) = latest(Who::Master) {
                let truth = m.position_at(now);
                for &f in who {
                    if let Some(p) = latest(Who::Follower(f)) {
                        let err = p.distance(p.position_at(now), truth) as f64 / 1000.0;
                        worst = worst.max(err);
                        samples += 1;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // the sampling period
        }
    }
    tell(master, Command::Playback(PlaybackOp::Pause));
    ok &= log
        .wait(Duration::from_secs(5), loaded("warm-up", false, 1.5))
        .await;
    r.check(
        &format!(
            "every follower stays within one frame at 24 fps of the master: worst {worst:.2} ms over {samples} samples"
        ),
        ok && samples > 0 && worst <= 1000.0 / 24.0,
    );
    worst
}

impl Rehearsal {
    /// One master command and the check that the followers `who` show `expect`, its latencies
    /// kept for the summary.
    pub(super) async fn turn_checked(
        &mut self,
        cmd: Command,
        expect: (u64, u32),
        who: &[usize],
    ) -> bool {
        let master = self.node().clone();
        let (ok, lat) = turn(&master, &self.log, cmd, expect, who).await;
        self.latencies.extend(lat);
        ok
    }
}
