//! Real mDNS on a private LAN: a Linux bridge and network namespaces joined by veth pairs
//! (10.213.1.0/24, built by `common/lan.rs`), one "host" per namespace. Multicast never touches
//! this machine's own interfaces: every daemon runs inside a namespace, in a child process that
//! is this very test binary re-executed in probe mode (`ip netns exec NS <exe> --exact
//! probe_child`).
//!
//! Needs root and iproute2; without them each test prints why and passes.
//! Run: `cargo test --test discovery_lan -- --nocapture --test-threads=1` (as root).
#![cfg(feature = "native")]

use lansync::discovery::{Discovery, DiscoveryEvent, SessionAdvert, SERVICE_TYPE};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PROBE_ENV: &str = "LANSYNC_DISCOVERY_PROBE";
/// Generous: mDNS probing alone takes ~1 s, and CI machines are slow.
const DEADLINE: Duration = Duration::from_secs(20);
const FP: &str = "sha-256 AB:CD:EF:01:23:45:67:89";

// ---------------------------------------------------------------------------------------------
// The private LAN.

#[path = "common/lan.rs"]
mod lan;
use lan::Lan;

/// A LAN of `n` hosts for these tests (namespaces `ldisc-…`); `None`, with the reason printed,
/// when this machine cannot build one.
fn build_lan(n: usize) -> Option<Lan> {
    Lan::try_new("ldisc", "10.213.1", n, &[])
}

/// Probe children in the LAN's namespaces.
trait Probes {
    fn probe(&self, i: usize, mode: &str, args: Value) -> Probe;
}

impl Probes for Lan {
    /// Starts this test binary in probe `mode` inside namespace `i`.
    fn probe(&self, i: usize, mode: &str, args: Value) -> Probe {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new("ip")
            .args(["netns", "exec", self.ns(i)])
            .arg(exe)
            .args(["--exact", "probe_child", "--nocapture", "--test-threads=1"])
            .env(PROBE_ENV, json!({"mode": mode, "args": args}).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn probe");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test probe_child ... " on the same line first.
                if let Some(at) = line.find("PROBE ") {
                    if let Ok(v) = serde_json::from_str::<Value>(&line[at + 6..]) {
                        if tx.send((Instant::now(), v)).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Probe {
            name: format!("{mode}@{}", self.ns(i)),
            child,
            stdin,
            lines,
        }
    }
}

/// A probe child; killed on drop.
struct Probe {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<(Instant, Value)>,
}

impl Probe {
    /// The first line whose `event` is `event` and that satisfies `pred`, with when it arrived.
    fn wait_for(&self, event: &str, pred: impl Fn(&Value) -> bool) -> (Instant, Value) {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((t, v)) if v["event"] == event && pred(&v) => return (t, v),
                Ok(_) => {}
                Err(_) => panic!("{}: no {event} within {DEADLINE:?}", self.name),
            }
        }
    }

    fn send(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Probe mode: what runs inside a namespace.

fn emit(v: Value) {
    println!("PROBE {v}");
    let _ = std::io::stdout().flush();
}

/// Blocks until stdin has a line (a command from the parent) or closes.
fn read_stdin_line() -> Option<String> {
    let mut s = String::new();
    match std::io::stdin().read_line(&mut s) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(s.trim().to_string()),
    }
}

fn session_json(s: &lansync::discovery::DiscoveredSession) -> Value {
    let mut v = serde_json::to_value(s).expect("session json");
    v["event"] = json!("found");
    v
}

/// The child side. Does nothing in a normal test run (no probe variable set).
#[test]
fn probe_child() {
    let Ok(spec) = std::env::var(PROBE_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).expect("probe spec");
    // Logs go to stderr (inherited by the parent); stdout carries the protocol.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LANSYNC_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run_probe(&spec["mode"], &spec["args"]));
}

async fn run_probe(mode: &Value, args: &Value) {
    let start = Instant::now();
    let ms = move || start.elapsed().as_secs_f64() * 1000.0;
    match mode.as_str().unwrap_or("") {
        "advertise" => {
            let d = Discovery::new().expect("discovery");
            let advert = SessionAdvert::new(
                args["code"].as_str().unwrap_or(""),
                args["name"].as_str().unwrap_or(""),
                FP,
                args["port"].as_u64().unwrap_or(0) as u16,
            );
            let addrs: Vec<std::net::IpAddr> = args["addrs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse().ok())
                .collect();
            let ad = d.advertise(&advert, &addrs).expect("advertise");
            emit(json!({"event":"ready","fullname":ad.fullname()}));
            // Wait for "stop" (or the parent going away) on a blocking thread.
            let _ = tokio::task::spawn_blocking(read_stdin_line).await;
            ad.stop().await;
            emit(json!({"event":"stopped"}));
        }
        "advertise_raw" => {
            // Hostile/malformed adverts straight through mdns-sd, bypassing our validation.
            let daemon = mdns_sd::ServiceDaemon::new().expect("daemon");
            for (i, txt) in args["adverts"].as_array().into_iter().flatten().enumerate() {
                let props: Vec<(String, String)> = txt
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect();
                let info = mdns_sd::ServiceInfo::new(
                    SERVICE_TYPE,
                    &format!("raw-{i}"),
                    &format!("raw-{i}-{}.local.", std::process::id()),
                    (),
                    7000 + i as u16,
                    &props[..],
                )
                .expect("service info")
                .enable_addr_auto();
                daemon.register(info).expect("register");
            }
            emit(json!({"event":"ready"}));
            let _ = tokio::task::spawn_blocking(read_stdin_line).await;
            let _ = daemon.shutdown();
        }
        "raw_browse" => {
            // What reaches this host at the mDNS level, validated or not.
            let daemon = mdns_sd::ServiceDaemon::new().expect("daemon");
            let rx = daemon.browse(SERVICE_TYPE).expect("browse");
            emit(json!({"event":"browsing"}));
            while let Ok(ev) = rx.recv_async().await {
                if let mdns_sd::ServiceEvent::ServiceResolved(info) = ev {
                    emit(json!({"event":"raw_resolved","fullname":info.get_fullname()}));
                }
            }
        }
        "browse" => {
            let d = Discovery::new().expect("discovery");
            let mut rx = d.browse().expect("browse");
            emit(json!({"event":"browsing"}));
            while let Some(ev) = rx.recv().await {
                match ev {
                    DiscoveryEvent::Found(s) => {
                        let mut v = session_json(&s);
                        v["t_ms"] = json!(ms());
                        emit(v);
                    }
                    DiscoveryEvent::Lost { instance } => {
                        emit(json!({"event":"lost","instance":instance,"t_ms":ms()}));
                    }
                }
            }
        }
        "find" => {
            let d = Discovery::new().expect("discovery");
            let code = args["code"].as_str().unwrap_or("");
            match d.find(code, Duration::from_secs(15)).await {
                Ok(s) => {
                    let mut v = session_json(&s);
                    v["event"] = json!("find_ok");
                    v["t_ms"] = json!(ms());
                    emit(v);
                }
                Err(e) => emit(json!({"event":"find_err","error":e.to_string(),"t_ms":ms()})),
            }
        }
        "impostor_master" => impostor_master(args).await,
        other => panic!("unknown probe mode {other:?}"),
    }
}

/// An impostor re-hosting a session's code: a real join endpoint (lansync's own) that knows the
/// code but not the password (`args.password`, `""` for none), answering offers with real
/// WebRTC, advertised under its own instance name with the same TXT `code`.
async fn impostor_master(args: &Value) {
    use lansync::session::{DoorAuth, DoorQuery, DoorReply, DoorSecret, SessionCode};
    let code = SessionCode::parse(args["code"].as_str().unwrap_or("")).expect("code");
    let password = args["password"].as_str().unwrap_or("").to_string();
    let identity = lansync::transport::Identity::generate().expect("identity");
    let fingerprint = identity.fingerprint();
    let cfg = lansync::transport::TransportConfig {
        certificate: Some(identity),
        ..Default::default()
    };
    let ours = code.clone();
    let door: lansync::signaling::Door = std::sync::Arc::new(move |q: DoorQuery| {
        let secret = (q.auth == DoorAuth::Code
            && q.session_code.as_deref().and_then(SessionCode::parse) == Some(ours.clone()))
        .then(|| DoorSecret::Code {
            code: ours.as_str().to_string(),
            password: password.clone(),
        });
        let reply = DoorReply {
            secret,
            verdict: Ok(()),
        };
        Box::pin(async move { reply })
    });
    let server = lansync::signaling::serve(
        "0.0.0.0:0".parse().unwrap(),
        door,
        move |offer: lansync::signaling::OfferIn| {
            let cfg = cfg.clone();
            async move {
                emit(json!({"event":"admitted","device_id":offer.device_id}));
                let (answer, link) = lansync::transport::accept_offer(&cfg, &offer.offer_sdp)
                    .await
                    .map_err(|_| lansync::protocol::RejectReason::Unknown)?;
                std::mem::forget(link);
                Ok(answer)
            }
        },
    )
    .await
    .expect("impostor endpoint");
    let port = server.local_addr().port();
    let daemon = mdns_sd::ServiceDaemon::new().expect("daemon");
    let fp = lansync::discovery::fingerprint_hash(&fingerprint);
    let props = [
        ("v", lansync::protocol::PROTOCOL_VERSION.to_string()),
        ("code", code.as_str().to_string()),
        ("name", "Real choir".to_string()),
        ("fp", fp),
        ("port", port.to_string()),
    ];
    let info = mdns_sd::ServiceInfo::new(
        SERVICE_TYPE,
        &format!("lansync-{}-x", code.as_str()),
        &format!("impostor-{}.local.", std::process::id()),
        (),
        port,
        &props[..],
    )
    .expect("service info")
    .enable_addr_auto();
    let fullname = info.get_fullname().to_string();
    daemon.register(info).expect("register");
    emit(json!({"event":"ready","fullname":fullname}));
    let _ = tokio::task::spawn_blocking(read_stdin_line).await;
    let _ = daemon.shutdown();
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Every code+password joiner (a `lansync join --code` process) ends up in the real master's
/// session although an impostor advertises the same code: the answer of the impostor does not
/// verify, so the joiner skips it and tries the other advert (PROTOCOL.md §9.6, §10.1).
#[test]
fn code_joiners_reach_the_real_master_past_an_impostor() {
    const JOINERS: usize = 4;
    let Some(lan) = build_lan(2 + JOINERS) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("lansync-impostor-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let lansync = env!("CARGO_BIN_EXE_lansync");
    let spawn = |ns: usize, args: &[&str]| -> cli_proc::Proc {
        cli_proc::Proc::spawn(lan.ns(ns), lansync, args)
    };
    let master_dir = dir.join("master").to_string_lossy().into_owned();
    let master = spawn(
        0,
        &[
            "host",
            "--json",
            "--password",
            "sopranos",
            "--state-dir",
            &master_dir,
        ],
    );
    let hosting = master.wait_for(|v| v["event"] == "hosting_link");
    let code = hosting["session_code"].as_str().unwrap().to_string();
    let session_id = hosting["session_id"].as_str().unwrap().to_string();
    assert_eq!(hosting["open"], false);
    for password in ["", "altos"] {
        let impostor = lan.probe(
            1,
            "impostor_master",
            json!({"code":code,"password":password}),
        );
        impostor.wait_for("ready", |_| true);
        // Both adverts are on the LAN before anyone looks.
        let b = lan.probe(2, "browse", json!({}));
        let mut ports = std::collections::BTreeSet::new();
        while ports.len() < 2 {
            let (_, found) = b.wait_for("found", |v| v["session_code"] == code.as_str());
            ports.insert(found["port"].to_string());
        }
        assert!(ports.contains(&hosting["port"].to_string()));
        drop(b);
        // One after the other: each joiner's mDNS query gets its own answers, in an order of
        // their own (responders delay them at random), so some try the impostor first.
        let mut joiners = Vec::new();
        for i in 0..JOINERS {
            let state = dir.join(format!("j{i}-{}", password.len()));
            let state = state.to_string_lossy().into_owned();
            let name = format!("singer-{i}");
            let args = [
                "join",
                "--code",
                &code,
                "--password",
                "sopranos",
                "--json",
                "--state-dir",
                &state,
                "--name",
                &name,
                "--mdns-timeout",
                "20",
            ];
            let j = spawn(2 + i, &args);
            let joined = j.wait_for(|v| v["event"] == "joined" || v["event"] == "error");
            assert_eq!(joined["event"], "joined", "{joined}");
            assert_eq!(joined["session_id"], session_id.as_str());
            joiners.push(j);
        }
        assert!(
            impostor
                .lines
                .try_iter()
                .all(|(_, v)| v["event"] != "admitted"),
            "the impostor admitted a joiner"
        );
        drop(joiners);
        drop(impostor);
    }
    drop(master);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn advert_found_from_two_hosts_then_goodbye() {
    let Some(lan) = build_lan(3) else { return };
    let code = "QRST-UVWX";
    let name = "St Mary's choir";
    // Browsers first, so the timing covers the advertiser's probing (a master just started).
    let b = lan.probe(1, "browse", json!({}));
    let c = lan.probe(2, "browse", json!({}));
    b.wait_for("browsing", |_| true);
    c.wait_for("browsing", |_| true);
    let mut master = lan.probe(
        0,
        "advertise",
        json!({"code":"qrst uvwx","name":name,"port":7311}),
    );
    let (t_ready, ready) = master.wait_for("ready", |_| true);
    let fullname = ready["fullname"].as_str().unwrap().to_string();
    assert_eq!(fullname, format!("lansync-{code}.{SERVICE_TYPE}"));
    let master_addr = lan.addr(0);
    for (who, p) in [("B", &b), ("C", &c)] {
        let (t, s) = p.wait_for("found", |v| v["session_code"] == code);
        assert_eq!(s["instance"], fullname.as_str());
        assert_eq!(s["session_name"], name);
        assert_eq!(s["protocol_version"], lansync::protocol::PROTOCOL_VERSION);
        assert_eq!(
            s["fingerprint_hash"],
            lansync::discovery::fingerprint_hash(FP).as_str()
        );
        assert_eq!(s["port"], 7311);
        assert_eq!(
            s["addrs"][0],
            master_addr.as_str(),
            "{who}: the LAN address first"
        );
        println!(
            "TIMING browse resolve while the master probes ({who}): {:.0} ms after register",
            t.duration_since(t_ready).as_secs_f64() * 1000.0
        );
    }

    // A settled advertiser: a fresh follower process resolves it by a sloppily typed code.
    // The wait is for the measurement only: during its first announcements (~3 s) the master
    // rate-limits its answers to once a second per record (RFC 6762 §6), so a query then
    // waits for the querier's second try (~1 s).
    std::thread::sleep(Duration::from_secs(4));
    let f = lan.probe(2, "find", json!({"code":" qrstuvwx "}));
    let (_, found) = f.wait_for("find_ok", |_| true);
    assert_eq!(found["session_code"], code);
    println!(
        "TIMING find() on a settled advert (new process, cold cache): {:.0} ms",
        found["t_ms"].as_f64().unwrap()
    );

    // Goodbye: the master drops its advert; both browsers see it go.
    let t_stop = Instant::now();
    master.send("stop");
    for (who, p) in [("B", &b), ("C", &c)] {
        let (t, lost) = p.wait_for("lost", |v| v["instance"] == fullname.as_str());
        assert_eq!(lost["instance"], fullname.as_str());
        println!(
            "TIMING goodbye seen by {who}: {:.0} ms after stop",
            t.duration_since(t_stop).as_secs_f64() * 1000.0
        );
    }
    master.wait_for("stopped", |_| true);
}

#[test]
fn advert_on_given_addresses_only() {
    let Some(lan) = build_lan(2) else { return };
    let master_addr = lan.addr(0);
    let master = lan.probe(
        0,
        "advertise",
        json!({"code":"JKLM-NPQR","name":"Alto","port":7200,"addrs":[master_addr]}),
    );
    master.wait_for("ready", |_| true);
    let f = lan.probe(1, "find", json!({"code":"jklm-npqr"}));
    let (_, found) = f.wait_for("find_ok", |_| true);
    assert_eq!(found["addrs"], json!([master_addr]));
    assert_eq!(found["port"], 7200);
}

#[test]
fn malformed_adverts_are_ignored_or_clamped() {
    let Some(lan) = build_lan(2) else { return };
    let fp = lansync::discovery::fingerprint_hash(FP);
    let long_name = "N".repeat(200);
    let b = lan.probe(1, "browse", json!({}));
    let rb = lan.probe(1, "raw_browse", json!({}));
    b.wait_for("browsing", |_| true);
    rb.wait_for("browsing", |_| true);
    let raw = lan.probe(
        0,
        "advertise_raw",
        json!({"adverts":[
            {"v":"one","code":"AAAA-BBBB","name":"bad version","fp":fp},
            {"v":"1","code":"AAAA-0000","name":"bad code","fp":fp},
            {"v":"1","code":"CCCC-DDDD","name":"bad fp","fp":"not-hex"},
            {"v":"1","code":"EEEE-FFFF","name":long_name,"fp":fp},
            {"v":"1","code":"gggg hhhh","name":"good","fp":fp},
        ]}),
    );
    raw.wait_for("ready", |_| true);
    // Every advert reaches host B at the mDNS level (so the test is not vacuous)…
    let mut raw_seen = std::collections::HashSet::new();
    while raw_seen.len() < 5 {
        let (_, v) = rb.wait_for("raw_resolved", |_| true);
        raw_seen.insert(v["fullname"].as_str().unwrap_or("").to_string());
    }
    // …but Discovery lists only the valid ones, the long name clamped. Lines are read for 2 s
    // more after both valid ones have arrived, to catch any late malformed listing.
    let mut listed = std::collections::HashMap::new();
    let end = Instant::now() + DEADLINE;
    let mut settle: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let until = settle.unwrap_or(end);
        let Some(left) = until.checked_duration_since(now) else {
            break;
        };
        if let Ok((_, v)) = b.lines.recv_timeout(left) {
            if v["event"] == "found" {
                let code = v["session_code"].as_str().unwrap_or("").to_string();
                listed.insert(code, v);
            }
        }
        if settle.is_none() && listed.contains_key("GGGG-HHHH") && listed.contains_key("EEEE-FFFF")
        {
            settle = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    assert!(settle.is_some(), "valid adverts not listed: {listed:?}");
    assert_eq!(listed["GGGG-HHHH"]["session_name"], "good");
    assert_eq!(
        listed["EEEE-FFFF"]["session_name"],
        "N".repeat(48),
        "name clamped"
    );
    assert_eq!(listed.len(), 2, "malformed advert listed: {listed:?}");
    println!("malformed adverts: 5 resolved by raw mdns-sd, 2 listed by Discovery (as expected)");
    drop(raw);
}

/// A master that dies without a goodbye (SIGKILL) is dropped when its records expire: the SRV
/// TTL is 120 s, so this takes about two minutes. Run with `--ignored`.
#[test]
#[ignore = "takes ~2 minutes (SRV TTL expiry)"]
fn crashed_master_expires() {
    let Some(lan) = build_lan(2) else { return };
    let b = lan.probe(1, "browse", json!({}));
    b.wait_for("browsing", |_| true);
    let mut master = lan.probe(
        0,
        "advertise",
        json!({"code":"KLMN-PQRS","name":"doomed","port":7400}),
    );
    let (_, ready) = master.wait_for("ready", |_| true);
    let fullname = ready["fullname"].as_str().unwrap().to_string();
    b.wait_for("found", |v| v["instance"] == fullname.as_str());
    let t_kill = Instant::now();
    let _ = master.child.kill(); // ip netns exec execs the probe, so this is the probe itself
    let end = Instant::now() + Duration::from_secs(300);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match b.lines.recv_timeout(left) {
            Ok((t, v)) if v["event"] == "lost" && v["instance"] == fullname.as_str() => {
                println!(
                    "TIMING crashed master dropped after {:.1} s",
                    t.duration_since(t_kill).as_secs_f64()
                );
                return;
            }
            Ok(_) => {}
            Err(_) => panic!("crashed master still listed after 300 s"),
        }
    }
}

/// `lansync` processes inside a namespace, read through `--json`.
mod cli_proc {
    use super::DEADLINE;
    use serde_json::Value;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::Instant;

    pub struct Proc {
        name: String,
        child: Child,
        lines: mpsc::Receiver<Value>,
    }

    impl Proc {
        pub fn spawn(ns: &str, exe: &str, args: &[&str]) -> Proc {
            let mut child = Command::new("ip")
                .args(["netns", "exec", ns, exe])
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn lansync");
            let stdout = child.stdout.take().expect("stdout");
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                }
            });
            Proc {
                name: format!("{} in {ns}", args.first().unwrap_or(&"")),
                child,
                lines,
            }
        }

        /// The first event satisfying `pred`, within the deadline.
        pub fn wait_for(&self, pred: impl Fn(&Value) -> bool) -> Value {
            let end = Instant::now() + DEADLINE;
            loop {
                let left = end.saturating_duration_since(Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(v) if pred(&v) => return v,
                    Ok(_) => {}
                    Err(_) => panic!("{}: nothing awaited within {DEADLINE:?}", self.name),
                }
            }
        }
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
