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

use lansync::auth;
use lansync::invite::JoinLink;
use lansync::session::{DoorReply, DoorSecret, JoinCredentials};
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
use tokio::net::{TcpSocket, TcpStream};

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
            .accept_answer(&answer.answer)
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

/// One HTTP/1.1 POST of a JSON body from `from`; returns the whole response (empty: none).
async fn post(from: IpAddr, to: SocketAddr, path: &str, body: &str) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = connect_from(from, to).await.ok()?;
        stream.write_all(request.as_bytes()).await.ok()?;
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

/// The status code of a response (0: none).
fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A whole, valid token join made by hand from `from` (PROTOCOL.md §9.1: start, then join with
/// the proof), as a flooder that knows the token would; returns the join's full response.
async fn token_join(
    from: IpAddr,
    to: SocketAddr,
    token: &str,
    device_id: &str,
    offer: &str,
) -> String {
    let start = serde_json::json!({"v": 2, "auth": "token", "device_id": device_id}).to_string();
    let response = post(from, to, signaling::START_PATH, &start).await;
    let Some(nonce) = response
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|v| v["nonce"].as_str().map(str::to_string))
    else {
        return response; // refused at the start (rate limit, busy)
    };
    let key = auth::token_key(token);
    let raw = auth::unhex(&nonce).unwrap_or_default();
    let proof = auth::hex(&auth::proof(&key, &raw, device_id, offer));
    let join = serde_json::json!({"v": 2, "nonce": nonce, "device_id": device_id,
        "device_name": "", "offer": offer, "proof": proof})
    .to_string();
    post(from, to, signaling::JOIN_PATH, &join).await
}

/// A real SDP offer (answering it costs the master a peer connection), never completed.
async fn some_offer() -> String {
    let cfg = TransportConfig {
        loopback_only: true,
        ..Default::default()
    };
    transport::create_offer(&cfg)
        .await
        .unwrap()
        .sdp()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_joins_that_never_open_keep_answers_capped_and_a_join_gets_through() {
    let _serial = SERIAL.lock().await;
    let _ = signaling::raise_fd_limit();
    let master = Master::start("unopened");
    let to = master.addr();
    // Replaying a captured request is refused at its used nonce (tests/signaling.rs); what still
    // costs the master is a device that knows the token and completes valid joins it never opens.
    let offer = Arc::new(some_offer().await);
    let token = Arc::new(master.link.token.clone());
    let sampler = Sampler::start(&master);
    // 52 sources, each as fast as a LAN master's default rate limit lets one address go (a burst
    // of 10, then 5 per second; more would only be refused `rate_limited`), for 4 s.
    const SOURCES: usize = 52;
    const FLOOD: Duration = Duration::from_secs(4);
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let started = Instant::now();
    let mut flooders = Vec::new();
    for i in 0..SOURCES {
        let (offer, token, statuses) = (offer.clone(), token.clone(), statuses.clone());
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
                let (offer, token, statuses) = (offer.clone(), token.clone(), statuses.clone());
                sends.push(tokio::spawn(async move {
                    let device = format!("flood-{i}-{k}");
                    let status = status(&token_join(from, to, &token, &device, &offer).await);
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
        "valid_joins_never_opened",
        &join,
        fds,
        rss,
        serde_json::json!({"sources": SOURCES, "responses_by_status": statuses,
            "flood_ms": started.elapsed().as_millis() as u64}),
    );
    join.expect("a legitimate join during the flood");
    // The endpoint's connections and its pending answers' peer connections (a few descriptors
    // each, some still closing) are capped: far below one peer connection per join.
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
    // The client takes the master's fingerprint from the verified answer: give it one.
    const ANSWER: &str =
        "v=0\r\na=fingerprint:sha-256 00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:\
        10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:1F\r\n";
    let door: signaling::Door = Arc::new(|_| {
        Box::pin(async {
            DoorReply {
                secret: Some(DoorSecret::Token(TOKEN.into())),
                verdict: Ok(()),
            }
        })
    });
    // An application that keeps every answer's slot, as a master does until the link opens.
    let holds = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = holds.clone();
    let server = signaling::serve(
        "127.0.0.1:0".parse().unwrap(),
        door,
        move |offer: signaling::OfferIn| {
            kept.lock().unwrap().push(offer.pending.hold());
            async { Ok(ANSWER.to_string()) }
        },
    )
    .await
    .unwrap();
    let to = server.local_addr();
    let creds = JoinCredentials {
        token: Some(TOKEN.into()),
        ..Default::default()
    };
    let join = |n: usize| {
        let device = format!("tablet-{n}");
        let creds = creds.clone();
        async move { signaling::request_join(to, &creds, None, &device, "", "v=0\r\n").await }
    };
    for n in 0..signaling::MAX_PENDING_ANSWERS_PER_SOURCE {
        join(n).await.expect("within the per-source cap");
    }
    match join(99).await {
        Err(signaling::SignalingError::Busy) => {}
        other => panic!("expected busy, got {other:?}"),
    }
    // On the wire: 503, `busy`, Retry-After (PROTOCOL.md §9.3).
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let response = token_join(localhost, to, TOKEN, "tablet-100", "v=0\r\n").await;
    let head = response.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 503"), "{response}");
    assert!(head.contains("retry-after:"), "{response}");
    assert!(response.contains(r#"{"error":"busy"}"#), "{response}");
    // Another source is not affected.
    let other = token_join(source(0), to, TOKEN, "tablet-101", "v=0\r\n").await;
    assert_eq!(status(&other), 200, "{other}");
    // Links opened (holds dropped): the source may join again at once.
    holds.lock().unwrap().clear();
    join(102).await.expect("slots freed");
    server.shutdown().await;
}
