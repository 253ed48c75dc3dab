//! A private LAN of network namespaces for the tests that need real sockets and multicast:
//! a switch namespace holds a bridge (and the LAN's router address, `.254`), and host `i` is a
//! namespace whose `eth0` has `{subnet}.{i + 1}/24`. Every interface is made inside the
//! namespaces, so nothing appears in this machine's own namespace, nothing collides with a LAN
//! another test binary builds at the same time (only the namespace names must differ: each
//! test passes its own prefix), and multicast never touches this machine's interfaces.
//! Random loss, a cut between two hosts and a host cut off from everything are nftables tables
//! in the host's namespace. Everything is deleted on drop (also when a test panics).
//!
//! Included by path (`#[path = "common/lan.rs"] mod lan;`) by the tests that build one; each
//! uses a part of it.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Hosts on one Ethernet segment; see the module doc. Deleted on drop.
pub struct Lan {
    /// None for [`Lan::loopback_only`].
    switch: Option<String>,
    hosts: Vec<String>,
    subnet: String,
}

/// Makes LANs told apart within this process.
static LAN_SEQ: AtomicU32 = AtomicU32::new(0);

/// The namespace plumbing the benchmarks use too (running `ip`/`nft` with their errors).
#[path = "../../benches/common/mod.rs"]
pub mod plumbing;
pub use plumbing::run;

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args, None)
}

/// Whether this machine can build a LAN: root, iproute2 and the `extra` tools (e.g. `nft`).
/// Prints why not (the test then passes without running).
pub fn available(extra: &[&str]) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: the namespace LAN needs root");
        return false;
    }
    let tools = [("ip", "-V")]
        .into_iter()
        .chain(extra.iter().map(|t| (*t, "--version")));
    for (tool, arg) in tools {
        if Command::new(tool).arg(arg).output().is_err() {
            eprintln!("SKIP: `{tool}` is not installed");
            return false;
        }
    }
    true
}

/// `{prefix}-{pid}{seq}`: a name no other LAN of this or another test process has.
fn unique(prefix: &str) -> String {
    let k = LAN_SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}-{}{}",
        std::process::id(),
        (b'a' + (k % 26) as u8) as char
    )
}

impl Lan {
    /// `hosts` namespaces named `{prefix}-{pid}{seq}-h{i}` on subnet `subnet` (three octets,
    /// e.g. `10.213.4`), with no default route.
    pub fn new(prefix: &str, subnet: &str, hosts: usize) -> Result<Lan, String> {
        Self::build(prefix, subnet, hosts, false)
    }

    /// As [`new`](Self::new), and every host's default route goes to the router address (as on
    /// a home LAN; it forwards nothing, so no packet leaves the LAN).
    pub fn with_default_route(prefix: &str, subnet: &str, hosts: usize) -> Result<Lan, String> {
        Self::build(prefix, subnet, hosts, true)
    }

    /// [`available`] and [`new`](Self::new), printing why not and giving `None` instead.
    pub fn try_new(prefix: &str, subnet: &str, hosts: usize, extra: &[&str]) -> Option<Lan> {
        if !available(extra) {
            return None;
        }
        match Self::new(prefix, subnet, hosts) {
            Ok(lan) => Some(lan),
            Err(e) => {
                eprintln!("SKIP: cannot build the namespace LAN: {e}");
                None
            }
        }
    }

    fn build(prefix: &str, subnet: &str, hosts: usize, route: bool) -> Result<Lan, String> {
        let tag = unique(prefix);
        let lan = Lan {
            switch: Some(format!("{tag}-sw")),
            hosts: (0..hosts).map(|i| format!("{tag}-h{i}")).collect(),
            subnet: subnet.to_owned(),
        };
        // On an error the drop removes what was made.
        lan.plumb(route)?;
        Ok(lan)
    }

    /// One host with loopback only: no LAN at all.
    pub fn loopback_only(prefix: &str) -> Result<Lan, String> {
        let lan = Lan {
            switch: None,
            hosts: vec![format!("{}-lo", unique(prefix))],
            subnet: String::new(),
        };
        ip(&["netns", "add", lan.ns(0)])?;
        ip(&["-n", lan.ns(0), "link", "set", "lo", "up"])?;
        Ok(lan)
    }

    fn plumb(&self, route: bool) -> Result<(), String> {
        let Some(sw) = &self.switch else {
            return Ok(());
        };
        ip(&["netns", "add", sw])?;
        ip(&["-n", sw, "link", "set", "lo", "up"])?;
        ip(&["-n", sw, "link", "add", "br0", "type", "bridge"])?;
        let router = format!("{}/24", self.router());
        ip(&["-n", sw, "addr", "add", &router, "dev", "br0"])?;
        ip(&["-n", sw, "link", "set", "br0", "up"])?;
        for (i, ns) in self.hosts.iter().enumerate() {
            let port = format!("p{i}");
            ip(&["netns", "add", ns])?;
            // Created straight inside the namespaces: no name in this machine's own namespace.
            ip(&[
                "link", "add", "eth0", "netns", ns, "mtu", "1500", "type", "veth", "peer", "name",
                &port, "netns", sw, "mtu", "1500",
            ])?;
            ip(&["-n", sw, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", sw, "link", "set", &port, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            let addr = format!("{}/24", self.addr(i));
            ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            if route {
                ip(&["-n", ns, "route", "add", "default", "via", &self.router()])?;
            }
        }
        Ok(())
    }

    /// Namespace of host `i`.
    pub fn ns(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Every host's namespace, in order.
    pub fn namespaces(&self) -> &[String] {
        &self.hosts
    }

    /// IPv4 address of host `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// `{subnet}.{host}`: an address of this LAN's subnet.
    pub fn subnet_addr(&self, host: u8) -> String {
        format!("{}.{host}", self.subnet)
    }

    /// The router address every host can route through (held by the switch).
    pub fn router(&self) -> String {
        format!("{}.254", self.subnet)
    }

    /// The interface of every host on the LAN.
    pub fn dev(&self) -> &'static str {
        "eth0"
    }

    /// Drops `percent` % of the UDP packets entering and leaving host `i`, at random (nftables
    /// `numgen random`); 0 removes the loss.
    pub fn set_loss(&self, i: usize, percent: u32) -> Result<(), String> {
        plumbing::set_loss(&self.hosts[i], f64::from(percent), "udp")
    }

    /// How many packets host `i`'s random loss dropped so far (its nftables counters).
    pub fn dropped(&self, i: usize) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts[i],
                "nft",
                "list",
                "table",
                "inet",
                "lossy",
            ])
            .output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let text = text.unwrap_or_default();
        let words: Vec<&str> = text.split_whitespace().collect();
        words
            .windows(2)
            .filter(|w| w[0] == "packets")
            .filter_map(|w| w[1].parse::<u64>().ok())
            .sum()
    }

    /// Cuts (`true`) or restores every packet between hosts `i` and `j`, dropped in host `i`.
    pub fn cut(&self, i: usize, j: usize, cut: bool) -> Result<(), String> {
        let other = self.addr(j);
        let rule = format!("ip saddr {other} drop; ip daddr {other} drop");
        set_table(
            &self.hosts[i],
            "cut",
            cut.then_some(("accept", &rule, &rule)),
        )
    }

    /// Drops (`true`) every packet in and out of host `i`, loopback excepted, or lets them
    /// pass again.
    pub fn isolate(&self, i: usize, cut: bool) -> Result<(), String> {
        let rules = ("drop", "iif lo accept", "oif lo accept");
        set_table(&self.hosts[i], "isolated", cut.then_some(rules))
    }
}

/// Replaces table `table` in namespace `ns`: with `Some((policy, input, output))` its `input`
/// and `output` rules on those hooks under `policy`, with `None` nothing.
fn set_table(ns: &str, table: &str, rules: Option<(&str, &str, &str)>) -> Result<(), String> {
    let delete = format!("delete table inet {table}");
    let _ = run("ip", &["netns", "exec", ns, "nft", &delete], None);
    let Some((policy, input, output)) = rules else {
        return Ok(());
    };
    nft(ns, table, policy, input, output)
}

/// Table `table` in namespace `ns`: `input` and `output` rules on those hooks, under `policy`.
fn nft(ns: &str, table: &str, policy: &str, input: &str, output: &str) -> Result<(), String> {
    let script = format!(
        "table inet {table} {{\n\
         chain input {{ type filter hook input priority 0; policy {policy}; {input}; }}\n\
         chain output {{ type filter hook output priority 0; policy {policy}; {output}; }}\n\
         }}\n"
    );
    run(
        "ip",
        &["netns", "exec", ns, "nft", "-f", "-"],
        Some(&script),
    )
}

impl Drop for Lan {
    fn drop(&mut self) {
        // What the tests started in a host (and left behind on a panic) goes first, so the
        // namespace can go.
        for ns in &self.hosts {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
        }
        // Deleting a namespace deletes its veth end, and with it the pair.
        for ns in self.hosts.iter().chain(&self.switch) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
