//! `lansync doctor` across network namespaces: the real binary, run with `ip netns exec` in
//! namespaces made here (names start with `ldoc`; everything is deleted on drop, also when a
//! test panics). Addresses are 10.216.x.0/24; no traffic leaves the namespaces.
//!
//! Needs root, iproute2 and (for the firewall case) nftables; without them each test prints
//! why and passes. Run: `cargo test --release --test doctor -- --nocapture`.
#![cfg(feature = "native")]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lansync");
/// Generous: a loaded CI machine may be slow to start processes and mDNS daemons.
const DEADLINE: Duration = Duration::from_secs(30);
/// The listener's default port (`lansync::doctor::DEFAULT_PORT`): free in a new namespace.
const PORT: u16 = lansync::doctor::DEFAULT_PORT;

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args)
}

/// Namespaces, optionally on a bridge; deleted on drop.
struct Rig {
    bridge: Option<String>,
    namespaces: Vec<String>,
    host_veths: Vec<String>,
    addrs: Vec<String>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Rig {
    /// `n` namespaces on a bridge (`n > 0`), or one namespace with only loopback (`n == 0`).
    /// `None`, with the reason printed, when this machine cannot build it.
    fn new(n: usize) -> Option<Rig> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: network namespaces need root");
            return None;
        }
        if Command::new("ip").arg("-V").output().is_err() {
            eprintln!("SKIP: iproute2 (`ip`) is not installed");
            return None;
        }
        let pid = std::process::id();
        let k = SEQ.fetch_add(1, Ordering::Relaxed);
        // Interface names are at most 15 bytes: "ldocv" + pid (≤ 7) + letter + index.
        let tag = format!("{pid}{}", (b'a' + (k % 26) as u8) as char);
        let subnet = 1 + (pid.wrapping_mul(7).wrapping_add(k) % 250);
        let mut rig = Rig {
            bridge: None,
            namespaces: Vec::new(),
            host_veths: Vec::new(),
            addrs: Vec::new(),
        };
        if let Err(e) = rig.build(n, &tag, subnet) {
            eprintln!("SKIP: cannot build the namespaces: {e}");
            return None; // the drop removes what was made
        }
        Some(rig)
    }

    fn build(&mut self, n: usize, tag: &str, subnet: u32) -> Result<(), String> {
        if n == 0 {
            let ns = format!("ldoc-{tag}-lo");
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            return ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        let bridge = format!("ldocb{tag}");
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        self.bridge = Some(bridge.clone());
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..n {
            let ns = format!("ldoc-{tag}-{i}");
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            let host_side = format!("ldocv{tag}{i}");
            let ns_side = format!("ldocp{tag}{i}");
            ip(&[
                "link", "add", &host_side, "type", "veth", "peer", "name", &ns_side,
            ])?;
            self.host_veths.push(host_side.clone());
            ip(&["link", "set", &ns_side, "netns", &ns])?;
            ip(&["link", "set", &host_side, "master", &bridge])?;
            ip(&["link", "set", &host_side, "up"])?;
            let addr = format!("10.216.{subnet}.{}", 10 + i);
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &ns_side,
            ])?;
            ip(&["-n", &ns, "link", "set", &ns_side, "up"])?;
            self.addrs.push(addr);
        }
        Ok(())
    }

    fn lansync(&self, i: usize, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespaces[i], BIN])
            .args(args)
            .env("LANSYNC_LOG", "error");
        cmd
    }

    /// Runs `lansync doctor ARGS --json` in namespace `i`: its exit code and its report.
    fn doctor(&self, i: usize, args: &[&str]) -> (i32, Value) {
        let (code, stdout) = self.doctor_raw(i, args, true);
        let report: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("doctor printed no JSON report ({e}): {stdout}"));
        (code, report)
    }

    /// Runs `lansync doctor ARGS [--json]`: exit code and stdout, within [`DEADLINE`].
    fn doctor_raw(&self, i: usize, args: &[&str], json: bool) -> (i32, String) {
        let mut cmd = self.lansync(i, &[&["doctor"], args].concat());
        if json {
            cmd.arg("--json");
        }
        let mut child = Killed(
            cmd.stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn lansync doctor"),
        );
        let mut stdout = child.0.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let end = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = child.0.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < end,
                "lansync doctor still running after {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = reader.join().expect("stdout reader");
        (status.code().unwrap_or(-1), out)
    }

    /// Starts `lansync doctor --listen --json` in namespace `i` and waits for its `listening`
    /// line.
    fn listen(&self, i: usize) -> (Killed, Value) {
        let mut child = Killed(
            self.lansync(i, &["doctor", "--listen", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn lansync doctor --listen"),
        );
        let stdout = child.0.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let v = rx
            .recv_timeout(DEADLINE)
            .expect("the listener printed nothing");
        assert_eq!(v["event"], "listening", "{v}");
        (child, v)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end, and with it the pair.
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        for v in &self.host_veths {
            let _ = ip(&["link", "del", v]);
        }
        if let Some(b) = &self.bridge {
            let _ = ip(&["link", "del", b]);
        }
    }
}

/// A child process killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no {id} check in {report:#}"))
}

#[test]
fn two_hosts_on_a_bridge_see_each_other() {
    let Some(rig) = Rig::new(2) else { return };
    let (_listener, listening) = rig.listen(1);
    assert_eq!(listening["port"], PORT);
    assert_eq!(listening["addresses"][0], rig.addrs[1].as_str());

    let peer = format!("{}:{PORT}", rig.addrs[1]);
    let (code, report) = rig.doctor(0, &["--peer", &peer, "--wait", "10"]);
    println!("{report:#}");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["status"], "ok");
    let interfaces = check(&report, "interfaces");
    assert_eq!(interfaces["status"], "ok");
    assert_eq!(interfaces["facts"]["usable"][0], rig.addrs[0].as_str());
    assert_eq!(check(&report, "mdns")["status"], "ok");
    assert_eq!(check(&report, "peer_tcp")["status"], "ok");
    let udp = check(&report, "peer_udp");
    assert_eq!(udp["status"], "ok", "{udp:#}");
    assert_eq!(udp["facts"]["sent"], 20);
    assert_eq!(udp["facts"]["received"], 20);
    assert_eq!(udp["facts"]["loss_percent"], 0.0);
    assert_eq!(check(&report, "peer_mdns")["status"], "ok");
}

#[test]
fn loopback_only_is_no_network() {
    let Some(rig) = Rig::new(0) else { return };
    let (code, report) = rig.doctor(0, &[]);
    println!("{report:#}");
    assert_eq!(code, 1, "{report:#}");
    let interfaces = check(&report, "interfaces");
    assert_eq!(interfaces["status"], "problem");
    assert_eq!(interfaces["facts"]["usable"], serde_json::json!([]));
    assert!(interfaces["message"]
        .as_str()
        .unwrap()
        .starts_with("No network"));
    assert_eq!(check(&report, "mdns")["status"], "warning");

    let (code, text) = rig.doctor_raw(0, &[], false);
    println!("{text}");
    assert_eq!(code, 1);
    assert!(
        text.contains("Connect to the Wi-Fi the other devices use."),
        "{text}"
    );
}

#[test]
fn udp_dropped_by_the_peer_firewall_is_reported() {
    let Some(rig) = Rig::new(2) else { return };
    if Command::new("nft").arg("--version").output().is_err() {
        eprintln!("SKIP: nftables (`nft`) is not installed");
        return;
    }
    let ns = rig.namespaces[1].as_str();
    let port = PORT.to_string();
    for rule in [
        vec!["add", "table", "inet", "ldoc"],
        vec![
            "add",
            "chain",
            "inet",
            "ldoc",
            "input",
            "{ type filter hook input priority 0; policy accept; }",
        ],
        vec![
            "add", "rule", "inet", "ldoc", "input", "udp", "dport", &port, "drop",
        ],
    ] {
        run("ip", &[&["netns", "exec", ns, "nft"][..], &rule].concat()).expect("nft");
    }
    let (_listener, listening) = rig.listen(1);
    // The listener shows its own device's rule.
    let firewall = &listening["checks"][1];
    assert_eq!(firewall["id"], "firewall");
    assert_eq!(firewall["status"], "warning", "{firewall:#}");
    assert_eq!(
        firewall["facts"]["drop_rules"][0],
        format!("udp dport {PORT} drop")
    );

    let peer = format!("{}:{PORT}", rig.addrs[1]);
    let (code, report) = rig.doctor(0, &["--peer", &peer, "--wait", "5"]);
    println!("{report:#}");
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["status"], "problem");
    assert_eq!(check(&report, "peer_tcp")["status"], "ok");
    let udp = check(&report, "peer_udp");
    assert_eq!(udp["status"], "problem");
    assert_eq!(udp["facts"]["received"], 0);
    assert_eq!(udp["facts"]["loss_percent"], 100.0);
    assert_eq!(udp["facts"]["refused"], false);
    assert!(
        udp["action"].as_str().unwrap().contains("firewall"),
        "{udp:#}"
    );
}
