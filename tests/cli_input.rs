//! `lansync host --json` against hostile local input: bytes on stdin that are not a command, and
//! a planted state record that breaks the rules. Real processes on loopback.
#![cfg(all(feature = "native", unix))]

mod cli;

use cli::Proc;
use serde_json::json;
use std::path::PathBuf;

fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lansync-input-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn host(dir: &std::path::Path) -> Proc {
    let dir = dir.to_str().unwrap();
    Proc::spawn(
        "host",
        &["host", "--json", "--loopback", "--state-dir", dir],
    )
}

#[test]
fn a_bad_stdin_line_is_reported_and_the_next_line_works() {
    let dir = state_dir("stdin");
    let mut host = host(&dir);
    host.wait_for("join link", |v| v["event"] == "hosting_link");

    // Not UTF-8.
    host.send_raw(b"{\"cmd\":\"set_page\",\"page\":\xff\xfe}\n");
    let e = host.wait_for_error();
    assert_eq!(e["code"], "bad-command", "{e}");

    // A 1 MB line, written while the host reads it.
    let mut long = vec![b'x'; 1_000_000];
    long.push(b'\n');
    host.send_raw(&long);
    let e = host.wait_for_error();
    assert_eq!(e["code"], "bad-command", "{e}");
    assert!(e["message"].as_str().unwrap().contains("longer"), "{e}");

    host.send(json!({"cmd": "set_page", "page": 3}));
    host.wait_page(3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_planted_bad_master_record_is_reported_moved_aside_and_a_new_session_starts() {
    let dir = state_dir("record");
    let planted = br#"{"role":"master","session_id":"abc","token":"t","session_code":"ABCD-EFGH","session_name":"x","password":null,"page":{"song_id":null,"song_epoch":0,"page_revision":0,"page_index":4000000000},"stream":null,"ended":false}"#;
    std::fs::write(dir.join("master.json"), planted).unwrap();

    let mut host = host(&dir);
    let e = host.wait_for_error();
    assert_eq!(e["code"], "bad-record", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("master.json"),
        "{e}"
    );
    assert!(e["problem"].as_str().unwrap().contains("page_index"), "{e}");
    let moved = PathBuf::from(e["moved_to"].as_str().expect("moved aside"));
    assert_eq!(std::fs::read(&moved).unwrap(), planted, "bytes unchanged");

    let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
    assert_ne!(hosting["session_id"], "abc", "a new session");
    host.send(json!({"cmd": "set_page", "page": 2}));
    host.wait_page(2);
    let _ = std::fs::remove_dir_all(&dir);
}
