//! The join endpoint under floods, against a real `lansync host` process on loopback: unfinished
//! request heads, idle connections beyond 1024, and replays of a captured valid request that
//! each cost the master an answer (PROTOCOL.md §9.3, limits). During each flood a legitimate
//! follower joins (offer → endpoint → answer → open link) and must succeed; each test prints one
//! JSON line: the join's latency and the master's peak descriptors and resident memory.
//!
//! The master starts with the common default soft limit of 1024 descriptors (hard limit
//! unchanged). The flooders bind to 127.0.0.2 and up (all of 127/8 is loopback on Linux), so
//! each address is a separate source to the master; the legitimate follower uses 127.0.0.1.
#![cfg(all(feature = "native", target_os = "linux"))]

use lansync::invite::JoinLink;
use lansync::session::JoinCredentials;
use lansync::signaling;
use lansync::transport::{self, TransportConfig};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// The floods run one at a time: each measures its own master on a shared machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Longest a legitimate join may take before the test fails (the target is under 1 s).
const JOIN_DEADLINE: Duration = Duration::from_secs(10);

/// A `lansync host --loopback` process, started with a soft limit of 1024 descriptors.
struct Master {
    child: Child,
    _stdin: ChildStdin,
    link: JoinLink,
    dir: std::path::PathBuf,
}

impl Master {
    fn start(name: &str) -> Master {
        let dir = std::env::temp_dir().join(format!("lansync-flood-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lansync"));
        cmd.args(["host", "--json", "--loopback", "--no-mdns", "--state-dir"])
            .arg(&dir)
            .env("LANSYNC_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls (getrlimit/setrlimit) between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                    lim.rlim_cur = lim.rlim_cur.min(1024);
                    libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start lansync host");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let end = Instant::now() + Duration::from_secs(30);
        let link = loop {
            let left = end.saturating_duration_since(Instant::now());
            let v = rx
                .recv_timeout(left)
                .expect("the host prints its join link");
            if v["event"] == "hosting_link" {
                break JoinLink::parse(v["link"].as_str().unwrap()).unwrap();
            }
        };
        Master {
            child,
            _stdin: stdin,
            link,
            dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.link.addr, self.link.port)
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Samples the master's descriptors and memory until dropped; keeps the peaks.
struct Sampler {
    peak_fds: Arc<AtomicUsize>,
    peak_rss: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(master: &Master) -> Sampler {
        let pid = master.child.id();
        let (peak_fds, peak_rss, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (f, r, s) = (peak_fds.clone(), peak_rss.clone(), stop.clone());
        let probe = Master::usage_of(pid);
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let (fds, rss) = probe();
                f.fetch_max(fds, Ordering::Relaxed);
                r.fetch_max(rss as usize, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        Sampler {
            peak_fds,
            peak_rss,
            stop,
            thread: Some(thread),
        }
    }

    /// (peak descriptors, peak RSS in KiB).
    fn finish(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.peak_fds.load(Ordering::Relaxed),
            self.peak_rss.load(Ordering::Relaxed),
        )
    }
}

impl Master {
    fn usage_of(pid: u32) -> impl Fn() -> (usize, u64) + Send + 'static {
        move || {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
            let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                })
                .unwrap_or(0);
            (fds, rss)
        }
    }
}

/// The flooders' source addresses: 127.0.0.2, 127.0.0.3, …
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 250) as u8))
}

async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Waits until the master closes `stream` (end of stream or reset); returns when it did.
async fn closed_by_master(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A legitimate follower's whole join: offer, endpoint, answer checked, link open.
async fn legit_join(master: SocketAddr, link: &JoinLink) -> Result<Duration, String> {
    let t0 = Instant::now();
    let cfg = TransportConfig {
        loopback_only: true,
        ..Default::default()
    };
    let creds = JoinCredentials {
        token: Some(link.token.clone()),
        ..Default::default()
    };
    let join = async {
        let pending = transport::create_offer(&cfg)
            .await
            .map_err(|e| e.to_string())?;
        let answer = signaling::request_join(
            master,
            &creds,
            Some(&link.fingerprint),
            "legit-singer",
            "Alto 1",
            pending.sdp(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut opened = pending
            .accept_answer(&answer)
            .await
            .map_err(|e| e.to_string())?;
        opened
            .wait_open(JOIN_DEADLINE)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(t0.elapsed())
    };
    tokio::time::timeout(JOIN_DEADLINE, join)
        .await
        .map_err(|_| format!("no link within {JOIN_DEADLINE:?}"))?
}

fn report(flood: &str, join: &Result<Duration, String>, fds: usize, rss_kib: usize, extra: Value) {
    let mut line = serde_json::json!({
        "flood": flood,
        "join_ok": join.is_ok(),
        "join_ms": join.as_ref().map(|d| d.as_secs_f64() * 1000.0).ok(),
        "join_error": join.as_ref().err(),
        "master_peak_fds": fds,
        "master_peak_rss_mib": rss_kib as f64 / 1024.0,
    });
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        line.extend(extra.clone());
    }
    println!("{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_request_heads_are_closed_and_a_join_gets_through() {
    let _serial = SERIAL.lock().await;
    let _ = signaling::raise_fd_limit();
    let master = Master::start("heads");
    let to = master.addr();
    let sampler = Sampler::start(&master);
    const CONNS: usize = 300;
    let started = Instant::now();
    let mut holds = Vec::new();
    for i in 0..CONNS {
        let mut stream = connect_from(source(i % 10), to).await.expect("connect");
        let _ = stream
            .write_all(b"POST /v1/join HTTP/1.1\r\nHost: master\r\nContent-Ty")
            .await;
        holds.push(tokio::spawn(async move {
            // How long the master kept this half head open.
            let at = Instant::now();
            closed_by_master(&mut stream).await;
            at.elapsed()
        }));
    }
    let join = legit_join(to, &master.link).await;
    // Every unfinished head is closed within the head timeout (plus a margin for a busy box).
    let limit = signaling::HEAD_TIMEOUT + Duration::from_secs(3);
    let mut closed = 0;
    let mut longest = Duration::ZERO;
    let wait_until = tokio::time::Instant::now() + limit;
    for hold in holds {
        if let Ok(Ok(held)) = tokio::time::timeout_at(wait_until, hold).await {
            closed += 1;
            longest = longest.max(held);
        }
    }
    let (fds, rss) = sampler.finish();
    report(
        "unfinished_heads",
        &join,
        fds,
        rss,
        serde_json::json!({"connections": CONNS, "closed_by_master": closed,
            "longest_hold_ms": longest.as_millis() as u64,
            "flood_ms": started.elapsed().as_millis() as u64}),
    );
    join.expect("a legitimate join during the flood");
    assert_eq!(
        closed, CONNS,
        "every unfinished head closed within {limit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_beyond_1024_do_not_keep_a_join_out() {
    let _serial = SERIAL.lock().await;
    let _ = signaling::raise_fd_limit();
    let master = Master::start("idle");
    let to = master.addr();
    let sampler = Sampler::start(&master);
    const CONNS: usize = 1200;
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut flooders = Vec::new();
    // Each flooder holds one idle connection and opens another as soon as it is closed.
    for i in 0..CONNS {
        let (stop, opened) = (stop.clone(), opened.clone());
        let from = source(i % 24);
        flooders.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(Ok(mut stream)) =
                    tokio::time::timeout(Duration::from_secs(1), connect_from(from, to)).await
                else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                let _ =
                    tokio::time::timeout(Duration::from_millis(500), closed_by_master(&mut stream))
                        .await;
                // Still open: keep holding it until the master closes it or the flood ends.
                while !stop.load(Ordering::Relaxed) {
                    if tokio::time::timeout(
                        Duration::from_millis(200),
                        closed_by_master(&mut stream),
                    )
                    .await
                    .is_ok()
                    {
                        break;
                    }
                }
            }
        }));
    }
    // Let the flood fill the master's table (and, on a 1024 limit, its descriptors).
    let fill = Instant::now() + Duration::from_secs(5);
    while opened.load(Ordering::Relaxed) < CONNS && Instant::now() < fill {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let join = legit_join(to, &master.link).await;
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        let _ = f.await;
    }
    let (fds, rss) = sampler.finish();
    report(
        "idle_connections",
        &join,
        fds,
        rss,
        serde_json::json!({"flooders": CONNS, "sources": 24,
            "connections_opened": opened.load(Ordering::Relaxed)}),
    );
    join.expect("a legitimate join during the flood");
}

/// One valid join request as `request_join` sends it, captured on the wire.
async fn capture_request(link: &JoinLink) -> Vec<u8> {
    let trap = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_addr = trap.local_addr().unwrap();
    let link = link.clone();
    let client = tokio::spawn(async move {
        let cfg = TransportConfig {
            loopback_only: true,
            ..Default::default()
        };
        let pending = transport::create_offer(&cfg).await.unwrap();
        let creds = JoinCredentials {
            token: Some(link.token.clone()),
            ..Default::default()
        };
        // Fails: the trap answers nothing useful. Only the request matters.
        let _ = signaling::request_join(trap_addr, &creds, None, "victim", "Bass 2", pending.sdp())
            .await;
    });
    let (mut stream, _) = trap.accept().await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the client closed before its request was complete");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if raw.len() >= end + 4 + length {
                break;
            }
        }
    }
    drop(stream);
    let _ = client.await;
    raw
}

/// Sends `request` from `from`; returns the whole response (empty: none).
async fn exchange(from: IpAddr, to: SocketAddr, request: &[u8]) -> String {
    let exchange = async {
        let mut stream = connect_from(from, to).await.ok()?;
        stream.write_all(request).await.ok()?;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        Some(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Sends `request` from `from`; returns the response's status code (0: no response).
async fn replay(from: IpAddr, to: SocketAddr, request: &[u8]) -> u16 {
    let response = exchange(from, to, request).await;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_requests_keep_answers_capped_and_a_join_gets_through() {
    let _serial = SERIAL.lock().await;
    let _ = signaling::raise_fd_limit();
    let master = Master::start("replay");
    let to = master.addr();
    let request = Arc::new(capture_request(&master.link).await);
    let sampler = Sampler::start(&master);
    // 52 sources, each as fast as a LAN master's default rate limit lets one address go (a burst
    // of 10, then 5 per second; more would only be refused `rate_limited`), for 4 s.
    const SOURCES: usize = 52;
    const FLOOD: Duration = Duration::from_secs(4);
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let started = Instant::now();
    let mut flooders = Vec::new();
    for i in 0..SOURCES {
        let (request, statuses) = (request.clone(), statuses.clone());
        flooders.push(tokio::spawn(async move {
            let from = source(i);
            let mut sends = Vec::new();
            for k in 0u32.. {
                let at = if k < 10 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(200 * u64::from(k - 9))
                };
                if at >= FLOOD {
                    break;
                }
                tokio::time::sleep_until(tokio::time::Instant::from_std(started + at)).await;
                let (request, statuses) = (request.clone(), statuses.clone());
                sends.push(tokio::spawn(async move {
                    let status = replay(from, to, &request).await;
                    *statuses.lock().unwrap().entry(status).or_insert(0u32) += 1;
                }));
            }
            for s in sends {
                let _ = s.await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let join = legit_join(to, &master.link).await;
    for f in flooders {
        let _ = f.await;
    }
    let (fds, rss) = sampler.finish();
    let statuses: serde_json::Map<String, Value> = statuses
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    report(
        "replayed_requests",
        &join,
        fds,
        rss,
        serde_json::json!({"sources": SOURCES, "responses_by_status": statuses,
            "flood_ms": started.elapsed().as_millis() as u64}),
    );
    join.expect("a legitimate join during the flood");
    // The endpoint's connections and its pending answers' peer connections (a few descriptors
    // each, some still closing) are capped: far below one peer connection per replay.
    let bound = signaling::MAX_CONNECTIONS + 4 * signaling::MAX_PENDING_ANSWERS + 100;
    assert!(
        fds < bound,
        "master descriptors bounded: peak {fds} ≥ {bound}"
    );
    assert!(rss < 100 * 1024, "master memory bounded: peak {rss} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_pending_their_link_are_capped_per_source_with_busy() {
    let _serial = SERIAL.lock().await;
    const TOKEN: &str = "00112233445566778899aabbccddeeff";
    let policy = Arc::new(std::sync::RwLock::new(signaling::JoinPolicy {
        session_code: "ABCD-EFGH".into(),
        token: TOKEN.into(),
        ..Default::default()
    }));
    // An application that keeps every answer's slot, as a master does until the link opens.
    let holds = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = holds.clone();
    let server = signaling::serve(
        "127.0.0.1:0".parse().unwrap(),
        policy,
        move |offer: signaling::OfferIn| {
            kept.lock().unwrap().push(offer.pending.hold());
            async { Ok("v=0\r\n".to_string()) }
        },
    )
    .await
    .unwrap();
    let to = server.local_addr();
    let creds = JoinCredentials {
        token: Some(TOKEN.into()),
        ..Default::default()
    };
    let join = || signaling::request_join(to, &creds, None, "tablet-1", "", "v=0\r\n");
    for _ in 0..signaling::MAX_PENDING_PER_SOURCE {
        join().await.expect("within the per-source cap");
    }
    match join().await {
        Err(signaling::SignalingError::Busy) => {}
        other => panic!("expected busy, got {other:?}"),
    }
    // On the wire: 503, `busy`, Retry-After (PROTOCOL.md §9.3).
    let link = JoinLink {
        addr: to.ip(),
        port: to.port(),
        session_code: "ABCD-EFGH".into(),
        token: TOKEN.into(),
        fingerprint: String::new(),
    };
    let request = capture_request(&link).await;
    let response = exchange(IpAddr::V4(Ipv4Addr::LOCALHOST), to, &request).await;
    let head = response.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{response}");
    assert!(head.contains("retry-after:"), "{response}");
    assert!(response.contains(r#"{"error":"busy"}"#), "{response}");
    // Another source is not affected.
    assert_eq!(replay(source(0), to, &request).await, 200);
    // Links opened (holds dropped): the source may join again at once.
    holds.lock().unwrap().clear();
    join().await.expect("slots freed");
    server.shutdown().await;
}
