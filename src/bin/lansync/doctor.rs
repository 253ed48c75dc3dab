//! `lansync doctor`: why devices don't see each other. The checks live in `lansync::doctor`;
//! this prints them for people (or as one JSON object with `--json`) and exits 1 when one of
//! them is a problem.

use lansync::doctor::{self, Check, Listener, Options, Report, Status, DEFAULT_PORT};
use lansync::invite::JoinLink;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// Options of `lansync doctor`.
#[derive(clap::Args, Clone, Debug)]
pub struct DoctorArgs {
    /// A host's join link (`lansync://join?…`): test its join endpoint too.
    pub link: Option<String>,
    /// The address that `lansync doctor --listen` printed on the other device (`ADDR:PORT`, or
    /// `ADDR` for the default port): test TCP, UDP and mDNS to it.
    #[arg(long, value_name = "ADDR:PORT")]
    pub peer: Option<String>,
    /// Answer another device's `lansync doctor --peer` until interrupted (Ctrl-C).
    #[arg(long, conflicts_with_all = ["link", "peer"])]
    pub listen: bool,
    /// The UDP and TCP port of `--listen` (0 picks a free one).
    #[arg(long, default_value_t = DEFAULT_PORT, requires = "listen")]
    pub port: u16,
    /// How long to wait for mDNS adverts and UDP echoes, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub wait: f64,
    /// One JSON object on stdout (with `--listen`: one line once listening).
    #[arg(long)]
    pub json: bool,
}

/// Runs `lansync doctor`; `false` (exit status 1) when a check found a problem or the
/// arguments are wrong.
pub async fn run(args: DoctorArgs) -> bool {
    if args.listen {
        return listen(&args).await;
    }
    let mut opts = Options::default();
    if args.wait.is_finite() && args.wait > 0.0 {
        opts.wait = Duration::from_secs_f64(args.wait.min(60.0));
    }
    if let Some(text) = &args.link {
        match JoinLink::parse(text) {
            Ok(link) => opts.join_link = Some(link),
            Err(e) => return fail(&args, &format!("{e}: copy the whole link the host shows.")),
        }
    }
    if let Some(text) = &args.peer {
        match parse_peer(text) {
            Some(addr) => opts.peer = Some(addr),
            None => {
                return fail(
                    &args,
                    &format!(
                        "'{}' is not an address: give the one `lansync doctor --listen` prints, e.g. 192.168.1.7:{DEFAULT_PORT}.",
                        lansync::protocol::truncate(text, 60)
                    ),
                )
            }
        }
    }
    if !args.json {
        eprintln!("Checking this device and the network (a few seconds)…");
    }
    let report = doctor::run(&opts).await;
    if args.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print_report(&report);
    }
    !report.has_problem()
}

/// `ADDR:PORT`, `[V6]:PORT`, or a bare address with the default port.
fn parse_peer(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return (addr.port() != 0).then_some(addr);
    }
    let ip = text.trim_start_matches('[').trim_end_matches(']');
    ip.parse().ok().map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
}

fn fail(args: &DoctorArgs, message: &str) -> bool {
    if args.json {
        println!(
            "{}",
            json!({"event": "error", "code": "bad-argument", "message": message})
        );
    } else {
        eprintln!("{message}");
    }
    false
}

fn print_check(c: &Check) {
    let status = match c.status {
        Status::Ok => "ok",
        Status::Warning => "warning",
        Status::Problem => "problem",
    };
    println!("{status:<8} {:<13} {}", c.id, c.message);
    if let Some(action) = &c.action {
        println!("{:<22} → {action}", "");
    }
}

fn print_report(report: &Report) {
    for c in &report.checks {
        print_check(c);
    }
    let count = |s| report.checks.iter().filter(|c| c.status == s).count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    println!();
    match (count(Status::Problem), count(Status::Warning)) {
        (0, 0) => println!("Nothing found that keeps devices apart."),
        (0, w) => println!("{}, no problem.", plural(w, "warning")),
        (p, w) => println!(
            "{}, {}: see what to do above.",
            plural(p, "problem"),
            plural(w, "warning")
        ),
    }
}

/// `--listen`: shows this device's addresses and firewall, then answers probes until Ctrl-C.
async fn listen(args: &DoctorArgs) -> bool {
    let listener = match Listener::bind(args.port, true).await {
        Ok(l) => l,
        Err(e) => {
            return fail(
                args,
                &format!(
                    "Cannot listen on port {} ({e}): pick another with --port.",
                    args.port
                ),
            )
        }
    };
    let port = listener.port();
    let checks = doctor::local_checks().await;
    let addresses: Vec<String> = checks
        .iter()
        .find(|c| c.id == "interfaces")
        .and_then(|c| c.facts["usable"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if args.json {
        println!(
            "{}",
            json!({"event": "listening", "port": port, "addresses": addresses, "checks": checks})
        );
    } else {
        for c in &checks {
            print_check(c);
        }
        println!();
        println!("Listening for `lansync doctor --peer` on UDP and TCP port {port}. Ctrl-C stops.");
        for a in &addresses {
            let addr = match a.parse::<std::net::IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, port).to_string(),
                Err(_) => format!("{a}:{port}"),
            };
            println!("On the other device run: lansync doctor --peer {addr}");
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    listener.stop().await;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_read_with_or_without_a_port() {
        assert_eq!(
            parse_peer("10.0.0.2:5000"),
            Some("10.0.0.2:5000".parse().unwrap())
        );
        assert_eq!(
            parse_peer(" 10.0.0.2 "),
            Some(SocketAddr::new("10.0.0.2".parse().unwrap(), DEFAULT_PORT))
        );
        assert_eq!(
            parse_peer("[fd00::2]"),
            Some(SocketAddr::new("fd00::2".parse().unwrap(), DEFAULT_PORT))
        );
        assert_eq!(parse_peer("10.0.0.2:0"), None);
        assert_eq!(parse_peer("tablet"), None);
    }
}
