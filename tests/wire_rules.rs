//! What lansync puts on the wire and accepts from it, as PROTOCOL.md tells a third party: each
//! test drives one pure machine by hand with envelopes written as raw JSON, the way a peer
//! written from the document alone would send them, and reads what comes back as JSON.

use lansync::protocol::{Envelope, Message, Parity};
use lansync::session::{
    Command, Input, Machine, Master, MasterConfig, Output, Solo, SoloConfig, SoloState, Time,
};
use serde_json::{json, Value};

const T0: u64 = 1_735_689_600_000;

fn at(ms: u64) -> Time {
    Time::from_millis(T0 + ms)
}

/// Everything `m` sent since the last call, as JSON.
fn sent(m: &mut impl Machine) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(o) = m.poll_output() {
        if let Output::Send(_, text) = o {
            out.push(serde_json::from_str(&text).expect("lansync sends JSON"));
        }
    }
    out
}

fn of_type<'a>(msgs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    msgs.iter().filter(|m| m["type"] == kind).collect()
}

/// One envelope as a third-party peer writes it.
fn envelope(sender: &str, kind: &str, ts: u64, seq: u64, payload: Value) -> String {
    json!({"v":1,"session_id":"3f9c2a7be1d04c55","sender_id":sender,"type":kind,
           "ts":ts,"seq":seq,"payload":payload})
    .to_string()
}

fn tablet(id: &str) -> Solo {
    let mut c = SoloConfig::new(id);
    c.pair_id = "3f9c2a7be1d04c55".into();
    let mut solo = Solo::new(c, 1);
    solo.handle(at(0), Input::LinkUp(1));
    solo
}

fn receive(solo: &mut Solo, now: Time, text: &str) {
    solo.handle(now, Input::Received(1, text.as_bytes()));
}

fn page(index: u32) -> Value {
    json!({"song_id":null,"page_index":index})
}

#[test]
fn join_accept_carries_its_snapshot_tagged_choir_like_a_state_snapshot() {
    let mut master = Master::new(MasterConfig::new("master"), at(0), [7; 32]);
    let token = master.record().token.clone();
    master.handle(at(0), Input::LinkUp(1));
    sent(&mut master);
    let request = envelope(
        "alto-2",
        "JOIN_REQUEST",
        T0,
        1,
        json!({"token": token, "device_name": "Alto 2"}),
    );
    master.handle(at(10), Input::Received(1, request.as_bytes()));
    let msgs = sent(&mut master);
    let accept = of_type(&msgs, "JOIN_ACCEPT");
    assert_eq!(accept.len(), 1, "{msgs:?}");
    let snapshot = &accept[0]["payload"]["snapshot"];
    assert_eq!(snapshot["kind"], "choir", "{snapshot}");
    assert_eq!(snapshot["page"]["page_index"], 0);
    let ids: Vec<&str> = snapshot["participants"]
        .as_array()
        .expect("the whole participant list")
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["master", "alto-2"]);
    // The periodic snapshot's choir object is the same shape: one reader takes both.
    let text = accept[0].to_string();
    let Ok(Envelope {
        msg: Message::JoinAccept(a),
        ..
    }) = Envelope::decode(text.as_bytes())
    else {
        panic!("lansync reads its own JOIN_ACCEPT: {text}")
    };
    assert_eq!(a.snapshot.participants.len(), 2);
}

#[test]
fn a_join_accept_of_an_earlier_master_without_kind_is_still_read() {
    let text = envelope(
        "master",
        "JOIN_ACCEPT",
        T0,
        3,
        json!({"member_secret":"0f1e2d3c4b5a69788796a5b4c3d2e1f0",
               "snapshot":{"page":{"song_id":"ave","song_epoch":2,"page_index":4}}}),
    );
    let Ok(Envelope {
        msg: Message::JoinAccept(a),
        ..
    }) = Envelope::decode(text.as_bytes())
    else {
        panic!("not read: {text}")
    };
    assert_eq!(
        (a.snapshot.page.song_epoch, a.snapshot.page.page_index),
        (2, 4)
    );
}

#[test]
fn a_fresh_solo_device_stamps_its_unchanged_state_with_its_own_id_at_ts_0() {
    let mut solo = tablet("tab-a");
    let msgs = sent(&mut solo);
    let snap = of_type(&msgs, "STATE_SNAPSHOT");
    assert_eq!(snap.len(), 1, "{msgs:?}");
    let p = &snap[0]["payload"];
    assert_eq!(p["kind"], "solo");
    for stamp in ["last_page_change", "last_layout_change"] {
        assert_eq!(
            p[stamp],
            json!({"ts":0,"sender_id":"tab-a"}),
            "{stamp}: {p}"
        );
    }
    // The unset layout leader goes out empty: on the wire, "the higher id of the pair leads".
    assert_eq!(p["layout"], json!({"leader_device_id":"","parity":"odd"}));
}

#[test]
fn a_snapshot_of_an_earlier_release_with_an_empty_stamp_id_is_read_and_orders_lowest() {
    let mut solo = tablet("tab-b");
    sent(&mut solo);
    // An earlier release that turned a page but never set a layout: "" in its layout stamp.
    let snap = json!({"kind":"solo","page":page(4),
                      "last_page_change":{"ts":T0 + 5,"sender_id":"tab-a"},
                      "layout":{"leader_device_id":"tab-a","parity":"even"},
                      "last_layout_change":{"ts":0,"sender_id":""}});
    receive(
        &mut solo,
        at(5),
        &envelope("tab-a", "STATE_SNAPSHOT", T0 + 5, 1, snap),
    );
    assert_eq!(solo.page().page_index, 4, "the snapshot was read");
    // Its never-changed layout does not beat this device's own: "" orders below every id.
    assert_eq!(solo.layout().parity, Parity::Odd);
    assert_eq!(solo.layout().leader_device_id, "tab-b");
    // Nor does an unchanged page stamped "" by such a device.
    let snap = json!({"kind":"solo","page":page(9),
                      "last_page_change":{"ts":0,"sender_id":""},
                      "layout":{"leader_device_id":"","parity":"odd"}});
    receive(
        &mut solo,
        at(6),
        &envelope("tab-a", "STATE_SNAPSHOT", T0 + 6, 2, snap),
    );
    assert_eq!(solo.page().page_index, 4);
}

#[test]
fn a_solo_change_overtaken_on_the_way_is_judged_by_its_stamp_not_its_seq() {
    let mut solo = tablet("tab-b");
    receive(
        &mut solo,
        at(10),
        &envelope("tab-a", "SET_PAGE", T0 + 10, 10, page(2)),
    );
    assert_eq!(solo.page().page_index, 2);
    // Sent later (newer stamp) but numbered lower: a reordering path delivered it second.
    receive(
        &mut solo,
        at(20),
        &envelope("tab-a", "SET_PAGE", T0 + 20, 5, page(7)),
    );
    assert_eq!(solo.page().page_index, 7, "the newer stamp wins");
    let layout = json!({"leader_device_id":"tab-a","parity":"even"});
    receive(
        &mut solo,
        at(30),
        &envelope("tab-a", "SET_LAYOUT_PARITY", T0 + 30, 6, layout),
    );
    assert_eq!(solo.layout().leader_device_id, "tab-a");
    assert_eq!(solo.layout().parity, Parity::Even);
    // An older stamp stays stale whatever its seq.
    receive(
        &mut solo,
        at(40),
        &envelope("tab-a", "SET_PAGE", T0 + 15, 99, page(1)),
    );
    assert_eq!(solo.page().page_index, 7);
    // Messages without a stamp still go by seq: a stale goodbye (seq 99 was seen) is dropped.
    receive(
        &mut solo,
        at(50),
        &envelope("tab-a", "LEAVE_SESSION", T0 + 50, 50, json!({})),
    );
    assert_eq!(solo.state(), SoloState::PairedConnected);
}

#[test]
fn ping_and_pong_are_answered_whatever_their_seq_and_never_make_a_message_stale() {
    let mut solo = tablet("tab-b");
    sent(&mut solo);
    // A PING numbered far ahead, then one numbered behind: both answered.
    for (seq, id) in [(1000, 1), (1, 2)] {
        let ping = envelope("tab-a", "PING", T0, seq, json!({"id":id,"t0":1}));
        receive(&mut solo, at(10), &ping);
        let msgs = sent(&mut solo);
        let pong = of_type(&msgs, "PONG");
        assert_eq!(pong.len(), 1, "PING seq {seq}: {msgs:?}");
        assert_eq!(pong[0]["payload"]["id"], id);
    }
    // The PING's seq 1000 did not raise the bar for the next message.
    let leave = envelope("tab-a", "LEAVE_SESSION", T0 + 20, 2, json!({}));
    receive(&mut solo, at(20), &leave);
    assert_eq!(solo.state(), SoloState::LocalOnly);
}

#[test]
fn set_parity_without_a_leader_names_this_device_on_the_wire_never_an_empty_leader() {
    let mut solo = tablet("tab-a"); // the lower id: "" on the wire would make tab-b lead
    sent(&mut solo);
    solo.handle(
        at(10),
        Input::Command(&Command::SetParity {
            leader: String::new(),
            parity: Parity::Even,
        }),
    );
    let msgs = sent(&mut solo);
    let set = of_type(&msgs, "SET_LAYOUT_PARITY");
    assert_eq!(set.len(), 1, "{msgs:?}");
    assert_eq!(
        set[0]["payload"],
        json!({"leader_device_id":"tab-a","parity":"even"})
    );
}
