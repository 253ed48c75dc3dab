//! The LAN test rig (`tests/lan/rig.sh`) under `cargo test`: a master and six followers, each in
//! its own network namespace on a private bridge, driven through `--json` — joins by QR link and
//! by mDNS session code, page turns, follower links cut and restored, a master killed and
//! restarted, the end of the session. The script prints one summary line per check and the
//! timings, and cleans up everything it made.
//!
//! Needs root, iproute2 and python3; without them the script prints `SKIP: …` and this passes.
//! Run: `cargo test --release --test lan_rig -- --nocapture` (as root; ~1 minute).
#![cfg(all(feature = "native", unix))]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn lan_rig() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lan/rig.sh");
    let mut child = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_lansync"))
        .env("LANSYNC_BIN", env!("CARGO_BIN_EXE_lansync"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run bash tests/lan/rig.sh");
    // Streamed line by line (println! so libtest captures it unless --nocapture).
    let stdout = child.stdout.take().expect("stdout");
    let mut last = String::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        println!("{line}");
        last = line;
    }
    let status = child.wait().expect("wait for rig.sh");
    assert!(
        status.success(),
        "tests/lan/rig.sh failed ({status}); last line: {last}"
    );
}
