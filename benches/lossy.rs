//! The current stack on a lossy LAN: page-turn latency for a master and 4 followers, and
//! `lansync send` → `lansync receive` throughput, at random packet loss of 0, 1, 2, 5 and 10 %,
//! with a plain TCP copy of the same bytes over the same path as the anchor.
//!
//! Run: `cargo bench --bench lossy` (root, iproute2 and nftables; `apt-get install -y nftables`
//! when `nft` is missing — the bench is skipped with a message otherwise).
//! `LANSYNC_BENCH_QUICK=1` (or `--quick`): 40 turns, 16 MiB, one run, losses 0/2/5.
//! `LANSYNC_BENCH_LOSS=2,5` picks the loss levels (percent).
//! Prints one JSON object per line: one per (measurement, loss, run), then the median of the runs
//! per (measurement, loss).
//!
//! The LAN: a bridge in the root namespace and 5 namespaces (a master and 4 followers), each on
//! its own 1500-MTU veth. Loss is applied with nftables in each follower's namespace, on input
//! and on output, so every follower's traffic loses `loss` % in each direction. The rule drops
//! UDP (the WebRTC data channels) and TCP alike, so the TCP anchor crosses the same loss;
//! `LANSYNC_BENCH_TCP_LOSS=0` drops UDP only (then the anchor is the loss-free path).
//!
//! Page turns: `lansync host --json --no-mdns` in the master's namespace and one `lansync join
//! LINK --json` per follower, kept for all loss levels. A turn is timed from the moment this
//! process wrote `{"cmd":"set_page"}` to the host to the moment it read a follower's `page` event
//! (one process, one monotonic clock; each follower's stdout is read on its own thread).
//!
//! Throughput: `lansync send FILE` in the master's namespace, `lansync receive CODE` in a
//! follower's; the rate counts from the receiver's first `files_progress` to its `files_done`,
//! so pairing is left out. A run is stopped after `CAP` and reported unfinished with the bytes
//! done and the rate so far. The TCP anchor is this bench re-executed (`--role tcp-send` /
//! `--role tcp-recv`) in the same two namespaces.

mod common;

use common::ip;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

const MIB: u64 = 1024 * 1024;
const FOLLOWERS: usize = 4;
const BRIDGE: &str = "lslossy-br";
const SUBNET: &str = "10.78.0";
/// A page a follower has not shown after this long counts as lost.
const TURN_DEADLINE: Duration = Duration::from_secs(5);
/// A transfer still running after this long is stopped and reported unfinished.
const CAP: Duration = Duration::from_secs(60);
/// Longest wait for a setup step (link printed, peers joined, codes exchanged).
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- the LAN

fn ns_name(i: usize) -> String {
    format!("lslossy-{i}")
}

fn addr(i: usize) -> String {
    format!("{SUBNET}.{}", 10 + i)
}

/// Namespace 0 is the master, 1..=FOLLOWERS the followers; all deleted on drop.
struct Lan;

impl Lan {
    fn remove() {
        for i in 0..=FOLLOWERS {
            // Deleting a namespace deletes its veth end, and with it the pair.
            let _ = ip(&["netns", "del", &ns_name(i)]);
        }
        let _ = ip(&["link", "del", BRIDGE]);
    }

    fn create() -> Result<Self, String> {
        Self::remove();
        let lan = Lan;
        ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["link", "set", BRIDGE, "up"])?;
        for i in 0..=FOLLOWERS {
            let ns = ns_name(i);
            let (outer, inner) = (format!("lslv{i}"), format!("lslp{i}"));
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", &outer, "mtu", "1500", "type", "veth", "peer", "name", &inner,
                "mtu", "1500",
            ])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["link", "set", &outer, "master", BRIDGE])?;
            ip(&["link", "set", &outer, "up"])?;
            let cidr = format!("{}/24", addr(i));
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
        }
        Ok(lan)
    }

    /// [`set_loss`](Self::set_loss), saying on stdout (as `bench`'s line) when it fails.
    fn loss_set(&self, bench: &str, percent: f64, tcp_too: bool) -> bool {
        let set = self.set_loss(percent, tcp_too);
        if let Err(e) = &set {
            println!(
                "{}",
                json!({"bench": bench, "loss_percent": percent, "error": e})
            );
        }
        set.is_ok()
    }

    /// Random loss of `percent` on each follower's input and output (none at 0).
    fn set_loss(&self, percent: f64, tcp_too: bool) -> Result<(), String> {
        let protos = if tcp_too { "{ tcp, udp }" } else { "udp" };
        (1..=FOLLOWERS).try_for_each(|i| common::set_loss(&ns_name(i), percent, protos))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        Self::remove();
    }
}

/// `target/release/lansync`, next to the directory of this bench's executable.
fn lansync_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("lansync"))
        .ok_or("no directory above the bench executable")?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} is missing: build it with `cargo build --release` (cargo bench does)",
            bin.display()
        ))
    }
}

// ---------------------------------------------------------------- processes

/// A line a child printed, with the moment this process read it.
struct Line {
    from: usize,
    at: Instant,
    text: String,
}

/// A child in a namespace; killed on drop. Its stdout lines go to a shared channel.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    fn spawn(ns: &str, program: &Path, args: &[&str], tag: usize, out: &Sender<Line>) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let tx = out.clone();
        std::thread::spawn(move || {
            for text in BufReader::new(stdout).lines().map_while(Result::ok) {
                let line = Line {
                    from: tag,
                    at: Instant::now(),
                    text,
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self { child, stdin }
    }

    fn send(&mut self, cmd: &Value) -> Result<Instant, String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{cmd}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("write to child: {e}"))?;
        Ok(Instant::now())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a JSON line from child `from` matching `want`.
fn wait_json(
    rx: &Receiver<Line>,
    from: usize,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> Result<(Instant, Value), String> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).map_err(|_| format!("no {what}"))?;
        if line.from != from {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(&line.text) {
            if want(&v) {
                return Ok((line.at, v));
            }
        }
    }
}

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("lansync-lossy-{}", std::process::id()))
}

/// A fresh, empty directory under this run's scratch directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = scratch().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn round(x: f64, d: i32) -> f64 {
    let m = 10f64.powi(d);
    (x * m).round() / m
}

fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1e3, 2)
}

// ---------------------------------------------------------------- page turns

/// A host and its followers, joined over the LAN.
struct Choir {
    host: Proc,
    _followers: Vec<Proc>,
    rx: Receiver<Line>,
    next_page: u64,
}

impl Choir {
    fn start(bin: &Path) -> Result<Self, String> {
        let (tx, rx) = channel();
        let dir = temp_dir("host").display().to_string();
        let host = Proc::spawn(
            &ns_name(0),
            bin,
            &["host", "--json", "--no-mdns", "--state-dir", &dir],
            0,
            &tx,
        );
        let (_, hosting) = wait_json(&rx, 0, "hosting_link", |v| v["event"] == "hosting_link")?;
        let link = hosting["link"].as_str().ok_or("no link")?.to_owned();
        let mut followers = Vec::new();
        for i in 1..=FOLLOWERS {
            let dir = temp_dir(&format!("follower{i}")).display().to_string();
            let name = format!("singer{i}");
            followers.push(Proc::spawn(
                &ns_name(i),
                bin,
                &[
                    "join",
                    &link,
                    "--json",
                    "--state-dir",
                    &dir,
                    "--name",
                    &name,
                ],
                i,
                &tx,
            ));
        }
        let want = FOLLOWERS as u64 + 1;
        wait_json(&rx, 0, "everyone present", |v| {
            v["event"] == "presence" && v["count"].as_u64() >= Some(want)
        })?;
        Ok(Self {
            host,
            _followers: followers,
            rx,
            next_page: 1,
        })
    }

    /// `turns` page turns, one every `every`; returns each (turn, follower)'s latency, or
    /// `None` when the follower never showed that page within `TURN_DEADLINE`.
    fn turns(&mut self, turns: usize, every: Duration) -> Result<Vec<Option<Duration>>, String> {
        let first = self.next_page;
        self.next_page += turns as u64;
        let mut sent: Vec<Instant> = Vec::with_capacity(turns);
        let mut seen: Vec<Option<Duration>> = vec![None; turns * FOLLOWERS];
        let start = Instant::now();
        for k in 0..turns {
            let page = first + k as u64;
            let due = start + every * k as u32;
            self.collect(first, &sent, &mut seen, due);
            sent.push(self.host.send(&json!({"cmd": "set_page", "page": page}))?);
        }
        let end = *sent.last().unwrap_or(&start) + TURN_DEADLINE;
        self.collect(first, &sent, &mut seen, end);
        Ok(seen)
    }

    /// Reads follower events until `until` (or every sample is in).
    fn collect(&self, first: u64, sent: &[Instant], seen: &mut [Option<Duration>], until: Instant) {
        loop {
            if sent.len() == seen.len() / FOLLOWERS && seen.iter().all(Option::is_some) {
                return;
            }
            let left = until.saturating_duration_since(Instant::now());
            let line = match self.rx.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if line.from == 0 {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&line.text) else {
                continue;
            };
            let Some(page) = v["page"].as_u64().filter(|_| v["event"] == "page") else {
                continue;
            };
            let Some(k) = page.checked_sub(first).map(|k| k as usize) else {
                continue;
            };
            let Some(&at) = sent.get(k) else { continue };
            let slot = &mut seen[k * FOLLOWERS + line.from - 1];
            let took = line.at.saturating_duration_since(at);
            if slot.is_none() && took <= TURN_DEADLINE {
                *slot = Some(took);
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn turn_figures(samples: &[Option<Duration>]) -> Map<String, Value> {
    let mut got: Vec<Duration> = samples.iter().flatten().copied().collect();
    got.sort();
    let mut m = Map::new();
    m.insert("samples".into(), json!(samples.len()));
    m.insert("p50_ms".into(), json!(ms(percentile(&got, 0.50))));
    m.insert("p90_ms".into(), json!(ms(percentile(&got, 0.90))));
    m.insert("p99_ms".into(), json!(ms(percentile(&got, 0.99))));
    m.insert(
        "max_ms".into(),
        json!(ms(got.last().copied().unwrap_or_default())),
    );
    m.insert("lost".into(), json!(samples.len() - got.len()));
    m
}

// ---------------------------------------------------------------- throughput

/// The file a run sends, made once: a video by its name and magic bytes (the only kinds
/// `lansync send` accepts are media and scores), incompressible filler after them.
fn make_file(dir: &Path, len: u64) -> PathBuf {
    let path = dir.join("payload.mp4");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("payload file"));
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; MIB as usize];
    for i in 0..len / MIB {
        for b in block.iter_mut() {
            // xorshift: incompressible, deterministic.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        if i == 0 {
            block[..12].copy_from_slice(b"\0\0\0\x18ftypmp42");
        }
        out.write_all(&block).expect("payload write");
    }
    out.flush().expect("payload flush");
    path
}

const SENDER: usize = 0;
const RECEIVER: usize = 1;

/// Bytes moved and the seconds they took; unfinished when stopped at `CAP`.
struct Transfer {
    bytes: u64,
    seconds: f64,
    finished: bool,
}

impl Transfer {
    fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e6
        } else {
            0.0
        }
    }
}

/// One `lansync send` → `lansync receive` of `file` (`len` bytes), sender in the master's
/// namespace, receiver in follower 1's.
fn lansync_transfer(bin: &Path, file: &Path, len: u64) -> Result<(Transfer, f64), String> {
    let (tx, rx) = channel();
    let file = file.display().to_string();
    let mut sender = Proc::spawn(&ns_name(0), bin, &["send", "--json", &file], SENDER, &tx);
    let (_, invite) = wait_json(&rx, SENDER, "invite", |v| v["event"] == "invite")?;
    let dir = temp_dir("received").display().to_string();
    let code = invite["code"].as_str().ok_or("no invite code")?;
    let _receiver = Proc::spawn(
        &ns_name(1),
        bin,
        &["receive", code, "--dir", &dir, "--json"],
        RECEIVER,
        &tx,
    );
    let (_, answer) = wait_json(&rx, RECEIVER, "answer", |v| v["event"] == "answer")?;
    let asked = sender.send(&json!({"cmd": "answer", "code": answer["code"]}))?;
    // From the first progress on the receiver to its files_done.
    let mut start: Option<(Instant, u64)> = None;
    let mut last = (asked, 0u64);
    let mut cap_at = asked + CAP;
    loop {
        let left = cap_at.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(_) => break,
        };
        if line.from != RECEIVER {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(&line.text) else {
            continue;
        };
        if v["event"] == "files_progress" {
            let done = v["bytes_done"].as_u64().unwrap_or(0);
            if start.is_none() && done > 0 {
                start = Some((line.at, done));
                cap_at = line.at + CAP;
            }
            last = (line.at, done);
        } else if v["event"] == "files_done" {
            let setup = start.map_or(0.0, |(t, _)| (t - asked).as_secs_f64());
            let (t0, b0) = start.unwrap_or((asked, 0));
            let t = Transfer {
                bytes: len - b0,
                seconds: (line.at - t0).as_secs_f64(),
                finished: true,
            };
            return Ok((t, setup));
        } else if v["event"] == "error" {
            return Err(format!("receiver: {v}"));
        }
    }
    let Some((t0, b0)) = start else {
        return Err("the transfer never started".into());
    };
    let t = Transfer {
        bytes: last.1 - b0,
        seconds: (last.0 - t0).as_secs_f64(),
        finished: false,
    };
    Ok((t, (t0 - asked).as_secs_f64()))
}

/// The same bytes over TCP between the same two namespaces (this bench, re-executed).
fn tcp_transfer(len: u64) -> Result<Transfer, String> {
    let (tx, rx) = channel();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bind = addr(1);
    let _recv = Proc::spawn(
        &ns_name(1),
        &exe,
        &["--role", "tcp-recv", "--bind", &bind],
        RECEIVER,
        &tx,
    );
    let listen = wait_line(&rx, "LISTEN", Instant::now() + SETUP_TIMEOUT)?;
    let target = format!("{bind}:{}", listen.1);
    let bytes = len.to_string();
    let _send = Proc::spawn(
        &ns_name(0),
        &exe,
        &["--role", "tcp-send", "--addr", &target, "--bytes", &bytes],
        SENDER,
        &tx,
    );
    let (t0, _) = wait_line(&rx, "START", Instant::now() + SETUP_TIMEOUT)?;
    let cap_at = t0 + CAP;
    let mut last = (t0, 0u64);
    loop {
        match wait_line(&rx, "", cap_at) {
            Ok((at, text)) => {
                let (word, n) = text.split_once(' ').unwrap_or((&text, "0"));
                let n: u64 = n.parse().unwrap_or(0);
                match word {
                    "BYTES" => last = (at, n),
                    "DONE" => {
                        return Ok(Transfer {
                            bytes: n,
                            seconds: (at - t0).as_secs_f64(),
                            finished: n == len,
                        })
                    }
                    _ => {}
                }
            }
            Err(_) => {
                return Ok(Transfer {
                    bytes: last.1,
                    seconds: (last.0 - t0).as_secs_f64(),
                    finished: false,
                })
            }
        }
    }
}

/// Next child line starting with `word` (any line when empty): its arrival and the rest.
fn wait_line(rx: &Receiver<Line>, word: &str, until: Instant) -> Result<(Instant, String), String> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .map_err(|_| format!("no {word} line"))?;
        if word.is_empty() {
            return Ok((line.at, line.text));
        }
        if let Some(rest) = line.text.strip_prefix(word) {
            return Ok((line.at, rest.trim().to_owned()));
        }
    }
}

fn tcp_recv_child(bind: &str) {
    let listener = std::net::TcpListener::bind((bind, 0)).expect("tcp bind");
    let port = listener.local_addr().expect("tcp addr").port();
    println!("LISTEN {port}");
    let (mut s, _) = listener.accept().expect("tcp accept");
    let mut buf = vec![0u8; 256 * 1024];
    let (mut got, mut told) = (0u64, 0u64);
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
        if got - told >= MIB {
            told = got;
            println!("BYTES {got}");
        }
    }
    println!("DONE {got}");
}

fn tcp_send_child(target: &str, len: u64) {
    let mut s = std::net::TcpStream::connect(target).expect("tcp connect");
    println!("START 0");
    let block = vec![0x5au8; MIB as usize];
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        if s.write_all(&block[..n]).is_err() {
            return;
        }
        left -= n as u64;
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut b = [0u8; 1];
    let _ = s.read(&mut b);
}

// ---------------------------------------------------------------- orchestrator

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median of every numeric figure of `runs`, each taken on its own.
fn print_median(head: Map<String, Value>, runs: &[Map<String, Value>]) {
    let Some(first) = runs.first() else { return };
    let mut line = head;
    line.insert("median_of".into(), json!(runs.len()));
    let mut med = BTreeMap::new();
    for (k, v) in first {
        if v.is_number() {
            let xs = runs.iter().filter_map(|r| r.get(k)?.as_f64()).collect();
            med.insert(k.clone(), round(median(xs), 5));
        }
    }
    for (k, v) in med {
        let v = if v.fract() == 0.0 && v.abs() < 1e15 {
            json!(v as i64)
        } else {
            json!(v)
        };
        line.insert(k, v);
    }
    let all_finished = runs
        .iter()
        .all(|r| r.get("finished") != Some(&json!(false)));
    if first.contains_key("finished") {
        line.insert("finished".into(), json!(all_finished));
    }
    println!("{}", Value::Object(line));
}

/// The fields that name a measurement: what, at which loss, and whether TCP loses too.
fn head(bench: &str, loss: f64, tcp_loss: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("bench".into(), json!(bench));
    m.insert("loss_percent".into(), json!(loss));
    m.insert("tcp_loss".into(), json!(tcp_loss));
    m
}

struct Plan {
    losses: Vec<f64>,
    /// (turns per run, interval between turns, runs) for each cadence measured.
    cadences: Vec<(usize, Duration, usize)>,
    bytes: u64,
    transfer_runs: usize,
    /// Loss applies to TCP as well as UDP.
    tcp_loss: bool,
}

fn page_turns(lan: &Lan, bin: &Path, plan: &Plan) {
    let bench = "lossy_page_turn";
    let mut choir = match Choir::start(bin) {
        Ok(c) => c,
        Err(e) => {
            println!("{}", json!({"bench": bench, "error": e}));
            return;
        }
    };
    for &loss in &plan.losses {
        if !lan.loss_set(bench, loss, plan.tcp_loss) {
            continue;
        }
        for &(turns, every, n_runs) in &plan.cadences {
            let bench = format!("{bench}_every_{}ms", every.as_millis());
            let mut runs = Vec::new();
            for run in 1..=n_runs {
                match choir.turns(turns, every) {
                    Ok(samples) => {
                        let m = turn_figures(&samples);
                        let mut line = head(&bench, loss, plan.tcp_loss);
                        line.insert("run".into(), json!(run));
                        line.extend(m.clone());
                        println!("{}", Value::Object(line));
                        runs.push(m);
                    }
                    Err(e) => println!("{}", json!({"bench": bench, "run": run, "error": e})),
                }
            }
            print_median(head(&bench, loss, plan.tcp_loss), &runs);
        }
    }
    let _ = lan.set_loss(0.0, plan.tcp_loss);
}

fn throughput(lan: &Lan, bin: &Path, plan: &Plan) {
    let bench = format!("lossy_send_receive_{}MiB", plan.bytes / MIB);
    let file = make_file(&temp_dir("send"), plan.bytes);
    for &loss in &plan.losses {
        if !lan.loss_set(&bench, loss, plan.tcp_loss) {
            continue;
        }
        let mut runs = Vec::new();
        for run in 1..=plan.transfer_runs {
            let (ours, setup) = match lansync_transfer(bin, &file, plan.bytes) {
                Ok(t) => t,
                Err(e) => {
                    println!(
                        "{}",
                        json!({"bench": bench, "loss_percent": loss, "run": run, "error": e})
                    );
                    continue;
                }
            };
            let mut m = Map::new();
            m.insert("bytes".into(), json!(ours.bytes));
            m.insert("seconds".into(), json!(round(ours.seconds, 3)));
            m.insert("mb_per_s".into(), json!(round(ours.mb_per_s(), 3)));
            m.insert("setup_s".into(), json!(round(setup, 3)));
            m.insert("finished".into(), json!(ours.finished));
            match tcp_transfer(plan.bytes) {
                Ok(tcp) => {
                    m.insert("tcp_bytes".into(), json!(tcp.bytes));
                    m.insert("tcp_mb_per_s".into(), json!(round(tcp.mb_per_s(), 1)));
                    m.insert("tcp_finished".into(), json!(tcp.finished));
                    let ratio = ours.mb_per_s() / tcp.mb_per_s();
                    m.insert("ratio".into(), json!(round(ratio, 5)));
                }
                Err(e) => {
                    m.insert("tcp_error".into(), json!(e));
                }
            }
            let mut line = head(&bench, loss, plan.tcp_loss);
            line.insert("run".into(), json!(run));
            line.extend(m.clone());
            println!("{}", Value::Object(line));
            runs.push(m);
        }
        print_median(head(&bench, loss, plan.tcp_loss), &runs);
    }
    let _ = lan.set_loss(0.0, plan.tcp_loss);
}

fn orchestrate(plan: &Plan) {
    if let Some(why) = common::unavailable(&[
        ("ip", "-V", "apt-get install -y iproute2"),
        ("nft", "-v", "apt-get install -y nftables"),
    ]) {
        println!("{}", json!({"bench": "lossy", "skipped": why}));
        return;
    }
    let bin = match lansync_bin() {
        Ok(b) => b,
        Err(e) => {
            println!("{}", json!({"bench": "lossy", "error": e}));
            return;
        }
    };
    let lan = match Lan::create() {
        Ok(lan) => lan,
        Err(e) => {
            Lan::remove();
            println!("{}", json!({"bench": "lossy", "skipped": e}));
            return;
        }
    };
    page_turns(&lan, &bin, plan);
    throughput(&lan, &bin, plan);
    drop(lan);
    let _ = std::fs::remove_dir_all(scratch());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(role) = arg("--role") {
        match role.as_str() {
            "tcp-recv" => tcp_recv_child(&arg("--bind").unwrap_or_default()),
            "tcp-send" => tcp_send_child(
                &arg("--addr").unwrap_or_default(),
                arg("--bytes").and_then(|b| b.parse().ok()).unwrap_or(0),
            ),
            other => eprintln!("unknown role {other}"),
        }
        return;
    }
    let quick = std::env::var("LANSYNC_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
        || args.iter().any(|a| a == "--quick");
    let default: &[f64] = if quick {
        &[0.0, 2.0, 5.0]
    } else {
        &[0.0, 1.0, 2.0, 5.0, 10.0]
    };
    let losses = std::env::var("LANSYNC_BENCH_LOSS")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|x| x.trim().parse::<f64>().ok())
                .filter(|x| (0.0..=100.0).contains(x))
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec());
    let plan = Plan {
        losses,
        // A burst of turns (each lost packet is soon followed by more data, which triggers a
        // fast retransmit) and turns a second apart, as in rehearsal (a lost turn waits for
        // the retransmission timer).
        cadences: if quick {
            vec![
                (40, Duration::from_millis(50), 1),
                (10, Duration::from_secs(1), 1),
            ]
        } else {
            vec![
                (100, Duration::from_millis(50), 3),
                (30, Duration::from_secs(1), 1),
            ]
        },
        bytes: if quick { 16 * MIB } else { 64 * MIB },
        transfer_runs: if quick { 1 } else { 3 },
        tcp_loss: std::env::var("LANSYNC_BENCH_TCP_LOSS").map_or(true, |v| v != "0"),
    };
    orchestrate(&plan);
}
