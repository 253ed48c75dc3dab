//! `lansync host` / `join` as people and programs meet them: the `ready` line, pages counted
//! from 1 for people (0 in `--json`), participants and file peers by name, goodbyes on quit and
//! Ctrl-C, and a host with no LAN interface failing at once. Real processes on loopback (and one
//! in a network namespace with only `lo`).
#![cfg(all(feature = "native", unix))]

mod cli;

use cli::{Proc, DEADLINE};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command};
use std::sync::mpsc::Receiver;
use std::time::Instant;

fn state_dir(name: &str) -> String {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("lansync-hostcli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_string_lossy().into_owned()
}

/// A `lansync` whose stdout is read as text lines (human output, or JSON read raw).
struct Text {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Text {
    fn spawn(args: &[&str]) -> Text {
        Text::spawn_with(Command::new(env!("CARGO_BIN_EXE_lansync")).args(args))
    }

    fn spawn_with(cmd: &mut Command) -> Text {
        let (child, stdin, lines) = cli::spawn_lines(cmd);
        Text {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line, within the deadline.
    fn next(&mut self) -> String {
        let line = self
            .lines
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no line within {DEADLINE:?}; so far: {:#?}", self.seen));
        self.seen.push(line.clone());
        line
    }

    /// The first line matching `pred`.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no {what} within {DEADLINE:?}; so far: {:#?}", self.seen),
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The exit status, within the deadline.
    fn exit_code(&mut self) -> Option<i32> {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("still running after {DEADLINE:?}; so far: {:#?}", self.seen);
    }
}

impl Drop for Text {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn follower(name: &'static str, link: &str, dir: &str) -> Proc {
    Proc::spawn(
        name,
        &[
            "join",
            link,
            "--json",
            "--loopback",
            "--state-dir",
            dir,
            "--name",
            name,
        ],
    )
}

#[test]
fn host_json_starts_with_ready_and_the_version() {
    let dir = state_dir("ready");
    let mut host = Text::spawn(&["host", "--json", "--loopback", "--state-dir", &dir]);
    let first: Value = serde_json::from_str(&host.next()).expect("a JSON line");
    assert_eq!(first["event"], "ready", "{first}");
    assert_eq!(first["version"], env!("CARGO_PKG_VERSION"), "{first}");
    assert_eq!(first["role"], "master", "{first}");
    assert_eq!(first["page_base"], 0, "{first}");
    assert_eq!(first["state_dir"], dir.as_str(), "{first}");
    let second: Value = serde_json::from_str(&host.next()).unwrap();
    assert_eq!(second["event"], "hosting_link", "{second}");
}

#[test]
fn people_count_pages_from_one_and_see_names_while_json_stays_zero_based() {
    let (hd, fd) = (state_dir("pages-host"), state_dir("pages-alto"));
    let mut host = Text::spawn(&["host", "--loopback", "--state-dir", &hd]);
    // The banner gives the command to paste, link single-quoted for the shell.
    let paste = host.wait_for("join command", |l| l.contains("lansync join --loopback '"));
    let link = paste.split('\'').nth(1).expect("a quoted link").to_string();
    assert!(link.starts_with("lansync://join?"), "{paste}");
    host.wait_for("code reminder", |l| l.starts_with("Session code "));

    let alto = follower("alto", &link, &fd);
    alto.wait_for("joined", |v| v["event"] == "joined");
    host.wait_for("alto by name", |l| l == "alto joined (following)");

    host.type_line("3");
    host.wait_for("page 3 in words", |l| l == "Page 3");
    alto.wait_page(2); // JSON: the third page is index 2
    host.type_line("s ave-maria");
    host.wait_for("the song", |l| l == "Page 1 — ave-maria");
    host.type_line("0");
    host.wait_for("pages count from 1", |l| l.contains("pages count from 1"));
    for line in &host.seen {
        assert!(!line.contains("MASTER_"), "a raw state for people: {line}");
        assert!(!line.contains("(Local)"), "a raw origin for people: {line}");
    }
}

#[test]
fn a_follower_that_quits_or_is_interrupted_leaves_at_once_and_the_master_can_resume() {
    let (hd, ad, bd) = (
        state_dir("bye-host"),
        state_dir("bye-alto"),
        state_dir("bye-bass"),
    );
    let mut host = Proc::spawn(
        "host",
        &["host", "--json", "--loopback", "--state-dir", &hd],
    );
    let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
    let link = hosting["link"].as_str().unwrap().to_string();
    let mut alto = follower("alto", &link, &ad);
    let bass = follower("bass", &link, &bd);
    host.wait_for("three present", |v| {
        v["event"] == "presence" && v["count"] == 3
    });
    // Events on a follower's stdout mean its console runs (and listens for Ctrl-C).
    alto.wait_for("alto joined", |v| v["event"] == "joined");
    bass.wait_for("bass joined", |v| v["event"] == "joined");

    // A link that just went away would only be noticed after 10 s of silence, as `disconnected`;
    // a goodbye is seen at once, as `left`.
    let left =
        |name: &'static str| move |v: &Value| v["event"] == "participant_left" && v["name"] == name;
    let t = Instant::now();
    alto.send(json!({"cmd": "quit"}));
    let gone = host.wait_for("alto's goodbye", left("alto"));
    assert_eq!(gone["status"], "left", "{gone}");
    alto.wait_for("alto's quit", |v| v["event"] == "quit" && v["left"] == true);
    let t = t.elapsed();
    assert!(t.as_secs() < 5, "alto seen leaving after {t:?}");

    bass.signal("-INT");
    let gone = host.wait_for("bass's goodbye", left("bass"));
    assert_eq!(gone["status"], "left", "{gone}");
    bass.wait_for("bass's quit", |v| v["event"] == "quit");

    // The master's quit keeps the session: it says so.
    host.send(json!({"cmd": "quit"}));
    host.wait_for("master's quit", |v| {
        v["event"] == "quit" && v["resumable"] == true
    });
}

#[test]
fn file_events_on_the_host_name_the_participant() {
    let (hd, fd, pack) = (
        state_dir("named-host"),
        state_dir("named-alto"),
        state_dir("named-pack"),
    );
    std::fs::create_dir_all(&pack).unwrap();
    let mut score = b"%PDF-1.7\n".to_vec();
    score.resize(300_000, b'x');
    std::fs::write(PathBuf::from(&pack).join("score.pdf"), score).unwrap();
    let host = Proc::spawn(
        "host",
        &[
            "host",
            "--json",
            "--loopback",
            "--state-dir",
            &hd,
            "--pack",
            &pack,
        ],
    );
    let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
    let alto = follower("alto", hosting["link"].as_str().unwrap(), &fd);
    alto.wait_for("the pack", |v| v["event"] == "files_done");
    let done = host.wait_for("alto's confirmation", |v| v["event"] == "files_done");
    assert!(done["peer"].is_u64(), "{done}");
    assert_eq!(done["name"], "alto", "{done}");
}

/// Runs `lansync host` in a fresh network namespace where only `lo` is up.
#[test]
fn host_without_a_lan_interface_fails_at_once_with_one_sentence() {
    let ns = format!("lhcl-nolan-{}", std::process::id());
    let ok = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(ok(&["netns", "add", &ns]), "ip netns add (needs root)");
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _ns = Netns(ns.clone());
    assert!(ok(&["-n", &ns, "link", "set", "lo", "up"]));

    let dir = state_dir("nolan");
    let mut host = Text::spawn_with(Command::new("ip").args([
        "netns",
        "exec",
        &ns,
        env!("CARGO_BIN_EXE_lansync"),
        "host",
        "--state-dir",
        &dir,
    ]));
    let sentence = "no network interface besides loopback: connect to the Wi-Fi the singers \
                    use, or pass --loopback to test on this machine";
    host.wait_for("the sentence", |l| l.contains(sentence));
    assert_eq!(host.exit_code(), Some(1), "{:#?}", host.seen);
    let text = host.seen.join("\n");
    assert!(!text.contains("127.0.0.1"), "{text}");
    assert!(
        !PathBuf::from(&dir).join("identity.pem").exists(),
        "nothing created"
    );
}

#[test]
fn a_master_stops_on_quit_or_ctrl_c_while_its_input_stays_open_and_says_how_to_resume() {
    let dir = state_dir("stop");
    let mut host = Text::spawn(&["host", "--json", "--loopback", "--state-dir", &dir]);
    host.wait_for("join link", |l| l.contains("\"hosting_link\""));
    host.type_line(r#"{"cmd":"quit"}"#);
    host.wait_for("quit", |l| l.contains("\"resumable\":true"));
    assert_eq!(host.exit_code(), Some(0), "{:#?}", host.seen);

    // Ctrl-C, for people: the same goodbye, the same session when it comes back.
    let mut host = Text::spawn(&["host", "--loopback", "--state-dir", &dir]);
    let code = host.wait_for("the code", |l| l.starts_with("Session code "));
    // The key line comes once the session listens for keys and Ctrl-C.
    host.wait_for("the keys", |l| l.starts_with("Keys: "));
    let interrupt = Command::new("kill")
        .args(["-INT", &host.child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    host.wait_for("how to resume", |l| {
        l.contains("Run `lansync host` again with the same state directory")
    });
    assert_eq!(host.exit_code(), Some(0), "{:#?}", host.seen);
    let mut again = Text::spawn(&["host", "--loopback", "--state-dir", &dir]);
    again.wait_for("the same code", |l| l == code);
}

#[test]
fn host_keeps_its_state_in_the_per_user_data_directory_by_default() {
    let data = state_dir("xdg-data");
    let mut host = Text::spawn_with(
        Command::new(env!("CARGO_BIN_EXE_lansync"))
            .args(["host", "--json", "--loopback"])
            .env("XDG_DATA_HOME", &data),
    );
    let ready: Value = serde_json::from_str(&host.next()).unwrap();
    let expected = PathBuf::from(&data).join("lansync").join("host");
    assert_eq!(ready["state_dir"], expected.to_str().unwrap(), "{ready}");
    host.wait_for("join link", |l| l.contains("\"hosting_link\""));
    assert!(
        expected.join("identity.pem").is_file(),
        "identity kept there"
    );
}
