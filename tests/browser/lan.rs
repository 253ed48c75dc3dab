//! LANs of network namespaces for the browser tests, and runtimes inside them.

use std::fs::File;
use std::process::Command;

use super::unique;

// Namespace plumbing shared with the benchmarks and the stock-peer tests.
#[path = "../../benches/common/mod.rs"]
pub mod netns;
pub use netns::run;

fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args, None)
}

/// Hosts on one Ethernet segment: a switch namespace holds the bridge and the LAN's router
/// address (`.254`, every host's default route, as on a home LAN; it forwards nothing, so no
/// packet leaves the LAN), and host `i` has `{subnet}.{i + 1}/24` on its `eth0`. Deleted on drop.
pub struct Lan {
    switch: String,
    hosts: Vec<String>,
    subnet: String,
}

impl Lan {
    /// `hosts` namespaces named `{prefix}…` on subnet `subnet` (three octets, e.g. `10.232.4`).
    pub fn new(prefix: &str, subnet: &str, hosts: usize) -> Lan {
        let tag = unique(prefix);
        let lan = Lan {
            switch: format!("{tag}-sw"),
            hosts: (0..hosts).map(|i| format!("{tag}-h{i}")).collect(),
            subnet: subnet.to_owned(),
        };
        lan.build().expect("build the LAN of namespaces");
        lan
    }

    fn build(&self) -> Result<(), String> {
        let sw = &self.switch;
        ip(&["netns", "add", sw])?;
        ip(&["-n", sw, "link", "set", "lo", "up"])?;
        ip(&["-n", sw, "link", "add", "br0", "type", "bridge"])?;
        let router = format!("{}.254/24", self.subnet);
        ip(&["-n", sw, "addr", "add", &router, "dev", "br0"])?;
        ip(&["-n", sw, "link", "set", "br0", "up"])?;
        let gateway = format!("{}.254", self.subnet);
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
            // A page without camera permission gets host candidates only for the default
            // route's interface (none without one).
            ip(&["-n", ns, "route", "add", "default", "via", &gateway])?;
        }
        Ok(())
    }

    /// Namespace of host `i`.
    pub fn ns(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// IPv4 address of host `i`.
    pub fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// Drops `percent` % of the UDP packets entering and leaving host `i`, at random (nftables
    /// `numgen random`); 0 removes the loss.
    pub fn set_loss(&self, i: usize, percent: u32) -> Result<(), String> {
        let ns = &self.hosts[i];
        let _ = run(
            "ip",
            &["netns", "exec", ns, "nft", "delete table inet lossy"],
            None,
        );
        if percent == 0 {
            return Ok(());
        }
        let rule = format!(
            "meta l4proto udp numgen random mod 10000 < {} counter drop",
            percent * 100
        );
        nft(ns, "lossy", &rule)
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
        let ns = &self.hosts[i];
        let _ = run(
            "ip",
            &["netns", "exec", ns, "nft", "delete table inet cut"],
            None,
        );
        if !cut {
            return Ok(());
        }
        let other = self.addr(j);
        let rule = format!("ip saddr {other} drop; ip daddr {other} drop");
        nft(ns, "cut", &rule)
    }
}

/// Table `table` in namespace `ns`: `rules` on input and on output.
fn nft(ns: &str, table: &str, rules: &str) -> Result<(), String> {
    let script = format!(
        "table inet {table} {{\n\
         chain input {{ type filter hook input priority 0; policy accept; {rules}; }}\n\
         chain output {{ type filter hook output priority 0; policy accept; {rules}; }}\n\
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
        // Deleting a namespace deletes its veth end, and with it the pair.
        for ns in self.hosts.iter().chain([&self.switch]) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Runs `body` on a tokio runtime whose threads all live in namespace `ns` (threads inherit the
/// namespace of the thread that spawns them), so every socket lansync opens is there.
pub fn in_netns<F>(ns: &str, body: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    // `LANSYNC_LOG=rtc_sctp=trace` (say) shows what lansync's engine did, on stderr.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("LANSYNC_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let path = format!("/var/run/netns/{ns}");
    let thread = std::thread::spawn(move || {
        let file = File::open(&path).expect("open the namespace");
        // SAFETY: a valid namespace fd; setns only changes this thread's network namespace.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(body());
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}
