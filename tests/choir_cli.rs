//! A choir in separate processes over real WebRTC on loopback: `lansync host` and `lansync join`
//! driven through `--json`. Followers join by the QR link, mirror the master, keep going through
//! a master crash and restart (same session, same link) and a follower restart (rejoin from its
//! stored membership), then the session ends and its link is refused.
#![cfg(all(feature = "native", unix))]

mod cli;

use cli::Proc;
use serde_json::{json, Value};
use std::path::PathBuf;

fn state_dir(name: &str) -> String {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("lansync-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.to_string_lossy().into_owned()
}

fn page_is(page: u64) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == "page" && v["page"] == page
}

fn joined(rejoin: bool) -> impl Fn(&Value) -> bool {
    move |v| v["event"] == "joined" && v["rejoin"] == rejoin
}

#[test]
fn a_choir_of_processes_stays_in_step_through_restarts_until_the_end() {
    let (hd, ad, bd) = (state_dir("host"), state_dir("alto"), state_dir("bass"));
    let host_args = ["host", "--json", "--loopback", "--state-dir", &hd];
    let mut host = Proc::spawn("host", &host_args);
    let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
    let link = hosting["link"].as_str().unwrap().to_string();
    let code = hosting["session_code"].clone();

    let join = |name: &'static str, dir: &str| {
        Proc::spawn(
            name,
            &[
                "join",
                &link,
                "--json",
                "--loopback",
                "--state-dir",
                dir,
                "--name",
                name,
            ],
        )
    };
    let alto = join("alto", &ad);
    let bass = join("bass", &bd);
    alto.wait_for("join", joined(false));
    bass.wait_for("join", joined(false));
    host.wait_for("three present", |v| {
        v["event"] == "presence" && v["count"] == 3
    });

    host.send(json!({"cmd": "set_song", "song_id": "ave-maria"}));
    host.send(json!({"cmd": "set_page", "page": 4}));
    alto.wait_for("page 4", page_is(4));
    bass.wait_for("page 4", page_is(4));

    // The master crashes and comes back from its state directory: same session, same link.
    drop(host);
    let mut host = Proc::spawn("host again", &host_args);
    let again = host.wait_for("join link", |v| v["event"] == "hosting_link");
    assert_eq!(again["session_code"], code);
    assert_eq!(again["link"], link.as_str());
    alto.wait_for("rejoin", joined(true));
    bass.wait_for("rejoin", joined(true));
    host.send(json!({"cmd": "set_page", "page": 6}));
    alto.wait_for("page 6", page_is(6));
    bass.wait_for("page 6", page_is(6));

    // A follower restarts with no argument: it rejoins the session it had stored.
    drop(alto);
    let mut alto = Proc::spawn(
        "alto again",
        &[
            "join",
            "--json",
            "--loopback",
            "--state-dir",
            &ad,
            "--name",
            "alto",
        ],
    );
    alto.wait_for("rejoin from storage", joined(true));
    host.send(json!({"cmd": "set_page", "page": 7}));
    alto.wait_for("page 7", page_is(7));

    // The end: everyone goes local, and the link no longer opens the session.
    host.send(json!({"cmd": "end"}));
    alto.wait_for("session end", |v| v["event"] == "session_ended");
    bass.wait_for("session end", |v| v["event"] == "session_ended");
    let late = join("latecomer", &state_dir("late"));
    late.wait_for("refusal", |v| {
        v["event"] == "rejected" && v["reason"] == "session_ended"
    });
    alto.send(json!({"cmd": "quit"}));
}

#[test]
fn a_host_timer_runs_on_every_follower_and_shared_pause_lets_them_pause_it() {
    let (hd, fd) = (state_dir("timer-host"), state_dir("timer-follower"));
    let mut host = Proc::spawn(
        "host",
        &[
            "host",
            "--json",
            "--loopback",
            "--state-dir",
            &hd,
            "--timer",
            "1m30s",
        ],
    );
    let hosting = host.wait_for("join link", |v| v["event"] == "hosting_link");
    let running =
        |v: &Value| v["event"] == "playback" && v["media_id"] == "timer" && v["running"] == true;
    let timer = host.wait_for("timer running", running);
    assert_eq!(timer["out_us"], 90_000_000u64, "{timer}");
    let link = hosting["link"].as_str().unwrap();
    let mut follower = Proc::spawn(
        "follower",
        &["join", link, "--json", "--loopback", "--state-dir", &fd],
    );
    follower.wait_for("timer on the follower", running);
    // In shared-pause mode the master obeys a follower's pause.
    host.send(json!({"cmd":"set_control_mode","mode":"shared-pause"}));
    follower.wait_for("control mode", |v| {
        v["event"] == "control" && v["mode"] == "shared-pause"
    });
    follower.send(json!({"cmd":"playback","op":"pause"}));
    let paused = |v: &Value| v["event"] == "playback" && v["running"] == false;
    host.wait_for("paused by the follower", paused);
    follower.wait_for("paused everywhere", paused);
}
