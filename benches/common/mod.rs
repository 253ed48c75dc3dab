//! Plumbing shared by what builds network namespaces: the benchmarks (`throughput.rs`,
//! `lossy.rs`) and the stock-peer tests (`tests/stock_aiortc.rs`, `tests/stock_chromium.rs`,
//! which include this file by path). Each uses a part of it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `program args`, feeding `stdin` if given; its stderr becomes the error.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("{program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
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

/// Sets the random loss of namespace `ns` to `percent` % of its `protos` packets (nftables syntax:
/// `udp`, or `{ tcp, udp }`), dropped on input and on output; 0 removes it. nftables `numgen
/// random` stands in for `tc netem`, which this kernel lacks.
pub fn set_loss(ns: &str, percent: f64, protos: &str) -> Result<(), String> {
    let _ = run(
        "ip",
        &["netns", "exec", ns, "nft", "delete table inet lossy"],
        None,
    );
    let n = (percent * 100.0).round() as u32;
    if n == 0 {
        return Ok(());
    }
    let rule = format!("meta l4proto {protos} numgen random mod 10000 < {n} counter drop");
    let script = format!(
        "table inet lossy {{\n\
         chain input {{ type filter hook input priority 0; policy accept; {rule}; }}\n\
         chain output {{ type filter hook output priority 0; policy accept; {rule}; }}\n\
         }}\n"
    );
    run(
        "ip",
        &["netns", "exec", ns, "nft", "-f", "-"],
        Some(&script),
    )
}

/// `ip args` (iproute2).
pub fn ip(args: &[&str]) -> Result<(), String> {
    run("ip", args, None)
}

/// Why namespaces cannot be built here, if they cannot: not root, or one of `tools`
/// (`(program, version flag, how to get it)`) does not run.
pub fn unavailable(tools: &[(&str, &str, &str)]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces)".into());
    }
    tools.iter().find_map(|(program, flag, get)| {
        let runs = Command::new(program)
            .arg(flag)
            .output()
            .is_ok_and(|o| o.status.success());
        (!runs).then(|| format!("`{program}` not found ({get})"))
    })
}
