//! The examples of `examples/` run against a real session on loopback.
//!
//! Each example is built by `cargo build --example NAME` (same profile and target directory as
//! this test), run as a program: `cargo test --test examples` alone does not build examples, and
//! a binary found lying in `target/` could be stale.
#![cfg(all(feature = "native", unix))]

use lansync::{Host, HostOptions};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

const DEADLINE: Duration = Duration::from_secs(30);

/// Builds example `name` and returns its path.
fn build_example(name: &str) -> PathBuf {
    // This test runs from target/<profile>/deps/; the example lands in target/<profile>/examples.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let target_dir = profile_dir.parent().expect("target dir");
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", name, "--target-dir"])
        .arg(target_dir);
    if release {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("run cargo");
    assert!(status.success(), "cargo build --example {name} failed");
    profile_dir.join("examples").join(name)
}

/// The next line containing `text`.
async fn wait_line(lines: &mut Lines<BufReader<ChildStdout>>, text: &str) -> String {
    let found = tokio::time::timeout(DEADLINE, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(text) {
                return Some(line);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => line,
        Ok(None) => panic!("the example ended before printing {text:?}"),
        Err(_) => panic!("the example printed no {text:?} within {DEADLINE:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_join_example_prints_the_page_the_host_turns_to() {
    let example = build_example("join");
    let mut host = Host::start(HostOptions::loopback()).await.expect("host");
    let _events = host.events(); // kept, unread: the stream drops what nobody reads
    let link = host.join_link([127, 0, 0, 1].into()).to_url();
    let mut child = tokio::process::Command::new(&example)
        .args([link.as_str(), "--loopback"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the example");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    wait_line(&mut lines, "joined").await;
    host.set_song("ave-maria").unwrap();
    host.set_page(2).unwrap();
    // Zero-based page 2 is the third page for people.
    let line = wait_line(&mut lines, "page 3").await;
    assert_eq!(line, "page 3 of ave-maria");
    host.end().unwrap();
    wait_line(&mut lines, "the session has ended").await;
    let status = tokio::time::timeout(DEADLINE, child.wait()).await;
    assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
    host.shutdown().await;
}

/// `cargo run --example host -- --loopback` and `cargo run --example join -- LINK`, as two
/// programs: the joiner follows the pages the host example turns by itself.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_and_join_examples_pair_on_loopback() {
    let (host_exe, join_exe) = (build_example("host"), build_example("join"));
    let mut host = tokio::process::Command::new(&host_exe)
        .arg("--loopback")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the host example");
    let mut host_lines = BufReader::new(host.stdout.take().unwrap()).lines();
    let line = wait_line(&mut host_lines, "join link ").await;
    let link = line.trim_start_matches("join link ").to_string();
    let mut join = tokio::process::Command::new(&join_exe)
        .args([link.as_str(), "--loopback"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the join example");
    let mut join_lines = BufReader::new(join.stdout.take().unwrap()).lines();
    wait_line(&mut join_lines, "joined").await;
    // The host example turns a page every few seconds: a later page arrives by itself.
    let first = wait_line(&mut join_lines, " of ave-maria").await;
    let next = wait_line(&mut join_lines, " of ave-maria").await;
    assert_ne!(first, next, "the pages the host turns reach the joiner");
}
