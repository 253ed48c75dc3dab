//! The live rehearsal: a master and N followers in this process, each its own node with its own
//! WebRTC peer connections on loopback — real DTLS, SCTP and data channels, real clocks. The
//! script and its checks are the same as on the simulated network; the figures are wall-clock.
//!
//! Followers join through the master's real HTTP join endpoint on 127.0.0.1 (offer in, answer
//! out, bound to the join secret and checked against the master's DTLS fingerprint).

use crate::demo::{percentile, DemoArgs, Report};
use lansync::node::Clock;
use lansync::node::{
    follower_dialer, DialFuture, Dialer, Files, FilesEvent, FilesOptions, Host, HostOptions,
    JoinTarget, Node, NodeOptions,
};
use lansync::protocol::{FollowMode, PlaybackOp, Rate, RejectReason};
use lansync::session::{Command, Event, Follower, FollowerConfig, JoinCredentials, MasterConfig};
use lansync::signaling::RateLimit;
use lansync::transfer::ManifestKind;
use lansync::transport::{Identity, LinkSender, TransportConfig};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Who sent an event: the master or follower `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Who {
    Master,
    Follower(usize),
}

/// Every event of every node, with when it arrived.
#[derive(Default)]
struct Log {
    entries: Mutex<Vec<(Who, Instant, Event)>>,
    changed: Notify,
}

impl Log {
    fn collect(self: &Arc<Self>, who: Who, mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>) {
        let log = self.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                log.entries.lock().unwrap().push((who, Instant::now(), e));
                log.changed.notify_waiters();
            }
        });
    }

    /// Collects the session events of a front-door stream (the demo's files have their own log).
    fn collect_app(self: &Arc<Self>, who: Who, mut events: lansync::Events) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let lansync::AppEvent::Session(e) = e {
                    let _ = tx.send(e);
                }
            }
        });
        self.collect(who, rx);
    }

    /// Waits until `done` holds over the log, at most `limit`.
    async fn wait(&self, limit: Duration, done: impl Fn(&[(Who, Instant, Event)]) -> bool) -> bool {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if done(&self.entries.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                return done(&self.entries.lock().unwrap());
            }
        }
    }

    fn since(&self, t: Instant) -> Vec<(Who, Instant, Event)> {
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .filter(|(_, at, _)| *at >= t)
            .cloned()
            .collect()
    }
}

/// Every follower's file events.
#[derive(Default)]
struct FileLog {
    entries: Mutex<Vec<(usize, Instant, FilesEvent)>>,
    changed: Notify,
}

impl FileLog {
    fn collect(
        self: &Arc<Self>,
        f: usize,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<FilesEvent>,
    ) {
        let log = self.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                log.entries.lock().unwrap().push((f, Instant::now(), e));
                log.changed.notify_waiters();
            }
        });
    }

    /// Waits until every follower in `0..n` has an event matching `pred`; returns whether they
    /// did and when the last one came.
    async fn wait_all(&self, n: usize, pred: impl Fn(&FilesEvent) -> bool) -> Option<Instant> {
        let end = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let notified = self.changed.notified();
            {
                let entries = self.entries.lock().unwrap();
                let last = (0..n)
                    .map(|f| {
                        entries
                            .iter()
                            .find(|(w, _, e)| *w == f && pred(e))
                            .map(|(_, at, _)| *at)
                    })
                    .collect::<Option<Vec<Instant>>>();
                if let Some(times) = last {
                    return times.into_iter().max().or(Some(Instant::now()));
                }
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// A small session pack: a score, an audio track and a video, with their real magic bytes.
fn make_pack(dir: &Path) -> Vec<PathBuf> {
    let _ = std::fs::create_dir_all(dir);
    let files: [(&str, &[u8], usize); 3] = [
        ("locus-iste.pdf", b"%PDF-1.7\n", 300_000),
        ("locus-iste-tutti.ogg", b"OggS", 200_000),
        ("warm-up.mp4", b"\0\0\0\x20ftypisom", 500_000),
    ];
    let mut x = 0x9e37_79b9u32;
    files
        .iter()
        .map(|(name, head, len)| {
            let mut bytes = head.to_vec();
            bytes.extend((0..*len).map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            }));
            let path = dir.join(name);
            let _ = std::fs::write(&path, bytes);
            path
        })
        .collect()
}

/// The page a follower shows, from its latest Page event.
fn shown(entries: &[(Who, Instant, Event)], f: usize) -> Option<(u64, u32)> {
    entries.iter().rev().find_map(|(w, _, e)| match e {
        Event::Page {
            song_epoch, page, ..
        } if *w == Who::Follower(f) => Some((*song_epoch, *page)),
        _ => None,
    })
}

fn last_state(entries: &[(Who, Instant, Event)], who: Who) -> Option<String> {
    entries.iter().rev().find_map(|(w, _, e)| match e {
        Event::State { state, .. } if *w == who => Some(state.name().to_string()),
        _ => None,
    })
}

/// Each follower's end of its current link, so the demo can cut it.
type Cuts = Arc<Mutex<HashMap<usize, LinkSender>>>;

/// The library's follower dialer, noting each new link (to cut it later) and its setup time.
fn dialer(i: usize, target: JoinTarget, cuts: Cuts, setups: Arc<Mutex<Vec<f64>>>) -> Dialer {
    let cfg = TransportConfig {
        loopback_only: true,
        ..TransportConfig::default()
    };
    let id = format!("singer-{i}");
    let mut inner = follower_dialer(target, cfg, id.clone(), id);
    Box::new(move |creds: JoinCredentials| {
        let (dial, cuts, setups) = (inner(creds), cuts.clone(), setups.clone());
        let fut: DialFuture = Box::pin(async move {
            let start = Instant::now();
            let link = dial.await?;
            setups
                .lock()
                .unwrap()
                .push(start.elapsed().as_secs_f64() * 1000.0);
            cuts.lock().unwrap().insert(i, link.sender());
            Ok(link)
        });
        fut
    })
}

async fn start_master(
    record_path: &Path,
    bind: SocketAddr,
    identity: &Identity,
    log: &Arc<Log>,
    pack: &Path,
) -> Host {
    let (files, _master_files) = Files::spawn(FilesOptions::new("master"));
    let mut master = MasterConfig::new("master");
    master.device_name = "Choir master".into();
    master.session_name = "Thursday rehearsal".into();
    let mut host = Host::start(HostOptions {
        master,
        record_path: Some(record_path.to_path_buf()),
        identity: Some(identity.clone()),
        state_dir: None,
        advertise: false,
        bind,
        transport: TransportConfig {
            loopback_only: true,
            ..TransportConfig::default()
        },
        // Everyone joins from 127.0.0.1 here, so the per-address rate limit is opened wide.
        rate: RateLimit {
            per_sec: 10_000.0,
            burst: 10_000.0,
        },
        files: Some(files),
    })
    .await
    .expect("cannot start the master on loopback");
    log.collect_app(Who::Master, host.events());
    // Published before anyone joins (as `lansync host --pack`): a newcomer gets it unasked.
    if let Err(e) = host.node.publish_pack(pack.to_path_buf()).await {
        eprintln!("cannot publish the demo pack: {e}");
    }
    host
}

/// One master command, then waits until the followers `who` show `expect`; returns whether they
/// did and every follower's latency for it.
async fn turn(
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
async fn timed_turn(r: &mut Report, master: &Node, log: &Log, epoch: u64, who: &[usize]) -> f64 {
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
async fn played_segment(r: &mut Report, master: &Node, log: &Log, who: &[usize]) -> f64 {
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

/// Runs the live rehearsal; returns whether every check held.
pub async fn run(args: &DemoArgs) -> bool {
    let mut r = Report::new(args.json);
    if !args.json {
        println!("lansync demo: a rehearsal over real WebRTC on loopback (wall-clock figures)");
    }
    let log = Arc::new(Log::default());
    let identity = Identity::generate().expect("cannot make a DTLS identity");
    let dir = std::env::temp_dir().join(format!("lansync-demo-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let record_path = dir.join("master.json");
    let _ = std::fs::remove_file(&record_path);
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let pack_dir = dir.join("pack");
    let pack = make_pack(&pack_dir);
    let pack_bytes: u64 = pack
        .iter()
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .sum();
    let t_start = Instant::now();
    let master = start_master(&record_path, loopback, &identity, &log, &pack_dir).await;
    let master_node = master.node.clone();
    let target = JoinTarget {
        addr: master.local_addr(),
        fingerprint: Some(identity.fingerprint()),
    };
    let hosting = log
        .wait(Duration::from_secs(5), |e| {
            e.iter().any(|(_, _, e)| matches!(e, Event::Hosting { .. }))
        })
        .await;
    let (code, token) = {
        let entries = log.entries.lock().unwrap();
        entries
            .iter()
            .find_map(|(_, _, e)| match e {
                Event::Hosting {
                    session_code,
                    token,
                    ..
                } => Some((session_code.clone(), token.clone())),
                _ => None,
            })
            .unwrap_or_default()
    };
    r.check("the master hosts a session", hosting);
    r.say(&format!("session code {code}"));

    let cuts: Cuts = Arc::default();
    let setups: Arc<Mutex<Vec<f64>>> = Arc::default();
    let files_log = Arc::new(FileLog::default());
    let mut followers = Vec::new();
    for i in 0..args.followers {
        let mut cfg = FollowerConfig::new(format!("singer-{i}"));
        cfg.device_name = format!("Singer {i}");
        let mut files_opts = FilesOptions::new(cfg.device_id.clone());
        files_opts.download_dir = Some(dir.join(format!("singer-{i}")));
        files_opts.stream_dir = Some(dir.join(format!("singer-{i}-stream")));
        let (files, files_events) = Files::spawn(files_opts);
        files_log.collect(i, files_events);
        let opts = NodeOptions {
            dialer: Some(dialer(i, target.clone(), cuts.clone(), setups.clone())),
            record_path: None,
            files: Some(files),
        };
        let (node, events) = Node::spawn(Follower::new(cfg, i as u64 + 1), opts);
        log.collect(Who::Follower(i), events);
        let creds = if i % 2 == 0 {
            JoinCredentials {
                token: Some(token.clone()),
                ..Default::default()
            }
        } else {
            JoinCredentials {
                session_code: Some(code.to_lowercase()),
                ..Default::default()
            }
        };
        tell(&node, Command::Join(creds));
        followers.push(node);
    }
    let n = args.followers;
    let joined_all = |e: &[(Who, Instant, Event)]| {
        (0..n).all(|f| {
            e.iter()
                .any(|(w, _, e)| *w == Who::Follower(f) && matches!(e, Event::Joined { .. }))
        })
    };
    let t_join = Instant::now();
    let ok = log.wait(Duration::from_secs(30), joined_all).await;
    let join_all_ms = t_join.elapsed().as_secs_f64() * 1000.0;
    r.check(
        &format!("{n} followers joined over WebRTC in {join_all_ms:.0} ms (by link and by code)"),
        ok,
    );

    r.say(&format!(
        "every newcomer downloads the session pack ({} files, {:.1} MB) without the master doing anything",
        pack.len(),
        pack_bytes as f64 / 1e6
    ));
    let pack_done = files_log
        .wait_all(n, |e| {
            matches!(
                e,
                FilesEvent::Done {
                    kind: ManifestKind::Pack,
                    ..
                }
            )
        })
        .await;
    let gates = files_log
        .wait_all(n, |e| matches!(e, FilesEvent::StartGate { open: true, .. }))
        .await;
    let same = (0..n).all(|f| {
        pack.iter().all(|p| {
            let got = dir
                .join(format!("singer-{f}"))
                .join(p.file_name().unwrap_or_default());
            std::fs::read(got).ok() == std::fs::read(p).ok()
        })
    });
    let pack_all_ms = pack_done.map_or(f64::NAN, |t| {
        t.duration_since(t_start).as_secs_f64() * 1000.0
    });
    r.check(
        &format!(
            "every follower holds the pack, verified byte for byte, its start gate open ({pack_all_ms:.0} ms from start)"
        ),
        pack_done.is_some() && gates.is_some() && same,
    );

    let mut latencies = Vec::new();
    let mut epoch = 0u64;
    let everyone: Vec<usize> = (0..n).collect();

    r.say("song 1, then 20 rapid page turns 20 ms apart");
    epoch += 1;
    let (ok, lat) = turn(
        &master_node,
        &log,
        Command::SetSong {
            song_id: "ave-maria".into(),
        },
        (epoch, 0),
        &everyone,
    )
    .await;
    latencies.extend(lat);
    r.check("everyone is on song 1", ok);
    for p in 1..=20u32 {
        tell(&master_node, Command::SetPage { page: p });
        tokio::time::sleep(Duration::from_millis(20)).await; // the pace of the script
    }
    let ok = log
        .wait(Duration::from_secs(10), |e| {
            everyone.iter().all(|&f| shown(e, f) == Some((epoch, 20)))
        })
        .await;
    r.check("every follower ends on the last page", ok);
    for p in [21u32, 22] {
        let (ok, lat) = turn(
            &master_node,
            &log,
            Command::SetPage { page: p },
            (epoch, p),
            &everyone,
        )
        .await;
        latencies.extend(lat);
        r.check(&format!("page {p} reaches everyone"), ok);
    }

    if n > 1 {
        r.say("singer 1 goes free and looks at page 7 while the master turns on");
        tell(
            &followers[1],
            Command::SetFollowMode {
                mode: FollowMode::Free,
            },
        );
        tell(&followers[1], Command::SetPage { page: 7 });
        // Its own node applies these asynchronously: wait for it before the master turns on.
        let looked = log
            .wait(Duration::from_secs(5), |e| shown(e, 1) == Some((epoch, 7)))
            .await;
        r.check("singer 1 looks at page 7 on its own", looked);
        let others: Vec<usize> = (0..n).filter(|&f| f != 1).collect();
        let (ok, lat) = turn(
            &master_node,
            &log,
            Command::SetPage { page: 23 },
            (epoch, 23),
            &others,
        )
        .await;
        latencies.extend(lat);
        let free_kept = shown(&log.entries.lock().unwrap(), 1) == Some((epoch, 7));
        r.check(
            "the others follow, the free singer keeps page 7",
            ok && free_kept,
        );
        tell(
            &followers[1],
            Command::SetFollowMode {
                mode: FollowMode::Follow,
            },
        );
        let ok = log
            .wait(Duration::from_secs(5), |e| shown(e, 1) == Some((epoch, 23)))
            .await;
        r.check("back to follow, it shows the master's page at once", ok);
    }

    r.say("song change to song 2");
    epoch += 1;
    let (ok, lat) = turn(
        &master_node,
        &log,
        Command::SetSong {
            song_id: "locus-iste".into(),
        },
        (epoch, 0),
        &everyone,
    )
    .await;
    latencies.extend(lat);
    r.check("everyone is on song 2", ok);

    let mut rejoin_ms = f64::NAN;
    if n > 2 {
        r.say("singer 2's network is cut; the master turns meanwhile");
        if let Some(link) = cuts.lock().unwrap().get(&2) {
            link.simulate_receive_loss(true);
        }
        let t_cut = Instant::now();
        let others: Vec<usize> = (0..n).filter(|&f| f != 2).collect();
        let (_, lat) = turn(
            &master_node,
            &log,
            Command::SetPage { page: 4 },
            (epoch, 4),
            &others,
        )
        .await;
        latencies.extend(lat);
        let lost = log
            .wait(Duration::from_secs(20), |e| {
                last_state(e, Who::Follower(2)).as_deref() == Some("FOLLOWER_DISCONNECTED_LOCAL")
            })
            .await;
        r.check(
            &format!(
                "its heartbeat notices the dead link ({:.1} s) and it keeps its page",
                t_cut.elapsed().as_secs_f64()
            ),
            lost && shown(&log.entries.lock().unwrap(), 2) == Some((epoch, 0)),
        );
        // The network returns: the old link stays dead, the follower redials at once.
        let t_back = Instant::now();
        followers[2].network_changed();
        let back = log
            .wait(Duration::from_secs(10), |e| shown(e, 2) == Some((epoch, 4)))
            .await;
        rejoin_ms = t_back.elapsed().as_secs_f64() * 1000.0;
        r.check(
            &format!("network back: it rejoined and shows page 4 in {rejoin_ms:.1} ms"),
            back,
        );
    }

    r.say("the master crashes and restarts from its saved session");
    master.shutdown().await;
    drop(master_node); // the last handle: the node stops and its links close, as in a crash
    let t_restart = Instant::now();
    let master = start_master(&record_path, target.addr, &identity, &log, &pack_dir).await;
    let master_node = master.node.clone();
    let rejoined = log
        .wait(Duration::from_secs(40), |e| {
            (0..n).all(|f| {
                e.iter().any(|(w, at, e)| {
                    *w == Who::Follower(f)
                        && *at >= t_restart
                        && matches!(e, Event::Joined { rejoin: true, .. })
                })
            })
        })
        .await;
    r.check(
        &format!(
            "same session, everyone rejoined {:.1} s after the restart (backoff included)",
            t_restart.elapsed().as_secs_f64()
        ),
        rejoined,
    );
    let t0 = Instant::now();
    tell(&master_node, Command::SetPage { page: 5 });
    let ok = log
        .wait(Duration::from_secs(10), |e| {
            everyone.iter().all(|&f| shown(e, f) == Some((epoch, 5)))
        })
        .await;
    r.check(
        &format!(
            "and follows the next page turn ({:.1} ms)",
            t0.elapsed().as_secs_f64() * 1000.0
        ),
        ok,
    );

    let timed_spread_ms = timed_turn(&mut r, &master_node, &log, epoch, &everyone).await;
    let position_error_ms_max = played_segment(&mut r, &master_node, &log, &everyone).await;

    r.say("a streamed score for the current song, then cleared");
    let streamed = master_node
        .publish(ManifestKind::Stream, Some(vec![pack[0].clone()]))
        .await
        .is_ok();
    let ready = files_log
        .wait_all(n, |e| matches!(e, FilesEvent::StreamReady { .. }))
        .await;
    r.check(
        "every follower has the streamed score's file, verified",
        streamed && ready.is_some(),
    );
    let _ = master_node.publish(ManifestKind::Stream, None).await;
    let removed = files_log
        .wait_all(n, |e| matches!(e, FilesEvent::StreamRemoved))
        .await;
    let gone = (0..n).all(|f| !dir.join(format!("singer-{f}-stream")).exists());
    r.check(
        "and removes it from disk when the master clears it",
        removed.is_some() && gone,
    );
    let ok = log
        .wait(Duration::from_secs(10), |e| {
            everyone.iter().all(|&f| {
                let got = |pred: fn(&Event) -> bool| {
                    e.iter().any(|(w, _, e)| *w == Who::Follower(f) && pred(e))
                };
                got(|e| matches!(e, Event::StreamPrepared(_)))
                    && got(|e| matches!(e, Event::StreamCleared))
            })
        })
        .await;
    r.check("every follower got the stream and dropped it", ok);

    r.say("the master ends the session");
    tell(&master_node, Command::End);
    let ok = log
        .wait(Duration::from_secs(10), |e| {
            everyone
                .iter()
                .all(|&f| last_state(e, Who::Follower(f)).as_deref() == Some("FOLLOWER_IDLE_LOCAL"))
        })
        .await;
    r.check("every follower is back to local mode", ok);
    let opts = NodeOptions {
        dialer: Some(dialer(n, target.clone(), cuts.clone(), Arc::default())),
        record_path: None,
        files: None,
    };
    let (late, events) = Node::spawn(Follower::new(FollowerConfig::new("latecomer"), 99), opts);
    log.collect(Who::Follower(n), events);
    tell(
        &late,
        Command::Join(JoinCredentials {
            token: Some(token.clone()),
            ..Default::default()
        }),
    );
    let refused = log
        .wait(Duration::from_secs(10), |e| {
            e.iter().any(|(w, _, e)| {
                *w == Who::Follower(n)
                    && matches!(
                        e,
                        Event::Rejected {
                            reason: RejectReason::SessionEnded
                        }
                    )
            })
        })
        .await;
    r.check("the old token is refused", refused);

    latencies.sort_by(f64::total_cmp);
    let mut setup = setups.lock().unwrap().clone();
    setup.sort_by(f64::total_cmp);
    let summary = json!({
        "mode": "live",
        "followers": n,
        "followers_joined": if r.all_ok() { n } else { count_joined(&log, n) },
        "join_all_ms": join_all_ms,
        "setup_ms_p50": percentile(&setup, 0.5),
        "setup_ms_p99": percentile(&setup, 0.99),
        "page_p50_ms": percentile(&latencies, 0.5),
        "page_p99_ms": percentile(&latencies, 0.99),
        "page_samples": latencies.len(),
        "rejoin_ms": rejoin_ms,
        "timed_turn_spread_ms": timed_spread_ms,
        "position_error_ms_max": position_error_ms_max,
        "pack_bytes": pack_bytes,
        "pack_all_ms": pack_all_ms,
    });
    let _ = std::fs::remove_dir_all(&dir);
    r.finish(summary)
}

fn count_joined(log: &Log, n: usize) -> usize {
    let e = log.entries.lock().unwrap();
    (0..n)
        .filter(|&f| {
            e.iter()
                .any(|(w, _, e)| *w == Who::Follower(f) && matches!(e, Event::Joined { .. }))
        })
        .count()
}

/// Gives a node of the demo a command; a stopped node shows up in the checks that follow.
fn tell(node: &Node, cmd: Command) {
    if let Err(e) = node.command(cmd) {
        tracing::warn!(%e, "a demo node has stopped");
    }
}
