//! Plumbing shared by the benchmarks that build network namespaces (`throughput.rs`, `lossy.rs`).

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
