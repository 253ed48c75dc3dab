//! `lansync sessions`: list the choir sessions advertised on the LAN over mDNS.
//!
//! Browses for `--timeout` seconds, then prints a table, or with `--json` one
//! `{"event":"session_found",…}` line per session. `--watch` keeps going until interrupted
//! (Ctrl-C) and reports changes as they happen: `session_found` (again for an update) and
//! `{"event":"session_lost","instance":…}` in JSON, `+`/`-` lines for people.

use lansync::discovery::{DiscoveredSession, Discovery, DiscoveryEvent};
use lansync::protocol::PROTOCOL_VERSION;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Options of `lansync sessions`.
#[derive(clap::Args, Clone, Debug)]
pub struct SessionsArgs {
    /// One JSON object per line on stdout (`session_found` / `session_lost` events).
    #[arg(long)]
    pub json: bool,
    /// How long to listen before printing the list and exiting, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub timeout: f64,
    /// Keep listening and report sessions as they appear and disappear, until interrupted.
    #[arg(long)]
    pub watch: bool,
}

/// Runs `lansync sessions`; `false` when discovery could not run.
pub async fn run(args: SessionsArgs) -> bool {
    let discovery = match Discovery::new() {
        Ok(d) => d,
        Err(e) => return fail(&args, e.code(), &e.to_string()),
    };
    let mut events = match discovery.browse() {
        Ok(rx) => rx,
        Err(e) => return fail(&args, e.code(), &e.to_string()),
    };
    // A negative, NaN or huge timeout is clamped rather than refused: it is only a wait.
    let secs = if args.timeout.is_finite() {
        args.timeout.clamp(0.0, 86_400.0)
    } else {
        3.0
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    if !args.json && !args.watch {
        eprintln!("Looking for sessions on the local network for {secs} s…");
    }
    let mut seen: BTreeMap<String, DiscoveredSession> = BTreeMap::new();
    loop {
        let next = async {
            if args.watch {
                tokio::select! {
                    ev = events.recv() => Some(ev),
                    _ = tokio::signal::ctrl_c() => None,
                }
            } else {
                tokio::time::timeout_at(deadline, events.recv()).await.ok()
            }
        };
        let ev = match next.await {
            None => break,       // time is up, or Ctrl-C
            Some(None) => break, // the discovery service stopped
            Some(Some(ev)) => ev,
        };
        match ev {
            DiscoveryEvent::Found(s) => {
                // Watching, a second `session_found` for an instance is an update.
                if args.json && args.watch {
                    println!("{}", found_json(&s));
                } else if args.watch {
                    println!("+ {}", row(&s));
                }
                seen.insert(s.instance.clone(), s);
            }
            DiscoveryEvent::Lost { instance } => {
                let gone = seen.remove(&instance);
                if args.json && args.watch {
                    println!("{}", json!({"event":"session_lost","instance":instance}));
                } else if args.watch {
                    match gone {
                        Some(s) => println!("- {}", row(&s)),
                        None => println!("- {instance}"),
                    }
                }
            }
        }
    }
    if !args.watch {
        if args.json {
            // One line per session still present, in its latest form.
            for s in seen.values() {
                println!("{}", found_json(s));
            }
        } else {
            print_table(&seen);
        }
    }
    true
}

fn fail(args: &SessionsArgs, code: &str, message: &str) -> bool {
    if args.json {
        println!("{}", json!({"event":"error","code":code,"message":message}));
    } else {
        eprintln!("error ({code}): {message}");
    }
    false
}

fn found_json(s: &DiscoveredSession) -> Value {
    json!({
        "event": "session_found",
        "instance": s.instance,
        "session_code": s.session_code,
        "session_name": s.session_name,
        "protocol_version": s.protocol_version,
        "compatible": s.is_compatible(),
        "fingerprint_hash": s.fingerprint_hash,
        "addrs": s.addrs,
        "port": s.port,
    })
}

/// `host:port` of the first (most useful) address, IPv6 in brackets.
fn endpoint(s: &DiscoveredSession) -> String {
    match s.addrs.first() {
        Some(std::net::IpAddr::V6(a)) => format!("[{a}]:{}", s.port),
        Some(a) => format!("{a}:{}", s.port),
        None => format!("?:{}", s.port),
    }
}

fn version_note(s: &DiscoveredSession) -> String {
    if s.is_compatible() {
        String::new()
    } else {
        format!(
            "  (protocol v{}; this lansync speaks v{PROTOCOL_VERSION}: update one side)",
            s.protocol_version
        )
    }
}

fn row(s: &DiscoveredSession) -> String {
    let line = format!(
        "{:<9}  {:<24}  {:<22}{}",
        s.session_code,
        s.session_name,
        endpoint(s),
        version_note(s)
    );
    line.trim_end().to_string()
}

fn print_table(seen: &BTreeMap<String, DiscoveredSession>) {
    if seen.is_empty() {
        println!("No sessions found. (Is the master on this network? Try `--timeout 10`.)");
        return;
    }
    println!("{:<9}  {:<24}  ADDRESS", "CODE", "NAME");
    let mut rows: Vec<&DiscoveredSession> = seen.values().collect();
    rows.sort_by(|a, b| {
        (&a.session_name, &a.session_code).cmp(&(&b.session_name, &b.session_code))
    });
    for s in rows {
        println!("{}", row(s));
    }
    println!(
        "{} session{}.",
        seen.len(),
        if seen.len() == 1 { "" } else { "s" }
    );
}
