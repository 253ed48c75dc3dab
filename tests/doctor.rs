//! `lansync doctor` across network namespaces: the real binary, run with `ip netns exec` in
//! namespaces built by `common/lan.rs` (names start with `ldoc`; everything is deleted on drop,
//! also when a test panics). Addresses are 10.216.1.0/24; no traffic leaves the namespaces.
//!
//! Needs root, iproute2 and (for the firewall case) nftables; without them each test prints
//! why and passes. Run: `cargo test --release --test doctor -- --nocapture`.
#![cfg(feature = "native")]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_lansync");
/// Generous: a loaded CI machine may be slow to start processes and mDNS daemons.
const DEADLINE: Duration = Duration::from_secs(30);
/// The listener's default port (`lansync::doctor::DEFAULT_PORT`): free in a new namespace.
const PORT: u16 = lansync::doctor::DEFAULT_PORT;

#[path = "common/lan.rs"]
mod lan;
use lan::Lan;

/// Namespaces on a LAN, or one with loopback only; deleted on drop.
struct Rig {
    lan: Lan,
}

impl Rig {
    /// `n` namespaces on a bridge (`n > 0`), or one namespace with only loopback (`n == 0`).
    /// `None`, with the reason printed, when this machine cannot build it.
    fn new(n: usize) -> Option<Rig> {
        if !lan::available(&[]) {
            return None;
        }
        let built = if n == 0 {
            Lan::loopback_only("ldoc")
        } else {
            Lan::new("ldoc", "10.216.1", n)
        };
        match built {
            Ok(lan) => Some(Rig { lan }),
            Err(e) => {
                eprintln!("SKIP: cannot build the namespaces: {e}");
                None
            }
        }
    }

    fn lansync(&self, i: usize, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.lan.ns(i), BIN])
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
    assert_eq!(listening["addresses"][0], rig.lan.addr(1).as_str());

    let peer = format!("{}:{PORT}", rig.lan.addr(1));
    let (code, report) = rig.doctor(0, &["--peer", &peer, "--wait", "10"]);
    println!("{report:#}");
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["status"], "ok");
    let interfaces = check(&report, "interfaces");
    assert_eq!(interfaces["status"], "ok");
    assert_eq!(interfaces["facts"]["usable"][0], rig.lan.addr(0).as_str());
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
    let ns = rig.lan.ns(1);
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
        lan::run(
            "ip",
            &[&["netns", "exec", ns, "nft"][..], &rule].concat(),
            None,
        )
        .expect("nft");
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

    let peer = format!("{}:{PORT}", rig.lan.addr(1));
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
