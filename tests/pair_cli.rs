//! Two real `lansync` processes pair from codes alone (passed through `--json`), over real WebRTC
//! on loopback, mirror pages both ways, stay in step through a cut (one process frozen with
//! SIGSTOP, so its peer hears nothing), and converge by last-write-wins afterwards.
//!
//! Every wait is for an event, with a generous deadline; nothing sleeps to synchronise. The only
//! deliberate pause is the length of the cut itself.
#![cfg(all(feature = "native", unix))]

mod cli;

use cli::Proc;
use serde_json::{json, Value};
use std::time::Duration;

fn set_page(p: &mut Proc, page: u64) {
    p.send(json!({"cmd": "set_page", "page": page}));
}

#[test]
fn two_processes_pair_from_codes_and_stay_in_step_through_a_cut() {
    let mut a = Proc::spawn(
        "offerer",
        &["pair", "offer", "--json", "--loopback", "--id", "tab-a"],
    );
    let invite = a.wait_for("invite code", |v| v["event"] == "invite");
    let invite = invite["code"].as_str().unwrap().to_string();
    assert!(invite.len() <= 100, "invite code of {} chars", invite.len());

    let b = Proc::spawn(
        "answerer",
        &[
            "pair",
            "answer",
            &invite,
            "--json",
            "--loopback",
            "--id",
            "tab-b",
        ],
    );
    let answer = b.wait_for("answer code", |v| v["event"] == "answer");
    a.send(json!({"cmd": "answer", "code": answer["code"]}));
    let mut b = b;

    let connected = |v: &Value| v["event"] == "link" && v["state"] == "connected";
    a.wait_for("link connected", connected);
    b.wait_for("link connected", connected);

    // Either side turns; the other mirrors.
    set_page(&mut a, 3);
    b.wait_page(3);
    set_page(&mut b, 5);
    a.wait_page(5);

    // Cut: freeze the answerer. The offerer keeps working and turns a page meanwhile.
    b.signal("-STOP");
    set_page(&mut a, 7);
    a.wait_page(7);
    // The length of the cut, not a synchronisation: past ICE's 5 s "disconnected" and the
    // default 10 s heartbeat, so the link must come back rather than merely never notice.
    std::thread::sleep(Duration::from_secs(12));
    b.signal("-CONT");
    b.wait_page(7);

    // Both change while one is frozen: the later change wins on both devices.
    a.signal("-STOP");
    set_page(&mut b, 9);
    b.wait_page(9);
    a.signal("-CONT");
    set_page(&mut a, 11); // made after B's change, so it carries the later stamp
    a.wait_page(11);
    b.wait_page(11);
}

#[test]
fn a_malformed_answer_is_refused_with_its_reason_and_the_offer_stays_valid() {
    let mut a = Proc::spawn("offerer", &["pair", "offer", "--json", "--loopback"]);
    let invite = a.wait_for("invite code", |v| v["event"] == "invite");
    let code = invite["code"].as_str().unwrap().to_string();

    // The invite itself is not an answer.
    a.send(json!({"cmd": "answer", "code": code}));
    a.wait_for("not-an-answer error", |v| {
        v["event"] == "error" && v["code"] == "not-an-answer"
    });
    // A truncated code.
    a.send(json!({"cmd": "answer", "code": &code[..code.len() / 2]}));
    a.wait_for("truncated error", |v| {
        v["event"] == "error" && v["code"] == "truncated-code"
    });
    // One character changed.
    let mut typo: Vec<char> = code.chars().collect();
    let i = typo.len() - 5;
    typo[i] = if typo[i] == 'A' { 'B' } else { 'A' };
    let typo: String = typo.into_iter().collect();
    a.send(json!({"cmd": "answer", "code": typo}));
    a.wait_for("checksum error", |v| {
        v["event"] == "error" && (v["code"] == "bad-checksum" || v["code"] == "invalid-code")
    });

    // After all that, a real answer still pairs.
    let b = Proc::spawn(
        "answerer",
        &["pair", "answer", &code, "--json", "--loopback"],
    );
    let answer = b.wait_for("answer code", |v| v["event"] == "answer");
    a.send(json!({"cmd": "answer", "code": answer["code"]}));
    let connected = |v: &Value| v["event"] == "link" && v["state"] == "connected";
    a.wait_for("link connected", connected);
    b.wait_for("link connected", connected);
}
