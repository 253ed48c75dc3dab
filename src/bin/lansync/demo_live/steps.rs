//! The rehearsal's steps, in the order of the script ([`super::run`]): each narrates what the
//! viewer sees (`say`) and checks what must hold (`check`).

use super::log::{last_state, shown, FileLog, Log, Who};
use super::measure::{played_segment, timed_turn};
use super::setup::{dialer, make_pack, start_master, tell, Cuts};
use super::{Figures, Master, Rehearsal};
use crate::demo::{credentials, Report};
use lansync::node::{Files, FilesEvent, FilesOptions, JoinTarget, Node, NodeOptions};
use lansync::protocol::{FollowMode, RejectReason};
use lansync::session::{Command, Event, Follower, FollowerConfig, JoinCredentials};
use lansync::transfer::ManifestKind;
use lansync::transport::Identity;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

impl Rehearsal {
    /// The master starts on loopback with the session pack published: the viewer sees that it
    /// hosts a session, and its code.
    pub(super) async fn master_hosts(mut r: Report, n: usize) -> Rehearsal {
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
        let host = start_master(&record_path, loopback, &identity, &log, &pack_dir).await;
        let node = host.node.clone();
        let target = JoinTarget {
            addr: host.local_addr(),
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
        Rehearsal {
            r,
            n,
            log,
            files_log: Arc::new(FileLog::default()),
            identity,
            dir,
            record_path,
            pack_dir,
            pack,
            pack_bytes,
            t_start,
            master: Some(Master { host, node }),
            target,
            code,
            token,
            cuts: Cuts::default(),
            setups: Arc::default(),
            followers: Vec::new(),
            everyone: (0..n).collect(),
            epoch: 0,
            latencies: Vec::new(),
            figures: Figures::unmeasured(),
        }
    }

    /// Every follower joins over WebRTC, half by the QR link's token and half by the session
    /// code: the viewer sees how long it took for all of them.
    pub(super) async fn followers_join(&mut self) {
        for i in 0..self.n {
            let mut cfg = FollowerConfig::new(format!("singer-{i}"));
            cfg.device_name = format!("Singer {i}");
            let mut files_opts = FilesOptions::new(cfg.device_id.clone());
            files_opts.download_dir = Some(self.dir.join(format!("singer-{i}")));
            files_opts.stream_dir = Some(self.dir.join(format!("singer-{i}-stream")));
            let (files, files_events) = Files::spawn(files_opts);
            self.files_log.collect(i, files_events);
            let opts = NodeOptions {
                dialer: Some(dialer(
                    i,
                    self.target.clone(),
                    self.cuts.clone(),
                    self.setups.clone(),
                )),
                record_path: None,
                files: Some(files),
            };
            let (node, events) = Node::spawn(Follower::new(cfg, i as u64 + 1), opts);
            self.log.collect(Who::Follower(i), events);
            let creds = credentials(i, &self.token, &self.code);
            tell(&node, Command::Join(creds));
            self.followers.push(node);
        }
        let n = self.n;
        let joined_all = |e: &[(Who, Instant, Event)]| {
            (0..n).all(|f| {
                e.iter()
                    .any(|(w, _, e)| *w == Who::Follower(f) && matches!(e, Event::Joined { .. }))
            })
        };
        let t_join = Instant::now();
        let ok = self.log.wait(Duration::from_secs(30), joined_all).await;
        let join_all_ms = t_join.elapsed().as_secs_f64() * 1000.0;
        self.figures.join_all_ms = join_all_ms;
        self.r.check(
            &format!(
                "{n} followers joined over WebRTC in {join_all_ms:.0} ms (by link and by code)"
            ),
            ok,
        );
    }

    /// Every newcomer downloads the session pack unasked: the viewer sees each follower hold it,
    /// byte for byte, with its start gate open.
    pub(super) async fn newcomers_get_the_pack(&mut self) {
        let (n, pack, dir) = (self.n, &self.pack, &self.dir);
        self.r.say(&format!(
            "every newcomer downloads the session pack ({} files, {:.1} MB) without the master doing anything",
            pack.len(),
            self.pack_bytes as f64 / 1e6
        ));
        let pack_done = self
            .files_log
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
        let gates = self
            .files_log
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
            t.duration_since(self.t_start).as_secs_f64() * 1000.0
        });
        self.figures.pack_all_ms = pack_all_ms;
        self.r.check(
            &format!(
                "every follower holds the pack, verified byte for byte, its start gate open ({pack_all_ms:.0} ms from start)"
            ),
            pack_done.is_some() && gates.is_some() && same,
        );
    }

    /// Song 1, then 20 page turns 20 ms apart and two more: the viewer sees every follower end
    /// on the last page, and each later page reach everyone.
    pub(super) async fn song_one_and_rapid_turns(&mut self) {
        self.r.say("song 1, then 20 rapid page turns 20 ms apart");
        self.epoch += 1;
        let (epoch, everyone) = (self.epoch, self.everyone.clone());
        let song = Command::SetSong {
            song_id: "ave-maria".into(),
        };
        let ok = self.turn_checked(song, (epoch, 0), &everyone).await;
        self.r.check("everyone is on song 1", ok);
        for p in 1..=20u32 {
            tell(self.node(), Command::SetPage { page: p });
            tokio::time::sleep(Duration::from_millis(20)).await; // the pace of the script
        }
        let ok = self
            .log
            .wait(Duration::from_secs(10), |e| {
                everyone.iter().all(|&f| shown(e, f) == Some((epoch, 20)))
            })
            .await;
        self.r.check("every follower ends on the last page", ok);
        for p in [21u32, 22] {
            let ok = self
                .turn_checked(Command::SetPage { page: p }, (epoch, p), &everyone)
                .await;
            self.r.check(&format!("page {p} reaches everyone"), ok);
        }
    }

    /// Singer 1 goes free and looks at page 7 while the master turns on: the viewer sees the
    /// others follow, singer 1 keep its page, then catch up when it follows again.
    pub(super) async fn a_singer_goes_free(&mut self) {
        let (n, epoch) = (self.n, self.epoch);
        self.r
            .say("singer 1 goes free and looks at page 7 while the master turns on");
        tell(
            &self.followers[1],
            Command::SetFollowMode {
                mode: FollowMode::Free,
            },
        );
        tell(&self.followers[1], Command::SetPage { page: 7 });
        // Its own node applies these asynchronously: wait for it before the master turns on.
        let looked = self
            .log
            .wait(Duration::from_secs(5), |e| shown(e, 1) == Some((epoch, 7)))
            .await;
        self.r.check("singer 1 looks at page 7 on its own", looked);
        let others: Vec<usize> = (0..n).filter(|&f| f != 1).collect();
        let ok = self
            .turn_checked(Command::SetPage { page: 23 }, (epoch, 23), &others)
            .await;
        let free_kept = shown(&self.log.entries.lock().unwrap(), 1) == Some((epoch, 7));
        self.r.check(
            "the others follow, the free singer keeps page 7",
            ok && free_kept,
        );
        tell(
            &self.followers[1],
            Command::SetFollowMode {
                mode: FollowMode::Follow,
            },
        );
        let ok = self
            .log
            .wait(Duration::from_secs(5), |e| shown(e, 1) == Some((epoch, 23)))
            .await;
        self.r
            .check("back to follow, it shows the master's page at once", ok);
    }

    /// The master changes to song 2: the viewer sees everyone on its first page.
    pub(super) async fn song_change(&mut self) {
        self.r.say("song change to song 2");
        self.epoch += 1;
        let song = Command::SetSong {
            song_id: "locus-iste".into(),
        };
        let everyone = self.everyone.clone();
        let ok = self.turn_checked(song, (self.epoch, 0), &everyone).await;
        self.r.check("everyone is on song 2", ok);
    }

    /// Singer 2's network is cut while the master turns: the viewer sees its heartbeat notice
    /// the dead link with its page kept, and, the network back, a rejoin onto the master's page.
    pub(super) async fn a_network_cut_and_rejoin(&mut self) {
        let (n, epoch) = (self.n, self.epoch);
        self.r
            .say("singer 2's network is cut; the master turns meanwhile");
        if let Some(link) = self.cuts.lock().unwrap().get(&2) {
            link.simulate_receive_loss(true);
        }
        let t_cut = Instant::now();
        let others: Vec<usize> = (0..n).filter(|&f| f != 2).collect();
        self.turn_checked(Command::SetPage { page: 4 }, (epoch, 4), &others)
            .await;
        let lost = self
            .log
            .wait(Duration::from_secs(20), |e| {
                last_state(e, Who::Follower(2)).as_deref() == Some("FOLLOWER_DISCONNECTED_LOCAL")
            })
            .await;
        self.r.check(
            &format!(
                "its heartbeat notices the dead link ({:.1} s) and it keeps its page",
                t_cut.elapsed().as_secs_f64()
            ),
            lost && shown(&self.log.entries.lock().unwrap(), 2) == Some((epoch, 0)),
        );
        // The network returns: the old link stays dead, the follower redials at once.
        let t_back = Instant::now();
        self.followers[2].network_changed();
        let back = self
            .log
            .wait(Duration::from_secs(10), |e| shown(e, 2) == Some((epoch, 4)))
            .await;
        let rejoin_ms = t_back.elapsed().as_secs_f64() * 1000.0;
        self.figures.rejoin_ms = rejoin_ms;
        self.r.check(
            &format!("network back: it rejoined and shows page 4 in {rejoin_ms:.1} ms"),
            back,
        );
    }

    /// The master crashes and restarts from its saved session: the viewer sees everyone rejoin
    /// the same session, then follow the next page turn.
    pub(super) async fn master_crashes_and_restarts(&mut self) {
        self.r
            .say("the master crashes and restarts from its saved session");
        let Master { host, node } = self.master.take().expect("the master runs");
        host.shutdown().await;
        drop(node); // the last handle: the node stops and its links close, as in a crash
        let t_restart = Instant::now();
        let host = start_master(
            &self.record_path,
            self.target.addr,
            &self.identity,
            &self.log,
            &self.pack_dir,
        )
        .await;
        let node = host.node.clone();
        self.master = Some(Master { host, node });
        let n = self.n;
        let rejoined = self
            .log
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
        self.r.check(
            &format!(
                "same session, everyone rejoined {:.1} s after the restart (backoff included)",
                t_restart.elapsed().as_secs_f64()
            ),
            rejoined,
        );
        let (epoch, everyone) = (self.epoch, &self.everyone);
        let t0 = Instant::now();
        tell(self.node(), Command::SetPage { page: 5 });
        let ok = self
            .log
            .wait(Duration::from_secs(10), |e| {
                everyone.iter().all(|&f| shown(e, f) == Some((epoch, 5)))
            })
            .await;
        self.r.check(
            &format!(
                "and follows the next page turn ({:.1} ms)",
                t0.elapsed().as_secs_f64() * 1000.0
            ),
            ok,
        );
    }

    /// A page turn announced 300 ms ahead: the viewer sees every follower turn at that moment.
    pub(super) async fn timed_page_turn(&mut self) {
        let master = self.node().clone();
        self.figures.timed_spread_ms =
            timed_turn(&mut self.r, &master, &self.log, self.epoch, &self.everyone).await;
    }

    /// The master plays a recording, changes its speed and seeks: the viewer sees every
    /// follower stay within a frame of the master's position.
    pub(super) async fn played_recording(&mut self) {
        let master = self.node().clone();
        self.figures.position_error_ms_max =
            played_segment(&mut self.r, &master, &self.log, &self.everyone).await;
    }

    /// A streamed score for the current song, then cleared: the viewer sees every follower get
    /// the file and remove it from disk.
    pub(super) async fn streamed_score(&mut self) {
        let n = self.n;
        self.r
            .say("a streamed score for the current song, then cleared");
        let master = self.node().clone();
        let streamed = master
            .publish(ManifestKind::Stream, Some(vec![self.pack[0].clone()]))
            .await
            .is_ok();
        let ready = self
            .files_log
            .wait_all(n, |e| matches!(e, FilesEvent::StreamReady { .. }))
            .await;
        self.r.check(
            "every follower has the streamed score's file, verified",
            streamed && ready.is_some(),
        );
        let _ = master.publish(ManifestKind::Stream, None).await;
        let removed = self
            .files_log
            .wait_all(n, |e| matches!(e, FilesEvent::StreamRemoved))
            .await;
        let gone = (0..n).all(|f| !self.dir.join(format!("singer-{f}-stream")).exists());
        self.r.check(
            "and removes it from disk when the master clears it",
            removed.is_some() && gone,
        );
        let everyone = &self.everyone;
        let ok = self
            .log
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
        self.r
            .check("every follower got the stream and dropped it", ok);
    }

    /// The master ends the session: the viewer sees every follower back in local mode.
    pub(super) async fn master_ends_the_session(&mut self) {
        self.r.say("the master ends the session");
        tell(self.node(), Command::End);
        let everyone = &self.everyone;
        let ok = self
            .log
            .wait(Duration::from_secs(10), |e| {
                everyone.iter().all(|&f| {
                    last_state(e, Who::Follower(f)).as_deref() == Some("FOLLOWER_IDLE_LOCAL")
                })
            })
            .await;
        self.r.check("every follower is back to local mode", ok);
    }

    /// A latecomer tries the ended session's token: the viewer sees it refused.
    pub(super) async fn the_old_token_is_refused(&mut self) {
        let n = self.n;
        let opts = NodeOptions {
            dialer: Some(dialer(
                n,
                self.target.clone(),
                self.cuts.clone(),
                Arc::<Mutex<Vec<f64>>>::default(),
            )),
            record_path: None,
            files: None,
        };
        let (late, events) = Node::spawn(Follower::new(FollowerConfig::new("latecomer"), 99), opts);
        self.log.collect(Who::Follower(n), events);
        tell(
            &late,
            Command::Join(JoinCredentials {
                token: Some(self.token.clone()),
                ..Default::default()
            }),
        );
        let refused = self
            .log
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
        self.r.check("the old token is refused", refused);
    }
}
