//! State records on disk are read like peer input: a record that does not parse or breaks a rule
//! of the wire (PROTOCOL.md §3) is reported, moved aside with its bytes unchanged, and the host
//! starts a new session instead of hanging or silently overwriting it.
#![cfg(feature = "native")]

use lansync::node::{load_record, BadRecord, Host, HostOptions};
use lansync::session::{Master, MasterConfig, Record, Time};
use lansync::signaling::RateLimit;
use lansync::transport::{Identity, TransportConfig};
use std::path::{Path, PathBuf};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lansync-records-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A valid master record as JSON, edited by `edit`.
fn master_json(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let m = Master::new(MasterConfig::new("master"), Time::from_millis(1), [9; 32]);
    let mut v = serde_json::to_value(Record::Master(m.record().clone())).unwrap();
    edit(&mut v);
    serde_json::to_vec_pretty(&v).unwrap()
}

/// Plants `bytes` as `master.json`, loads it and checks it is refused and moved aside whole.
fn refused(name: &str, bytes: &[u8], what: &str) -> (PathBuf, BadRecord) {
    let d = dir(name);
    let path = d.join("master.json");
    std::fs::write(&path, bytes).unwrap();
    let bad = load_record(&path).expect_err("a bad record is an error");
    assert_eq!(bad.path, path);
    assert!(
        bad.problem.contains(what),
        "{what} not in {:?}",
        bad.problem
    );
    assert!(bad.to_string().contains("master.json"), "{bad}");
    let moved = bad.moved_to.clone().expect("moved aside");
    assert!(
        moved
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("master.json.bad-"),
        "{moved:?}"
    );
    assert_eq!(std::fs::read(&moved).unwrap(), bytes, "bytes unchanged");
    assert!(!path.exists(), "nothing left to overwrite");
    (path, bad)
}

async fn start_host(path: &Path) -> Host {
    Host::start(HostOptions {
        master: MasterConfig::new("master"),
        record_path: Some(path.to_path_buf()),
        identity: Some(Identity::generate().unwrap()),
        bind: "127.0.0.1:0".parse().unwrap(),
        transport: TransportConfig {
            loopback_only: true,
            ..TransportConfig::default()
        },
        rate: RateLimit::default(),
        files: None,
        state_dir: None,
        advertise: false,
    })
    .await
    .unwrap()
}

#[test]
fn no_record_is_not_a_bad_record() {
    let d = dir("none");
    assert_eq!(load_record(&d.join("master.json")), Ok(None));
}

#[test]
fn a_valid_record_loads() {
    let d = dir("valid");
    let path = d.join("master.json");
    std::fs::write(&path, master_json(|_| {})).unwrap();
    assert!(matches!(load_record(&path), Ok(Some(Record::Master(_)))));
}

#[test]
fn a_truncated_record_is_refused() {
    let full = master_json(|_| {});
    refused("truncated", &full[..full.len() / 2], "not a record");
}

#[test]
fn a_page_beyond_the_wire_limit_is_refused() {
    let bytes = master_json(|v| v["page"]["page_index"] = 4_000_000_000u64.into());
    refused("page", &bytes, "page_index");
    let bytes = master_json(|v| v["page"]["page_index"] = 4e9.into());
    refused("page-float", &bytes, "not a record");
}

#[test]
fn a_70_kb_song_id_is_refused() {
    let bytes = master_json(|v| v["page"]["song_id"] = "s".repeat(70_000).into());
    refused("song", &bytes, "song_id");
}

#[tokio::test]
async fn a_host_after_a_bad_record_starts_a_new_session_and_says_so() {
    let bytes = master_json(|v| {
        v["session_id"] = "planted".into();
        v["page"]["page_index"] = 4_000_000_000u64.into();
    });
    let d = dir("host");
    let path = d.join("master.json");
    std::fs::write(&path, &bytes).unwrap();
    let host = start_host(&path).await;
    let bad = host.bad_record().expect("reported").clone();
    assert!(bad.problem.contains("page_index"), "{bad}");
    assert_eq!(std::fs::read(bad.moved_to.unwrap()).unwrap(), bytes);
    assert_ne!(host.record().session_id, "planted");
    assert_eq!(host.record().page.page_index, 0);
    host.shutdown().await;

    // The next start finds the new session's record (or none yet), never a bad one.
    let host = start_host(&path).await;
    assert!(host.bad_record().is_none());
    host.shutdown().await;
}

#[tokio::test]
async fn a_host_finding_another_roles_record_sets_it_aside_and_says_so() {
    let d = dir("role");
    let path = d.join("master.json");
    let bytes = br#"{"role":"cleared"}"#;
    std::fs::write(&path, bytes).unwrap();
    let host = start_host(&path).await;
    let bad = host.bad_record().expect("reported").clone();
    assert!(bad.problem.contains("not a master's record"), "{bad}");
    assert_eq!(std::fs::read(bad.moved_to.unwrap()).unwrap(), bytes);
    host.shutdown().await;
}
