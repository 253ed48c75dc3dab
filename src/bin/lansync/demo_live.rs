//! The live rehearsal: a master and N followers in this process, each its own node with its own
//! WebRTC peer connections on loopback — real DTLS, SCTP and data channels, real clocks. The
//! script and its checks are the same as on the simulated network; the figures are wall-clock.
//!
//! Followers join through the master's real HTTP join endpoint on 127.0.0.1 (offer in, answer
//! out, bound to the join secret and checked against the master's DTLS fingerprint).
//!
//! What lives where: this file, [`run`] (the script, one named step a line) and the
//! rehearsal's state; `steps.rs`, each step; `measure.rs`, the measured moves a step makes (a
//! page turn, a timed turn, a played recording); `log.rs`, the events seen and the questions
//! asked of them; `setup.rs`, the pack, the master, the followers' dialers.

mod log;
mod measure;
mod setup;
mod steps;

use crate::demo::{percentile, DemoArgs, Report};
use lansync::node::{Host, JoinTarget, Node};
use lansync::transport::Identity;
use log::{count_joined, FileLog, Log};
use serde_json::json;
use setup::Cuts;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Runs the live rehearsal; returns whether every check held.
pub async fn run(args: &DemoArgs) -> bool {
    let r = Report::new(args.json);
    if !args.json {
        println!("lansync demo: a rehearsal over real WebRTC on loopback (wall-clock figures)");
    }
    let mut demo = Rehearsal::master_hosts(r, args.followers).await;
    demo.followers_join().await;
    demo.newcomers_get_the_pack().await;
    demo.song_one_and_rapid_turns().await;
    if demo.n > 1 {
        demo.a_singer_goes_free().await;
    }
    demo.song_change().await;
    if demo.n > 2 {
        demo.a_network_cut_and_rejoin().await;
    }
    demo.master_crashes_and_restarts().await;
    demo.timed_page_turn().await;
    demo.played_recording().await;
    demo.streamed_score().await;
    demo.master_ends_the_session().await;
    demo.the_old_token_is_refused().await;
    demo.finish()
}

/// The running master: its front door and its node.
struct Master {
    host: Host,
    node: Node,
}

/// The figures the summary reports, filled in by the steps that measure them.
struct Figures {
    join_all_ms: f64,
    pack_all_ms: f64,
    rejoin_ms: f64,
    timed_spread_ms: f64,
    position_error_ms_max: f64,
}

impl Figures {
    /// Every figure not measured (yet): a step that does not run leaves it `NaN`.
    fn unmeasured() -> Figures {
        Figures {
            join_all_ms: f64::NAN,
            pack_all_ms: f64::NAN,
            rejoin_ms: f64::NAN,
            timed_spread_ms: f64::NAN,
            position_error_ms_max: f64::NAN,
        }
    }
}

/// Everything the script's steps share.
struct Rehearsal {
    r: Report,
    /// How many followers.
    n: usize,
    log: Arc<Log>,
    files_log: Arc<FileLog>,
    identity: Identity,
    dir: PathBuf,
    record_path: PathBuf,
    pack_dir: PathBuf,
    pack: Vec<PathBuf>,
    pack_bytes: u64,
    t_start: Instant,
    master: Option<Master>,
    target: JoinTarget,
    code: String,
    token: String,
    cuts: Cuts,
    setups: Arc<Mutex<Vec<f64>>>,
    followers: Vec<Node>,
    everyone: Vec<usize>,
    /// The current song's epoch.
    epoch: u64,
    /// Every follower's page turn latencies, ms.
    latencies: Vec<f64>,
    figures: Figures,
}

impl Rehearsal {
    /// The running master's node.
    fn node(&self) -> &Node {
        &self.master.as_ref().expect("the master runs").node
    }

    /// The summary: the figures, the latencies and setup times; removes the demo's files.
    fn finish(mut self) -> bool {
        let n = self.n;
        self.latencies.sort_by(f64::total_cmp);
        let mut setup = self.setups.lock().unwrap().clone();
        setup.sort_by(f64::total_cmp);
        let f = &self.figures;
        let summary = json!({
            "mode": "live",
            "followers": n,
            "followers_joined": if self.r.all_ok() { n } else { count_joined(&self.log, n) },
            "join_all_ms": f.join_all_ms,
            "setup_ms_p50": percentile(&setup, 0.5),
            "setup_ms_p99": percentile(&setup, 0.99),
            "page_p50_ms": percentile(&self.latencies, 0.5),
            "page_p99_ms": percentile(&self.latencies, 0.99),
            "page_samples": self.latencies.len(),
            "rejoin_ms": f.rejoin_ms,
            "timed_turn_spread_ms": f.timed_spread_ms,
            "position_error_ms_max": f.position_error_ms_max,
            "pack_bytes": self.pack_bytes,
            "pack_all_ms": f.pack_all_ms,
        });
        let _ = std::fs::remove_dir_all(&self.dir);
        self.r.finish(summary)
    }
}
