//! Remembered pairs on a real (virtual) LAN (PROTOCOL.md §6.1, §9, §10.3): two `lansync pair`
//! processes in their own network namespaces on a bridge pair once by codes, then find each
//! other again with no code after either is killed (SIGKILL) and restarted, and after the link
//! is cut (nftables) for longer than the heartbeat allows, and after the waiting side moves to
//! another address. A third namespace holds an impostor
//! that copies the pair's advert name and answers on its own endpoint: the dialing side never
//! connects to it, and its joins at the waiting side's endpoint are refused.
//!
//! Needs root, iproute2 and nftables; without them the test says why and passes.
//! Run: `cargo test --release --test pair_remembered -- --nocapture` (as root). Set
//! `PAIR_REPEAT=N` to measure the restart → paired time N times per direction.
#![cfg(feature = "native")]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const IMPOSTOR_ENV: &str = "LANSYNC_PAIR_IMPOSTOR";
/// Generous: a waiting side killed is only noticed after the heartbeat's 10 s.
const DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The private LAN: a bridge, one namespace per device (prefix `pi`), removed on drop.

#[path = "common/lan.rs"]
mod lan;
use lan::Lan;

// ---------------------------------------------------------------------------------------------
// One `lansync pair` (or impostor) process in a namespace, read as JSON lines.

struct Dev {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    started: Instant,
}

impl Dev {
    fn spawn(name: &str, mut cmd: Command) -> Dev {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test … " before the impostor's line.
                let json = line.find('{').map_or("", |at| &line[at..]);
                if let Ok(v) = serde_json::from_str::<Value>(json) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Dev {
            name: name.to_string(),
            child,
            stdin,
            lines,
            started: Instant::now(),
        }
    }

    /// `lansync ARGS` in namespace `ns`.
    fn lansync(name: &str, ns: &str, args: &[&str]) -> Dev {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_lansync")])
            .args(args)
            .env(
                "LANSYNC_LOG",
                std::env::var("PAIR_LOG").unwrap_or("error".into()),
            );
        Dev::spawn(name, cmd)
    }

    fn send(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The first event matching `pred` within `within`; `None` if none came.
    fn next(&self, within: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if pred(&v) => return Some(v),
                Ok(v) => assert_ne!(v["event"], "error", "{}: {v}", self.name),
                Err(_) => return None,
            }
        }
    }

    fn wait(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.next(DEADLINE, pred)
            .unwrap_or_else(|| panic!("{}: no {what} within {DEADLINE:?}", self.name))
    }

    fn wait_paired(&self) {
        self.wait("paired", |v| {
            v["event"] == "state" && v["state"] == "SOLO_PAIRED_CONNECTED"
        });
    }

    fn wait_page(&self, page: u64) {
        self.wait(&format!("page {page}"), |v| {
            v["event"] == "page" && v["page"] == page
        });
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pair_args<'a>(verb: &[&'a str], name: &'a str, dir: &'a str) -> Vec<&'a str> {
    let mut v = verb.to_vec();
    v.extend(["--json", "--name", name, "--state-dir", dir]);
    v
}

/// A scratch directory, removed on drop.
struct Work(std::path::PathBuf);

impl Work {
    fn new() -> Work {
        let dir = std::env::temp_dir().join(format!("lansync-pi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Work(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn a_remembered_pair_finds_itself_again_after_restarts_and_a_cut_and_never_an_impostor() {
    let Some(lan) = Lan::try_new("pi", "10.219.1", 3, &["nft"]) else {
        return;
    };
    let work = Work::new();
    let dir_a = work.path().join("a").display().to_string();
    let dir_b = work.path().join("b").display().to_string();
    let (ns_a, ns_b) = (lan.ns(0), lan.ns(1));

    // Paired once by codes: A offers (it dials later), B answers (it waits).
    let mut a = Dev::lansync(
        "A",
        ns_a,
        &pair_args(&["pair", "offer"], "Tablet-A", &dir_a),
    );
    let invite = a.wait("invite", |v| v["event"] == "invite")["code"]
        .as_str()
        .unwrap()
        .to_string();
    let mut answer_args = pair_args(&["pair", "answer"], "Tablet-B", &dir_b);
    answer_args.insert(2, &invite);
    let mut b = Dev::lansync("B", ns_b, &answer_args);
    let answer = b.wait("answer", |v| v["event"] == "answer")["code"].clone();
    a.send(json!({"cmd":"answer","code":answer}));
    for d in [&a, &b] {
        let v = d.wait("pair_remembered", |v| v["event"] == "pair_remembered");
        assert!(v.get("pair_secret").is_none(), "no secret in events: {v}");
    }

    let repeat: usize = std::env::var("PAIR_REPEAT")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut page = 0;
    let (mut waiter_times, mut dialer_times) = (Vec::new(), Vec::new());
    for _ in 0..repeat {
        // The waiting side killed; the survivor turns a page meanwhile; B restarted with no code.
        b.kill();
        page += 1;
        a.send(json!({"cmd":"set_page","page":page}));
        a.wait_page(page);
        b = Dev::lansync("B", ns_b, &pair_args(&["pair"], "Tablet-B", &dir_b));
        b.wait_paired();
        waiter_times.push(b.started.elapsed().as_secs_f64());
        b.wait_page(page);

        // The dialing side killed and restarted the same way.
        a.kill();
        page += 1;
        b.send(json!({"cmd":"set_page","page":page}));
        b.wait_page(page);
        a = Dev::lansync("A", ns_a, &pair_args(&["pair"], "Tablet-A", &dir_a));
        // Told before the link event it comes from.
        let found = a.wait("partner_found", |v| v["event"] == "partner_found");
        assert_eq!(found["partner"], "Tablet-B", "{found}");
        a.wait_paired();
        dialer_times.push(a.started.elapsed().as_secs_f64());
        a.wait_page(page);
    }
    eprintln!(
        "MEASURE restart->paired (median of {repeat}): waiting side killed {:.2} s {waiter_times:.2?}, \
         dialing side killed {:.2} s {dialer_times:.2?}",
        median(waiter_times.clone()),
        median(dialer_times.clone())
    );

    // A cut longer than the heartbeat: both notice, and find each other once it heals.
    lan.isolate(1, true).expect("nft");
    let cut_at = Instant::now();
    a.wait("reconnecting", |v| {
        v["event"] == "state" && v["state"] == "SOLO_PAIRED_RECONNECTING"
    });
    std::thread::sleep(Duration::from_secs(5)); // well past the link's death, on purpose
    lan.isolate(1, false).expect("nft");
    let healed = Instant::now();
    a.wait_paired();
    b.wait_paired();
    eprintln!(
        "MEASURE cut {:.1} s, healed → paired {:.2} s",
        healed.duration_since(cut_at).as_secs_f64(),
        healed.elapsed().as_secs_f64()
    );

    // The impostor: it advertises the pair's own instance name (as if copied off the air)
    // pointing at its endpoint, which answers without the pair secret, then tries B's endpoint.
    let record: Value =
        serde_json::from_slice(&std::fs::read(work.path().join("b/solo.json")).unwrap()).unwrap();
    let b_port = std::fs::read_to_string(work.path().join("b/port")).unwrap();
    let a_id = std::fs::read_to_string(work.path().join("a/device-id")).unwrap();
    let b_addr = format!("{}:{}", lan.addr(1), b_port.trim());
    b.kill();
    a.wait("reconnecting", |v| {
        v["event"] == "state" && v["state"] == "SOLO_PAIRED_RECONNECTING"
    });
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", lan.ns(2)])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "impostor_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            IMPOSTOR_ENV,
            json!({"secret": record["pair_secret"], "target": b_addr, "as": a_id.trim()})
                .to_string(),
        );
    let impostor = Dev::spawn("impostor", cmd);
    impostor.wait("advertising", |v| v["impostor"] == "advertising");
    // A dials what the advert names: the impostor is asked, and never gets the link.
    impostor.wait("asked", |v| v["impostor"] == "asked");
    assert!(
        a.next(Duration::from_secs(8), |v| v["event"] == "link"
            && v["state"] == "connected")
            .is_none(),
        "the dialing side connected to an impostor"
    );
    // The real partner is back: A finds it (the impostor's advert still up).
    b = Dev::lansync("B", ns_b, &pair_args(&["pair"], "Tablet-B", &dir_b));
    b.wait_paired();
    a.wait_paired();
    // The impostor's join at B's endpoint, claiming A's id, is refused.
    let tried = impostor.wait("join tried", |v| v["impostor"] == "joined");
    assert_eq!(tried["ok"], false, "{tried}");
    drop(impostor);

    // The waiting side moves to another address (a new DHCP lease): its advert names the new
    // one and the dialing side redials there; pages flow again.
    let moved = Instant::now();
    // Deleted first: deleting a subnet's primary address would take a secondary one with it.
    for (verb, addr) in [("del", lan.addr(1)), ("add", lan.subnet_addr(21))] {
        let cidr = format!("{addr}/24");
        lan::run(
            "ip",
            &["-n", ns_b, "addr", verb, &cidr, "dev", lan.dev()],
            None,
        )
        .unwrap();
    }
    b.wait("a link at the new address", |v| {
        v["event"] == "link" && v["state"] == "connected"
    });
    eprintln!(
        "MEASURE address changed → linked again {:.2} s",
        moved.elapsed().as_secs_f64()
    );
    page += 1;
    a.send(json!({"cmd":"set_page","page":page}));
    b.wait_page(page);
    let _ = (a, b);
}

/// The impostor (run by the test above inside its own namespace): advertises the pair's name,
/// answers on its own join endpoint with a secret it made up, and tries to join the waiting
/// side's endpoint as the dialing side.
#[test]
fn impostor_child() {
    let Ok(args) = std::env::var(IMPOSTOR_ENV) else {
        return; // only meaningful when run by the test above
    };
    let args: Value = serde_json::from_str(&args).unwrap();
    let say = |v: Value| println!("{v}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use lansync::session::{DoorReply, DoorSecret, JoinCredentials};
        use lansync::signaling::{self, Door};
        use std::sync::Arc;
        let made_up = "0123456789abcdef0123456789abcdef".to_string();
        let door: Door = Arc::new(move |_query| {
            println!("{}", json!({"impostor":"asked"}));
            let secret = made_up.clone();
            Box::pin(async move {
                DoorReply {
                    secret: Some(DoorSecret::Member(secret)),
                    verdict: Ok(()),
                }
            })
        });
        let bind = "0.0.0.0:0".parse().unwrap();
        let server = signaling::serve(bind, door, |_offer| async {
            Err(lansync::protocol::RejectReason::Unknown)
        })
        .await
        .unwrap();
        let secret = args["secret"].as_str().unwrap();
        let advert =
            lansync::node::pair_advert::advertise(secret, server.local_addr().port()).unwrap();
        say(json!({"impostor":"advertising"}));
        // Keep trying B's endpoint until it is back (it was killed for the impostor's turn).
        let target = args["target"].as_str().unwrap().parse().unwrap();
        let creds = JoinCredentials {
            member_secret: Some("fedcba9876543210fedcba9876543210".into()),
            ..Default::default()
        };
        let cfg = lansync::transport::TransportConfig::default();
        let offer = lansync::transport::create_offer(&cfg).await.unwrap();
        let end = Instant::now() + DEADLINE;
        loop {
            let who = args["as"].as_str().unwrap();
            match signaling::request_join(target, &creds, None, who, "Impostor", offer.sdp()).await
            {
                Err(signaling::SignalingError::Unreachable(_)) if Instant::now() < end => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                result => {
                    say(json!({"impostor":"joined","ok":result.is_ok(),
                               "result":format!("{result:?}")}));
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        advert.stop().await;
    });
}
