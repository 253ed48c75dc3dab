//! Page fan-out to followers in separate processes over real WebRTC on loopback: one
//! `lansync host` and N `lansync join` processes driven through `--json`. The master turns 20
//! pages a second; each follower's `page` event is timestamped when its line reaches this
//! process (so figures include a pipe hop, tens of µs). Master CPU is read from /proc.
//! Prints one JSON object per N.
//!
//! `cargo bench --bench fanout` (`FANOUT=8,32,100` to choose the sizes).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lansync");
const TURNS: u64 = 100;
const TURN_EVERY: Duration = Duration::from_millis(50); // 20 turns per second

struct Proc {
    child: Child,
    stdin: ChildStdin,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `lansync ARGS`, forwarding each stdout JSON line as (who, arrival, value).
fn spawn(who: usize, args: &[&str], tx: Sender<(usize, Instant, Value)>) -> Proc {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lansync");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if tx.send((who, Instant::now(), v)).is_err() {
                    break;
                }
            }
        }
    });
    Proc { child, stdin }
}

/// CPU time (user + system) of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(ticks as f64 / hz)
}

fn wait_until(
    rx: &Receiver<(usize, Instant, Value)>,
    mut done: impl FnMut(usize, Instant, &Value) -> bool,
) {
    let end = Instant::now() + Duration::from_secs(60);
    while let Ok((who, at, v)) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
        if done(who, at, &v) {
            return;
        }
    }
    panic!("benchmark timed out");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(n: usize) {
    let base = std::env::temp_dir().join(format!("lansync-fanout-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dir = |name: String| base.join(name).to_string_lossy().into_owned();
    let (tx, rx) = mpsc::channel();
    let host_dir = dir("host".into());
    let mut host = spawn(
        usize::MAX,
        &[
            "host",
            "--json",
            "--loopback",
            "--max-followers",
            "500",
            "--state-dir",
            &host_dir,
        ],
        tx.clone(),
    );
    let mut link = String::new();
    wait_until(&rx, |_, _, v| {
        if v["event"] == "hosting_link" {
            link = v["link"].as_str().unwrap_or_default().to_string();
            true
        } else {
            false
        }
    });
    let start = Instant::now();
    let followers: Vec<Proc> = (0..n)
        .map(|i| {
            let d = dir(format!("f{i}"));
            let name = format!("singer-{i}");
            spawn(
                i,
                &[
                    "join",
                    &link,
                    "--json",
                    "--loopback",
                    "--state-dir",
                    &d,
                    "--name",
                    &name,
                ],
                tx.clone(),
            )
        })
        .collect();
    let mut joined = 0;
    wait_until(&rx, |_, _, v| {
        joined += usize::from(v["event"] == "joined");
        joined == n
    });
    let join_all = start.elapsed();

    let cpu_before = cpu_time(host.child.id());
    let t_cpu = Instant::now();
    let mut sent = Vec::new();
    let mut latencies = Vec::new();
    for k in 1..=TURNS {
        let due = t_cpu + TURN_EVERY * (k as u32 - 1);
        std::thread::sleep(due.saturating_duration_since(Instant::now())); // the pace of turning
        sent.push(Instant::now());
        writeln!(host.stdin, "{}", json!({"cmd": "set_page", "page": k})).unwrap();
        host.stdin.flush().unwrap();
        while let Ok((who, at, v)) = rx.try_recv() {
            if who != usize::MAX && v["event"] == "page" {
                let p = v["page"].as_u64().unwrap_or(0) as usize;
                if (1..=sent.len()).contains(&p) {
                    latencies.push(at.duration_since(sent[p - 1]).as_secs_f64() * 1000.0);
                }
            }
        }
    }
    let mut seen = latencies.len();
    wait_until(&rx, |who, at, v| {
        if who != usize::MAX && v["event"] == "page" {
            let p = v["page"].as_u64().unwrap_or(0) as usize;
            if (1..=sent.len()).contains(&p) {
                latencies.push(at.duration_since(sent[p - 1]).as_secs_f64() * 1000.0);
                seen += 1;
            }
        }
        seen >= n * TURNS as usize
    });
    let busy = cpu_time(host.child.id()).saturating_sub(cpu_before);
    let cpu_pct = busy.as_secs_f64() / t_cpu.elapsed().as_secs_f64() * 100.0;
    latencies.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "bench": "fanout_processes_loopback",
            "followers": n,
            "join_all_ms": join_all.as_secs_f64() * 1000.0,
            "page_p50_ms": percentile(&latencies, 0.5),
            "page_p99_ms": percentile(&latencies, 0.99),
            "samples": latencies.len(),
            "master_cpu_pct_of_core_at_20_turns_per_s": cpu_pct,
        })
    );
    drop(followers);
    drop(host);
    let _ = std::fs::remove_dir_all(&base);
}

fn main() {
    let sizes = std::env::var("FANOUT").unwrap_or_else(|_| "8,32".into());
    for n in sizes.split(',').filter_map(|s| s.trim().parse().ok()) {
        run(n);
    }
}
