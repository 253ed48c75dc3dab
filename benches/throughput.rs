//! Binary throughput between two OS processes: 16 KiB messages on the `binary`
//! channel, on loopback and across two network namespaces joined by a 1500-MTU veth pair, with a
//! plain TCP copy of the same bytes over the same path and processes for comparison.
//!
//! Run: `cargo bench --bench throughput` (needs root and iproute2 for the veth path, which is
//! skipped otherwise). `LANSYNC_BENCH_QUICK=1` (or the argument `--quick`) measures 64 MiB only.
//! `LANSYNC_BENCH_PATH=loopback` (or `veth`) measures one path only.
//! Prints one JSON object per line: one per run, then the median of the runs.
//!
//! The bench binary runs itself twice per run with `--role sender` / `--role receiver` (under
//! `ip netns exec` for veth). Those children speak a line protocol on stdin/stdout with this
//! orchestrating process, which relays the offer and answer SDP, the start signal and the TCP
//! address, and collects each side's figures.

mod common;

use common::ip;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lansync::transport::{
    accept_offer, create_offer, Link, LinkEvent, TransportConfig, MAX_BINARY_MESSAGE,
};
use serde_json::{json, Map, Value};

const MIB: u64 = 1024 * 1024;
const RUNS: usize = 3;
const NS_A: &str = "lsbench-a";
const NS_B: &str = "lsbench-b";
const VETH_A: &str = "lsbench-va";
const VETH_B: &str = "lsbench-vb";
const ADDR_A: &str = "10.77.0.1";
const ADDR_B: &str = "10.77.0.2";
/// Longest a child may stay silent before the run is abandoned.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// Message payloads cycle through this many distinct 16 KiB slices of a fixed pattern, so the
/// receiver can check content against precomputed checksums.
const PATTERN_SLOTS: usize = 61;

// ---------------------------------------------------------------- process figures

/// CPU time (user + system) of this process, all threads.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Peak resident set (VmHWM) of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `Udp: RcvbufErrors` of this process's network namespace.
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    if udp.len() < 2 {
        return 0;
    }
    let names = udp[0].split_whitespace();
    let values = udp[1].split_whitespace();
    names
        .zip(values)
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// ---------------------------------------------------------------- payload

/// The byte pattern messages are cut from, and the checksum of each slot.
struct Pattern {
    bytes: Vec<u8>,
    sums: Vec<u64>,
}

/// Cheap content checksum: wrapping sum of little-endian words, each rotated by its position
/// so swapped words are noticed too.
fn checksum(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    for (i, w) in data.chunks_exact(8).enumerate() {
        let v = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        acc = acc.wrapping_add(v.rotate_left((i % 64) as u32));
    }
    acc
}

impl Pattern {
    fn new() -> Self {
        let mut bytes = vec![0u8; PATTERN_SLOTS * MAX_BINARY_MESSAGE];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in bytes.iter_mut() {
            // xorshift: incompressible enough, deterministic on both sides.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let sums = (0..PATTERN_SLOTS)
            .map(|s| checksum(&bytes[s * MAX_BINARY_MESSAGE..(s + 1) * MAX_BINARY_MESSAGE]))
            .collect();
        Self { bytes, sums }
    }

    /// Message `i` of a transfer of `total` bytes.
    fn message(&self, i: u64, total: u64) -> &[u8] {
        let slot = (i % PATTERN_SLOTS as u64) as usize;
        let len = (total - i * MAX_BINARY_MESSAGE as u64).min(MAX_BINARY_MESSAGE as u64) as usize;
        &self.bytes[slot * MAX_BINARY_MESSAGE..slot * MAX_BINARY_MESSAGE + len]
    }

    /// True when `data` is exactly message `i`.
    fn check(&self, i: u64, total: u64, data: &[u8]) -> bool {
        let want = self.message(i, total);
        if data.len() != want.len() {
            return false;
        }
        let slot = (i % PATTERN_SLOTS as u64) as usize;
        if data.len() == MAX_BINARY_MESSAGE {
            checksum(data) == self.sums[slot]
        } else {
            data == want
        }
    }
}

fn message_count(total: u64) -> u64 {
    total.div_ceil(MAX_BINARY_MESSAGE as u64)
}

// ---------------------------------------------------------------- children

/// Line protocol with the orchestrator: lines on stdout are `WORD payload`.
fn say(word: &str, payload: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{word} {payload}");
    let _ = out.flush();
}

/// Reads the next `WORD payload` line from stdin (blocking; children are tiny).
fn hear(expect: &str) -> Value {
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
        panic!("orchestrator went away while waiting for {expect}");
    }
    let (word, rest) = line
        .trim_end()
        .split_once(' ')
        .unwrap_or((line.trim_end(), ""));
    assert_eq!(word, expect, "unexpected line from orchestrator");
    serde_json::from_str(rest).unwrap_or(Value::Null)
}

fn child_cfg(loopback: bool) -> TransportConfig {
    TransportConfig {
        loopback_only: loopback,
        ..Default::default()
    }
}

fn child_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Drains events the link reports besides binary messages until `Open` was seen.
async fn open(link: &mut Link) {
    link.wait_open(OPEN_TIMEOUT).await.expect("link open");
}

fn run_sender(loopback: bool, total: u64) {
    let rt = child_runtime();
    rt.block_on(async move {
        let pattern = Pattern::new();
        let offer = create_offer(&child_cfg(loopback)).await.expect("offer");
        say("OFFER", &json!(offer.sdp()));
        let answer = hear("ANSWER");
        let mut link = offer
            .accept_answer(answer.as_str().unwrap_or_default())
            .await
            .expect("answer");
        open(&mut link).await;
        say("OPEN", &Value::Null);
        hear("GO");

        let tx = link.sender();
        let cpu0 = cpu_seconds();
        let start = epoch_seconds();
        let mut peak_in_flight = 0usize;
        for i in 0..message_count(total) {
            tx.send_binary(pattern.message(i, total))
                .await
                .expect("send");
            peak_in_flight = peak_in_flight.max(tx.buffered_binary());
        }
        // The sender's work ends when the peer has acknowledged everything.
        while tx.buffered_binary() > 0 {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let cpu = cpu_seconds() - cpu0;
        say(
            "WEBRTC",
            &json!({
                "start": start,
                "cpu_s": cpu,
                "peak_rss": peak_rss(),
                "peak_in_flight": peak_in_flight,
                "udp_rcvbuf_errors_total": udp_rcvbuf_errors(),
            }),
        );

        // TCP copy of the same bytes, same processes, same path.
        let addr = hear("TCP");
        let addr = addr.as_str().unwrap_or_default().to_owned();
        let tcp = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).expect("tcp connect");
            let cpu0 = cpu_seconds();
            let start = epoch_seconds();
            for i in 0..message_count(total) {
                s.write_all(pattern.message(i, total)).expect("tcp write");
            }
            s.shutdown(std::net::Shutdown::Write).expect("tcp shutdown");
            // Wait for the receiver's close: everything arrived.
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
            json!({"start": start, "cpu_s": cpu_seconds() - cpu0})
        })
        .await
        .expect("tcp task");
        say("TCPDONE", &tcp);
        hold_until_told(link).await;
    });
}

/// Keeps the link open until the orchestrator writes a line (it is done with this process).
async fn hold_until_told(link: Link) {
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
    link.close().await;
}

fn run_receiver(loopback: bool, total: u64, bind: &str) {
    let rt = child_runtime();
    let bind = bind.to_owned();
    rt.block_on(async move {
        let pattern = Pattern::new();
        let offer = hear("OFFER");
        let (answer, mut link) =
            accept_offer(&child_cfg(loopback), offer.as_str().unwrap_or_default())
                .await
                .expect("accept offer");
        say("ANSWER", &json!(answer));
        open(&mut link).await;

        let cpu0 = cpu_seconds();
        let drops0 = udp_rcvbuf_errors();
        say("OPEN", &Value::Null);
        let n = message_count(total);
        let mut i = 0u64;
        let mut got = 0u64;
        let mut ok = true;
        while i < n {
            match tokio::time::timeout(STEP_TIMEOUT, link.recv()).await {
                Ok(Some(LinkEvent::Binary(d))) => {
                    ok &= pattern.check(i, total, &d);
                    got += d.len() as u64;
                    i += 1;
                }
                Ok(Some(LinkEvent::Closed)) | Ok(None) => break,
                Ok(Some(_)) => {}
                Err(_) => break,
            }
        }
        let end = epoch_seconds();
        let cpu = cpu_seconds() - cpu0;
        say(
            "WEBRTC",
            &json!({
                "end": end,
                "bytes": got,
                "verified": ok && got == total,
                "cpu_s": cpu,
                "peak_rss": peak_rss(),
                "udp_rcvbuf_errors": udp_rcvbuf_errors().saturating_sub(drops0),
            }),
        );

        let listener = std::net::TcpListener::bind((bind.as_str(), 0)).expect("tcp bind");
        let addr = listener.local_addr().expect("tcp addr");
        say("TCP", &json!(addr.to_string()));
        let tcp = tokio::task::spawn_blocking(move || {
            let (mut s, _) = listener.accept().expect("tcp accept");
            let cpu0 = cpu_seconds();
            let mut buf = vec![0u8; MAX_BINARY_MESSAGE];
            let mut got = 0u64;
            let mut ok = true;
            for i in 0..message_count(total) {
                let len = pattern.message(i, total).len();
                if s.read_exact(&mut buf[..len]).is_err() {
                    ok = false;
                    break;
                }
                ok &= pattern.check(i, total, &buf[..len]);
                got += len as u64;
            }
            let end = epoch_seconds();
            let cpu = cpu_seconds() - cpu0;
            drop(s);
            json!({"end": end, "bytes": got, "verified": ok && got == total, "cpu_s": cpu})
        })
        .await
        .expect("tcp task");
        say("TCPDONE", &tcp);
        hold_until_told(link).await;
    });
}

// ---------------------------------------------------------------- orchestrator

/// A running child with its stdout lines arriving on a channel.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std_mpsc::Receiver<String>,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, netns: Option<&str>, args: &[String]) -> Self {
        let exe = std::env::current_exe().expect("current exe");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = cmd
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, lines) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            name,
        }
    }

    fn expect(&self, word: &str) -> Result<Value, String> {
        let line = self
            .lines
            .recv_timeout(STEP_TIMEOUT)
            .map_err(|_| format!("{} gave no {word}", self.name))?;
        let (w, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        if w != word {
            return Err(format!("{} said {w:?}, expected {word}", self.name));
        }
        serde_json::from_str(rest).map_err(|e| format!("{}: {e}", self.name))
    }

    fn tell(&mut self, word: &str, payload: &Value) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        writeln!(stdin, "{word} {payload}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: {e}", self.name))
    }

    /// Closes stdin (the child closes its link and exits) and reaps it.
    fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Clone, Copy)]
enum Path {
    Loopback,
    Veth,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Loopback => "loopback",
            Path::Veth => "veth",
        }
    }
}

fn num(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

/// One measured run: a fresh sender and receiver, WebRTC then TCP.
fn one_run(path: Path, total: u64) -> Result<Map<String, Value>, String> {
    let (ns_s, ns_r, bind) = match path {
        Path::Loopback => (None, None, "127.0.0.1"),
        Path::Veth => (Some(NS_A), Some(NS_B), ADDR_B),
    };
    let lo = matches!(path, Path::Loopback).to_string();
    let common = |role: &str| {
        vec![
            "--role".to_owned(),
            role.to_owned(),
            "--loopback".to_owned(),
            lo.clone(),
            "--bytes".to_owned(),
            total.to_string(),
            "--bind".to_owned(),
            bind.to_owned(),
        ]
    };
    let mut snd = Proc::spawn("sender", ns_s, &common("sender"));
    let mut rcv = Proc::spawn("receiver", ns_r, &common("receiver"));
    let offer = snd.expect("OFFER")?;
    rcv.tell("OFFER", &offer)?;
    let answer = rcv.expect("ANSWER")?;
    snd.tell("ANSWER", &answer)?;
    snd.expect("OPEN")?;
    rcv.expect("OPEN")?;
    snd.tell("GO", &Value::Null)?;
    let rw = rcv.expect("WEBRTC")?;
    let sw = snd.expect("WEBRTC")?;
    let tcp_addr = rcv.expect("TCP")?;
    snd.tell("TCP", &tcp_addr)?;
    let st = snd.expect("TCPDONE")?;
    let rt = rcv.expect("TCPDONE")?;
    snd.finish();
    rcv.finish();

    let bytes = rw.get("bytes").and_then(Value::as_u64).unwrap_or(0);
    let secs = num(&rw, "end") - num(&sw, "start");
    let tcp_secs = num(&rt, "end") - num(&st, "start");
    let mbps = bytes as f64 / secs / 1e6;
    let tcp_bytes = rt.get("bytes").and_then(Value::as_u64).unwrap_or(0);
    let tcp_mbps = tcp_bytes as f64 / tcp_secs / 1e6;
    let verified = rw.get("verified") == Some(&Value::Bool(true))
        && rt.get("verified") == Some(&Value::Bool(true));
    let round = |x: f64, d: i32| {
        let m = 10f64.powi(d);
        (x * m).round() / m
    };
    let mut m = Map::new();
    m.insert("path".into(), json!(path.name()));
    m.insert("bytes".into(), json!(bytes));
    m.insert("mb_per_s".into(), json!(round(mbps, 1)));
    m.insert("seconds".into(), json!(round(secs, 3)));
    m.insert("sender_cpu_s".into(), json!(round(num(&sw, "cpu_s"), 3)));
    m.insert("receiver_cpu_s".into(), json!(round(num(&rw, "cpu_s"), 3)));
    m.insert(
        "cpu_ms_per_mib".into(),
        json!(round(
            (num(&sw, "cpu_s") + num(&rw, "cpu_s")) * 1e3 / (bytes as f64 / MIB as f64),
            2
        )),
    );
    m.insert("sender_peak_rss".into(), sw["peak_rss"].clone());
    m.insert("receiver_peak_rss".into(), rw["peak_rss"].clone());
    m.insert("sender_peak_in_flight".into(), sw["peak_in_flight"].clone());
    m.insert("udp_rcvbuf_errors".into(), rw["udp_rcvbuf_errors"].clone());
    m.insert("tcp_mb_per_s".into(), json!(round(tcp_mbps, 1)));
    m.insert("tcp_seconds".into(), json!(round(tcp_secs, 3)));
    m.insert(
        "tcp_sender_cpu_s".into(),
        json!(round(num(&st, "cpu_s"), 3)),
    );
    m.insert(
        "tcp_receiver_cpu_s".into(),
        json!(round(num(&rt, "cpu_s"), 3)),
    );
    m.insert("ratio".into(), json!(round(mbps / tcp_mbps, 3)));
    m.insert("verified".into(), json!(verified));
    if !verified {
        return Err(format!("content check failed: {m:?}"));
    }
    Ok(m)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn measure(path: Path, total: u64) {
    let bench = format!("throughput_16KiB_{}_{}MiB", path.name(), total / MIB);
    let mut runs = Vec::new();
    for run in 1..=RUNS {
        match one_run(path, total) {
            Ok(mut m) => {
                let mut line = Map::new();
                line.insert("bench".into(), json!(bench));
                line.insert("run".into(), json!(run));
                line.append(&mut m.clone());
                println!("{}", Value::Object(line));
                runs.push(std::mem::take(&mut m));
            }
            Err(e) => println!("{}", json!({"bench": bench, "run": run, "error": e})),
        }
    }
    if runs.is_empty() {
        return;
    }
    // Median of every numeric figure, each taken on its own.
    let mut med = BTreeMap::new();
    for (k, v) in &runs[0] {
        if v.is_number() {
            let xs = runs.iter().filter_map(|r| r.get(k)?.as_f64()).collect();
            med.insert(k.clone(), median(xs));
        }
    }
    let mut line = Map::new();
    line.insert("bench".into(), json!(bench));
    line.insert("median_of".into(), json!(runs.len()));
    line.insert("path".into(), json!(path.name()));
    for (k, v) in med {
        let v = if v.fract() == 0.0 && v.abs() < 1e15 {
            json!(v as u64)
        } else {
            json!(v)
        };
        line.insert(k, v);
    }
    println!("{}", Value::Object(line));
}

/// The two namespaces and their veth pair; deleted on drop.
struct Namespaces;

impl Namespaces {
    fn remove() {
        // Deleting a namespace deletes the veth end in it, and with it the peer.
        let _ = ip(&["netns", "del", NS_A]);
        let _ = ip(&["netns", "del", NS_B]);
    }

    fn create() -> Result<Self, String> {
        Self::remove();
        let ns = Namespaces;
        ip(&["netns", "add", NS_A])?;
        ip(&["netns", "add", NS_B])?;
        ip(&[
            "link", "add", VETH_A, "netns", NS_A, "mtu", "1500", "type", "veth", "peer", "name",
            VETH_B, "netns", NS_B, "mtu", "1500",
        ])?;
        for (ns_name, dev, addr) in [(NS_A, VETH_A, ADDR_A), (NS_B, VETH_B, ADDR_B)] {
            let cidr = format!("{addr}/24");
            ip(&["-n", ns_name, "addr", "add", &cidr, "dev", dev])?;
            ip(&["-n", ns_name, "link", "set", dev, "up"])?;
            ip(&["-n", ns_name, "link", "set", "lo", "up"])?;
        }
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        Self::remove();
    }
}

fn orchestrate(quick: bool, only: Option<&str>) {
    let wants = |p: Path| only.is_none_or(|o| o == p.name());
    let sizes: &[u64] = if quick {
        &[64 * MIB]
    } else {
        &[64 * MIB, 1024 * MIB]
    };
    if wants(Path::Loopback) {
        for &total in sizes {
            measure(Path::Loopback, total);
        }
    }
    if !wants(Path::Veth) {
        return;
    }
    let skip = |why: String| {
        println!(
            "{}",
            json!({"bench": "throughput_16KiB_veth", "skipped": why})
        );
    };
    match common::unavailable(&[("ip", "-V", "apt-get install -y iproute2")]) {
        Some(why) => skip(why),
        None => match Namespaces::create() {
            Ok(ns) => {
                for &total in sizes {
                    measure(Path::Veth, total);
                }
                drop(ns);
            }
            Err(e) => {
                Namespaces::remove();
                skip(e);
            }
        },
    }
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
        let loopback = arg("--loopback").as_deref() == Some("true");
        let total: u64 = arg("--bytes").and_then(|b| b.parse().ok()).unwrap_or(0);
        let bind = arg("--bind").unwrap_or_else(|| "127.0.0.1".into());
        match role.as_str() {
            "sender" => run_sender(loopback, total),
            "receiver" => run_receiver(loopback, total, &bind),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let quick = std::env::var("LANSYNC_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
        || args.iter().any(|a| a == "--quick");
    let only = std::env::var("LANSYNC_BENCH_PATH").ok();
    orchestrate(quick, only.as_deref());
}
