//! `lansync demo`: a scripted rehearsal with checks.
//!
//! By default it runs live (`demo_live.rs`): a master and followers in this process over real
//! WebRTC on loopback. With `--sim` the same script runs on the simulated network
//! (`lansync::sim`: virtual clock, 2–5 ms delay), where every figure is in *virtual* time.

use lansync::protocol::{FollowMode, PageState, RejectReason, StreamInfo};
use lansync::session::{
    Command, Event, FollowerConfig, FollowerState, JoinCredentials, MasterConfig, Time,
};
use lansync::sim::{NetConfig, NodeId, Sim};
use serde_json::json;
use std::time::Duration;

/// Options of `lansync demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Number of followers.
    #[arg(long, default_value_t = 8)]
    pub followers: usize,
    /// Seed of the simulated network (same seed, same run).
    #[arg(long, default_value_t = 2024)]
    seed: u64,
    /// Run on the simulated network (virtual time) instead of real WebRTC.
    #[arg(long)]
    sim: bool,
    /// Print one JSON object per line; the last line is the summary.
    #[arg(long)]
    pub json: bool,
}

/// Runs the rehearsal, live or simulated; returns whether every check held.
pub fn run(args: &DemoArgs) -> bool {
    if args.sim {
        return run_sim(args);
    }
    crate::runtime().block_on(crate::demo_live::run(args))
}

/// Narration and checks, human or JSON lines, shared by both rehearsals.
pub struct Report {
    json: bool,
    checks: Vec<(String, bool)>,
}

impl Report {
    /// A report printing JSON lines when `json`.
    pub fn new(json: bool) -> Report {
        Report {
            json,
            checks: Vec::new(),
        }
    }

    /// Narrates a step.
    pub fn say(&self, text: &str) {
        if self.json {
            println!("{}", json!({"event": "step", "text": text}));
        } else {
            println!("  {text}");
        }
    }

    /// Records and prints a check.
    pub fn check(&mut self, what: &str, ok: bool) {
        if self.json {
            println!("{}", json!({"event": "check", "what": what, "ok": ok}));
        } else {
            println!("  {} {what}", if ok { "✓" } else { "✗" });
        }
        self.checks.push((what.to_string(), ok));
    }

    /// Whether every check so far held.
    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|(_, ok)| *ok)
    }

    /// Prints the summary (adding the check counts and `converged`); returns `converged`.
    pub fn finish(&self, mut summary: serde_json::Value) -> bool {
        let passed = self.checks.iter().filter(|(_, ok)| *ok).count();
        let converged = self.all_ok();
        summary["checks_passed"] = json!(passed);
        summary["checks"] = json!(self.checks.len());
        summary["converged"] = json!(converged);
        if self.json {
            println!("{summary}");
        } else {
            println!(
                "\n{} — {passed} of {} checks held; page turn p50 {:.2} ms, p99 {:.2} ms",
                if converged {
                    "converged"
                } else {
                    "NOT converged"
                },
                self.checks.len(),
                summary["page_p50_ms"].as_f64().unwrap_or(f64::NAN),
                summary["page_p99_ms"].as_f64().unwrap_or(f64::NAN),
            );
        }
        converged
    }
}

struct Rehearsal {
    sim: Sim,
    master: NodeId,
    followers: Vec<NodeId>,
    report: Report,
    page_latencies_ms: Vec<f64>,
}

impl Rehearsal {
    fn say(&self, text: &str) {
        self.report.say(text);
    }

    fn check(&mut self, what: &str, ok: bool) {
        self.report.check(what, ok);
    }

    fn run(&mut self, ms: u64) {
        self.sim.run_for(Duration::from_millis(ms));
    }

    fn master_page(&self) -> PageState {
        self.sim.master(self.master).page().clone()
    }

    fn view(&self, f: NodeId) -> PageState {
        self.sim.follower(f).view().clone()
    }

    /// A master command, then the time each follower took to show its result.
    fn master_turns(&mut self, cmd: Command) {
        let start = self.sim.now;
        self.sim.command(self.master, cmd);
        let target = self.master_page();
        self.run(500);
        for &f in &self.followers {
            if self.sim.follower(f).follow_mode() != FollowMode::Follow {
                continue;
            }
            let shown = self.sim.events.iter().find(|l| {
                l.node == f
                    && l.at >= start
                    && matches!(&l.event, Event::Page { song_epoch, page, .. }
                        if *song_epoch == target.song_epoch && *page == target.page_index)
            });
            if let Some(l) = shown {
                self.page_latencies_ms
                    .push(l.at.since(start).as_secs_f64() * 1000.0);
            }
        }
    }

    fn all_following_show(&self, page: &PageState) -> bool {
        self.followers.iter().all(|&f| {
            let fol = self.sim.follower(f);
            let v = fol.view();
            fol.follow_mode() == FollowMode::Free
                || (v.song_id == page.song_id
                    && v.song_epoch == page.song_epoch
                    && v.page_index == page.page_index)
        })
    }

    fn joined(&self) -> usize {
        self.followers
            .iter()
            .filter(|&&f| {
                matches!(
                    self.sim.follower(f).state(),
                    FollowerState::ConnectedFollow | FollowerState::ConnectedFree
                )
            })
            .count()
    }
}

/// The rehearsal's streamed score for the current song (both rehearsals announce the same one).
pub fn streamed_score() -> Command {
    Command::StreamPrepare(StreamInfo {
        stream_id: "score-1".into(),
        song_epoch: 0, // the master stamps its current epoch
        name: "locus-iste.pdf".into(),
        mime: "application/pdf".into(),
        size: 0,
        sha256: String::new(),
    })
}

/// How follower `i` of either demo joins: even ones by the QR link's token, odd ones by the
/// session code typed in lower case, so both ways are exercised.
pub fn credentials(i: usize, token: &str, session_code: &str) -> JoinCredentials {
    if i % 2 == 0 {
        JoinCredentials {
            token: Some(token.to_string()),
            ..Default::default()
        }
    } else {
        JoinCredentials {
            session_code: Some(session_code.to_lowercase()),
            ..Default::default()
        }
    }
}

/// The `p` quantile of sorted samples (NaN when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// The rehearsal on the simulated network; returns whether every check held.
fn run_sim(args: &DemoArgs) -> bool {
    let mut sim = Sim::new(args.seed);
    sim.net = NetConfig {
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(3),
        // Data channels are reliable: loss and duplication are the property tests' business.
        loss: 0.0,
        duplicate: 0.0,
        connect_time: Duration::from_millis(20),
    };
    let mut cfg = MasterConfig::new("master");
    cfg.device_name = "Choir master".into();
    cfg.session_name = "Thursday rehearsal".into();
    let master = sim.add_master(cfg);
    let mut r = Rehearsal {
        sim,
        master,
        followers: Vec::new(),
        report: Report::new(args.json),
        page_latencies_ms: Vec::new(),
    };
    if !args.json {
        println!("lansync demo: a rehearsal on the simulated network (virtual time)");
    }
    let rec = r.sim.master(master).record().clone();
    r.say(&format!(
        "master hosts \"{}\", session code {}",
        rec.session_name,
        rec.session_code.as_str()
    ));

    // Half join by QR link (token), half by typing the session code.
    for i in 0..args.followers {
        let mut cfg = FollowerConfig::new(format!("singer-{i}"));
        cfg.device_name = format!("Singer {i}");
        let f = r.sim.add_follower(cfg, master);
        let creds = credentials(i, &rec.token, rec.session_code.as_str());
        r.sim.command(f, Command::Join(creds));
        r.followers.push(f);
    }
    r.run(2000);
    let joined = r.joined();
    r.check(
        &format!(
            "{joined} of {} followers joined (by link and by code)",
            args.followers
        ),
        joined == args.followers,
    );
    let count = r.sim.master(master).count() as usize;
    r.check(
        &format!("presence lists {count} participants"),
        count == args.followers + 1,
    );

    r.say("song 1, then 20 rapid page turns 20 ms apart");
    r.master_turns(Command::SetSong {
        song_id: "ave-maria".into(),
    });
    for p in 1..=20 {
        r.sim.command(master, Command::SetPage { page: p });
        r.run(20);
    }
    r.run(1000);
    let page = r.master_page();
    r.check(
        "every follower ends on the last page",
        r.all_following_show(&page),
    );

    if let Some(&free) = r.followers.get(1) {
        r.say("singer 1 goes free and looks at page 7 while the master turns on");
        r.sim.command(
            free,
            Command::SetFollowMode {
                mode: FollowMode::Free,
            },
        );
        r.sim.command(free, Command::SetPage { page: 7 });
        r.master_turns(Command::SetPage { page: 21 });
        r.master_turns(Command::SetPage { page: 22 });
        r.check("the free singer keeps page 7", r.view(free).page_index == 7);
        r.sim.command(
            free,
            Command::SetFollowMode {
                mode: FollowMode::Follow,
            },
        );
        r.check(
            "back to follow, it shows the master's page at once",
            r.view(free).page_index == 22,
        );
    }

    r.say("song change to song 2, page 3");
    r.master_turns(Command::SetSong {
        song_id: "locus-iste".into(),
    });
    r.master_turns(Command::SetPage { page: 3 });
    let page = r.master_page();
    r.check("everyone is on song 2, page 3", r.all_following_show(&page));

    let mut rejoin_ms = f64::NAN;
    if let Some(&cut) = r.followers.get(2) {
        r.say("singer 2's link is cut; the master turns twice meanwhile");
        r.sim.partition(master, cut);
        r.sim.cut(master, cut);
        r.master_turns(Command::SetPage { page: 4 });
        r.master_turns(Command::SetPage { page: 5 });
        r.sim.command(cut, Command::SetPage { page: 1 });
        r.check(
            "the cut singer still navigates locally",
            r.view(cut).page_index == 1,
        );
        r.sim.heal();
        let healed = r.sim.now;
        r.run(40_000);
        let back = r.sim.events.iter().find(|l| {
            l.node == cut && l.at >= healed && matches!(l.event, Event::Joined { rejoin: true, .. })
        });
        if let Some(l) = back {
            rejoin_ms = l.at.since(healed).as_secs_f64() * 1000.0;
        }
        r.check(
            &format!("it rejoined by itself {rejoin_ms:.0} ms after the link returned (backoff wait included) and shows page 5"),
            back.is_some() && r.view(cut).page_index == 5,
        );
    }

    r.say("the master crashes and restarts from its saved session");
    let before = r.sim.master(master).record().clone();
    r.sim.crash(master);
    r.run(12_000);
    r.check(
        "followers keep their page while the master is gone",
        r.followers.iter().all(|&f| r.view(f).page_index == 5),
    );
    r.sim.restart(master);
    r.run(40_000);
    let after = r.sim.master(master).record().clone();
    r.check(
        "same session after restart, everyone rejoined",
        after.session_id == before.session_id && r.joined() == args.followers,
    );
    r.master_turns(Command::SetPage { page: 6 });
    let page = r.master_page();
    r.check(
        "and follows the next page turn",
        r.all_following_show(&page),
    );

    r.say("a streamed score for the current song, then cleared");
    r.sim.command(master, streamed_score());
    r.run(500);
    let streamed = r
        .followers
        .iter()
        .all(|&f| r.sim.follower(f).stream().is_some());
    r.sim.command(master, Command::StreamClear);
    r.run(500);
    let cleared = r
        .followers
        .iter()
        .all(|&f| r.sim.follower(f).stream().is_none());
    r.check(
        "every follower got the stream and dropped it",
        streamed && cleared,
    );

    r.say("the master ends the session");
    r.sim.command(master, Command::End);
    r.run(1000);
    r.check(
        "every follower is back to local mode",
        r.followers
            .iter()
            .all(|&f| r.sim.follower(f).state() == FollowerState::IdleLocal),
    );
    let late = r.sim.add_follower(FollowerConfig::new("latecomer"), master);
    r.sim.command(
        late,
        Command::Join(JoinCredentials {
            token: Some(rec.token.clone()),
            ..Default::default()
        }),
    );
    r.run(1000);
    let refused = r.sim.events_of(late).any(|e| {
        matches!(
            e,
            Event::Rejected {
                reason: RejectReason::SessionEnded
            }
        )
    });
    r.check("the old token is refused", refused);

    let mut lat = r.page_latencies_ms.clone();
    lat.sort_by(f64::total_cmp);
    let summary = json!({
        "mode": "sim",
        "followers": args.followers,
        "followers_joined": joined,
        "setup_ms_p50": serde_json::Value::Null,
        "page_p50_ms": percentile(&lat, 0.5),
        "page_p99_ms": percentile(&lat, 0.99),
        "page_samples": lat.len(),
        "rejoin_ms": rejoin_ms,
        "messages_sent": r.sim.sent,
        "virtual_seconds": r.sim.now.since(Time::from_millis(lansync::sim::EPOCH_MS)).as_secs(),
    });
    r.report.finish(summary)
}
