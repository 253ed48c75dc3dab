//! A new user's first session, in real terminals (pseudo-terminals of a given size), one test
//! per thing that used to go wrong: what is printed must fit the screen, be pasted into a shell
//! as it is, and every command must end on its own with a plain sentence when it cannot work.
//! Real processes on loopback.
#![cfg(all(feature = "cli", unix))]

mod terminal;

use std::path::{Path, PathBuf};
use std::time::Duration;
use terminal::Terminal;

/// Generous: these wait for events, they do not time anything.
const DEADLINE: Duration = Duration::from_secs(30);

/// A scratch directory for one test (state directories, files), removed first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lansync-newuser-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command line exactly as printed, through a shell (so quoting mistakes show), in a
/// terminal.
fn paste(line: &str, cols: u16, dir: &Path) -> Terminal {
    let bin = env!("CARGO_BIN_EXE_lansync");
    // The printed command starts with `lansync`: run that word as this build's binary.
    let rest = line
        .trim()
        .strip_prefix("lansync ")
        .expect("a lansync command");
    let script = format!("exec '{bin}' {rest}");
    Terminal::spawn_shell(&script, cols, 24, dir)
}

/// The host's first screen holds the session code and a join command that pastes as printed;
/// typing `3` on the host shows "Page 3" on the follower, in words.
#[test]
fn the_first_screen_holds_the_code_and_a_join_command_that_pastes_as_printed() {
    let dir = scratch("first-screen");
    let state = dir.join("host");
    let mut host = Terminal::spawn(
        &["host", "--loopback", "--state-dir", state.to_str().unwrap()],
        80,
        24,
        &dir,
    );
    let command = host
        .wait_line(DEADLINE, |l| {
            l.contains("lansync join") && l.contains("lansync://")
        })
        .expect("a join command");
    let code_line = host
        .seen
        .iter()
        .position(|l| l.contains("session code"))
        .expect("the session code is printed");
    let command_line = host.seen.iter().position(|l| *l == command).unwrap();
    assert!(
        code_line < 24 && command_line < 24,
        "the code and the join command are on the first 24-row screen: {:#?}",
        host.seen
    );
    let printed = command[command.find("lansync join").unwrap()..].to_string();
    let follower_state = dir.join("follower");
    let printed = printed.replacen(
        "lansync join",
        &format!("lansync join --state-dir '{}'", follower_state.display()),
        1,
    );
    let mut follower = paste(&printed, 80, &dir);
    follower
        .wait_line(DEADLINE, |l| l.contains("following the master"))
        .unwrap_or_else(|| panic!("the pasted command joins: {:#?}", follower.seen));
    host.wait_line(DEADLINE, |l| l.contains("joined"))
        .expect("the host sees the follower join");
    host.type_text("3\n");
    follower
        .wait_line(DEADLINE, |l| l.contains("Page 3"))
        .unwrap_or_else(|| panic!("pages count from 1 for people: {:#?}", follower.seen));
    assert!(
        !follower.seen.iter().any(|l| l.contains("FOLLOWER_")),
        "no raw states for people: {:#?}",
        follower.seen
    );
    follower.type_text("q\n");
    assert_eq!(
        follower.wait_exit(DEADLINE),
        Some(0),
        "{:#?}",
        follower.seen
    );
    host.wait_line(DEADLINE, |l| l.contains("left"))
        .unwrap_or_else(|| panic!("the host sees the goodbye at once: {:#?}", host.seen));
    host.type_text("q\n");
    assert_eq!(host.wait_exit(DEADLINE), Some(0), "{:#?}", host.seen);
}

/// A follower downloading the session pack in a 60-column terminal: no line of its output is
/// wider than the terminal (progress bars used to wrap at 80 columns).
#[test]
fn progress_bars_fit_a_narrow_terminal() {
    let dir = scratch("narrow");
    let pack = dir.join("pack");
    std::fs::create_dir_all(&pack).unwrap();
    // A PDF-looking file large enough to show progress.
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.resize(24 * 1024 * 1024, b'x');
    std::fs::write(
        pack.join("a-rather-long-score-name-for-the-whole-choir.pdf"),
        bytes,
    )
    .unwrap();
    let state = dir.join("host");
    let mut host = Terminal::spawn(
        &[
            "host",
            "--loopback",
            "--state-dir",
            state.to_str().unwrap(),
            "--pack",
            pack.to_str().unwrap(),
        ],
        60,
        24,
        &dir,
    );
    let command = host
        .wait_line(DEADLINE, |l| {
            l.contains("lansync join") && l.contains("lansync://")
        })
        .expect("a join command");
    let link = command
        .split('\'')
        .find(|p| p.starts_with("lansync://"))
        .expect("the link, quoted")
        .to_string();
    let follower_state = dir.join("follower");
    let mut follower = Terminal::spawn(
        &[
            "join",
            "--loopback",
            "--state-dir",
            follower_state.to_str().unwrap(),
            &link,
        ],
        60,
        24,
        &dir,
    );
    follower
        .wait_line(DEADLINE, |l| {
            l.contains("verified") || l.contains("Verified")
        })
        .unwrap_or_else(|| panic!("the pack arrives: {:#?}", follower.seen));
    assert!(
        follower.seen.iter().any(|l| l.contains('%')),
        "progress was shown: {:#?}",
        follower.seen
    );
    let wrapped = terminal::wrapped_bars(&follower.seen, 60);
    assert!(
        wrapped.is_empty(),
        "bars that wrapped at 60 columns: {wrapped:#?}"
    );
    follower.type_text("q\n");
    let _ = follower.wait_exit(DEADLINE);
    host.type_text("q\n");
    let _ = host.wait_exit(DEADLINE);
}

/// `send` a missing file: one sentence and exit 1 before any invite is printed (it used to print
/// an invite and fail only after the whole code exchange).
#[test]
fn sending_a_missing_file_fails_before_any_invite() {
    let dir = scratch("missing");
    let state = dir.join("state");
    let mut send = Terminal::spawn(
        &[
            "send",
            "missing.pdf",
            "--loopback",
            "--state-dir",
            state.to_str().unwrap(),
        ],
        80,
        24,
        &dir,
    );
    assert_eq!(send.wait_exit(DEADLINE), Some(1), "{:#?}", send.seen);
    assert!(
        !send
            .seen
            .iter()
            .any(|l| l.contains("LS.") || l.contains("LS:")),
        "no invite for files that cannot be sent: {:#?}",
        send.seen
    );
    assert!(
        send.seen.iter().any(|l| l.contains("missing.pdf")),
        "the sentence names the file: {:#?}",
        send.seen
    );
}

/// `send` in one terminal, the printed `lansync receive LS.…` pasted as it is into another: the
/// file arrives byte-identical and both programs end by themselves, their terminals left open
/// (they used to wait for Enter).
#[test]
fn send_and_receive_end_by_themselves_in_open_terminals() {
    let dir = scratch("send");
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.resize(8 * 1024 * 1024, b'y');
    std::fs::write(dir.join("score.pdf"), &bytes).unwrap();
    let (sender_state, receiver_state, inbox) = (dir.join("s"), dir.join("r"), dir.join("inbox"));
    std::fs::create_dir_all(&inbox).unwrap();
    let mut send = Terminal::spawn(
        &[
            "send",
            "score.pdf",
            "--loopback",
            "--state-dir",
            sender_state.to_str().unwrap(),
        ],
        80,
        24,
        &dir,
    );
    let command = send
        .wait_line(DEADLINE, |l| l.contains("lansync receive --loopback LS."))
        .unwrap_or_else(|| panic!("a receive command: {:#?}", send.seen));
    let printed = &command[command.find("lansync receive").unwrap()..];
    let printed = format!(
        "{printed} --dir '{}' --state-dir '{}'",
        inbox.display(),
        receiver_state.display()
    );
    let mut receive = paste(&printed, 80, &dir);
    let answer = receive
        .wait_line(DEADLINE, |l| l.trim_start().starts_with("LS."))
        .unwrap_or_else(|| panic!("an answer code: {:#?}", receive.seen));
    send.type_text(&format!("{}\n", answer.trim()));
    assert_eq!(receive.wait_exit(DEADLINE), Some(0), "{:#?}", receive.seen);
    assert_eq!(send.wait_exit(DEADLINE), Some(0), "{:#?}", send.seen);
    assert!(std::fs::read(inbox.join("score.pdf")).unwrap() == bytes);
}
