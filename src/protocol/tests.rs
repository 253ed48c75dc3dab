use super::*;
use proptest::prelude::*;

fn env(msg: Message) -> Envelope {
    Envelope {
        session_id: "s1".into(),
        sender_id: "dev-a".into(),
        ts: 1_735_689_600_000,
        seq: 7,
        msg,
    }
}

fn page(song: &str, epoch: u64, rev: u64, index: u32) -> PageState {
    PageState {
        song_id: Some(song.into()),
        song_epoch: epoch,
        page_revision: rev,
        page_index: index,
        at: None,
    }
}

fn playback() -> Playback {
    Playback {
        media_id: "clip-1".into(),
        revision: 3,
        running: true,
        position_us: 2_000_000,
        anchor_us: 1_735_689_600_000_000,
        rate: Rate::new(1.5),
        direction: Direction::Backward,
        loop_mode: LoopMode::Loop,
        in_us: 1_000_000,
        out_us: Some(9_000_000),
        phase: "pose 2".into(),
    }
}

fn key_entry(key: &str, value: serde_json::Value) -> KeyEntry {
    KeyEntry {
        key: key.into(),
        value,
        policy: KeyPolicy::Lww,
        stamp: Stamp {
            ts: 5,
            sender_id: "dev-a".into(),
        },
    }
}

fn decode_payload(kind: &str, payload: &str) -> Result<Message, DecodeError> {
    let m = format!(
        r#"{{"v":1,"session_id":"s","sender_id":"a","type":"{kind}","ts":1,"seq":1,"payload":{payload}}}"#
    );
    Envelope::decode(m.as_bytes()).map(|e| e.msg)
}

#[test]
fn playback_numbers_are_clamped_into_range() {
    let Message::Playback(p) = decode_payload(
        "PLAYBACK",
        r#"{"media_id":"m","rate":1000,"in_us":5,"out_us":2,"position_us":99999999999999999,"phase":"a\u0007b"}"#,
    )
    .unwrap() else {
        panic!("not playback")
    };
    assert_eq!(p.rate.get(), MAX_RATE);
    assert_eq!((p.in_us, p.out_us, p.position_us), (5, Some(5), 5));
    assert_eq!(p.phase, "ab");
    for (rate, want) in [("-3", MIN_RATE), ("0", MIN_RATE), ("0.5", 0.5)] {
        let Message::PlaybackRequest(PlaybackOp::SetRate { rate }) = decode_payload(
            "PLAYBACK_REQUEST",
            &format!(r#"{{"op":"set_rate","rate":{rate}}}"#),
        )
        .unwrap() else {
            panic!("not a rate")
        };
        assert_eq!(rate.get(), want);
    }
    let Message::PlaybackRequest(PlaybackOp::Seek { position_us }) = decode_payload(
        "PLAYBACK_REQUEST",
        r#"{"op":"seek","position_us":18446744073709551615}"#,
    )
    .unwrap() else {
        panic!("not a seek")
    };
    assert_eq!(position_us, MAX_POSITION_US);
}

#[test]
fn bad_playback_and_key_payloads_are_rejected() {
    for (kind, payload) in [
        ("PLAYBACK", r#"{"media_id":"a\u0001"}"#),
        ("PLAYBACK", r#"{"rate":"fast"}"#),
        ("PLAYBACK_REQUEST", r#"{"op":"explode"}"#),
        ("PLAYBACK_REQUEST", r#"{"op":"seek","position_us":-1}"#),
        ("CONTROL", r#"{"mode":"anarchy"}"#),
        ("CONTROL", r#"{"editor":"has space"}"#),
        (
            "KEY_SET",
            r#"{"key":"nogroup","value":1,"stamp":{"ts":1,"sender_id":"a"}}"#,
        ),
        (
            "KEY_SET",
            r#"{"key":".x","value":1,"stamp":{"ts":1,"sender_id":"a"}}"#,
        ),
        (
            "KEY_SET",
            r#"{"key":"view.zoom","value":"big","stamp":{"ts":1,"sender_id":"a"}}"#,
        ),
        (
            "KEY_SET",
            r#"{"key":"a.b","value":1,"stamp":{"ts":1,"sender_id":""}}"#,
        ),
    ] {
        assert!(decode_payload(kind, payload).is_err(), "{kind} {payload}");
    }
    let big = format!(
        r#"{{"key":"a.b","value":"{}","stamp":{{"ts":1,"sender_id":"a"}}}}"#,
        "x".repeat(MAX_KEY_VALUE)
    );
    assert!(matches!(
        decode_payload("KEY_SET", &big),
        Err(DecodeError::Invalid { field: "value", .. })
    ));
}

#[test]
fn well_known_view_keys_are_clamped() {
    let Message::KeySet(k) = decode_payload(
        "KEY_SET",
        r#"{"key":"view.zoom","value":1e300,"stamp":{"ts":1,"sender_id":"a"},"future":1}"#,
    )
    .unwrap() else {
        panic!("not a key")
    };
    assert_eq!(k.value.as_f64(), Some(ZOOM_RANGE.1));
    assert_eq!(k.policy, KeyPolicy::Lww);
    let Message::KeySet(k) = decode_payload(
        "KEY_SET",
        r#"{"key":"view.pan_x","value":-1e12,"stamp":{"ts":1,"sender_id":"a"}}"#,
    )
    .unwrap() else {
        panic!("not a key")
    };
    assert_eq!(k.value.as_f64(), Some(PAN_RANGE.0));
}

#[test]
fn envelope_has_the_seed_field_names() {
    let text = env(Message::SetPage(page("ave", 2, 5, 3)))
        .encode()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["v"], 1);
    assert_eq!(v["session_id"], "s1");
    assert_eq!(v["sender_id"], "dev-a");
    assert_eq!(v["type"], "SET_PAGE");
    assert_eq!(v["ts"], 1_735_689_600_000u64);
    assert_eq!(v["seq"], 7);
    assert_eq!(v["payload"]["page_index"], 3);
    assert_eq!(v["payload"]["song_epoch"], 2);
}

#[test]
fn every_catalog_type_round_trips() {
    let snapshot = ChoirSnapshot {
        session_name: "Choir".into(),
        page: page("ave", 1, 0, 0),
        stream: None,
        participants: vec![Participant {
            id: "m".into(),
            name: "Master".into(),
            role: Role::Master,
            follow_mode: FollowMode::Follow,
            status: PresenceStatus::Connected,
        }],
        files: SessionFiles::default(),
        playback: Some(Box::new(playback())),
        control: Control {
            mode: ControlMode::SharedPause,
            editor: Some("dev-b".into()),
            revision: 2,
        },
        keys: vec![key_entry("view.zoom", serde_json::json!(1.5))],
    };
    let msgs = vec![
        Message::Hello(Hello {
            mode: Mode::ChoirFollower,
            device_name: "Tab".into(),
            capabilities: vec!["stream".into()],
        }),
        Message::JoinRequest(JoinRequest {
            token: Some("tok".into()),
            session_code: None,
            password: None,
            member_secret: Some("0123456789abcdef0123456789abcdef".into()),
            device_name: "Tab".into(),
            follow_mode: FollowMode::Free,
        }),
        Message::JoinAccept(JoinAccept {
            member_secret: Some("0123456789abcdef0123456789abcdef".into()),
            token: None,
            session_code: "ABCD-EFGH".into(),
            snapshot: snapshot.clone(),
        }),
        Message::JoinReject(JoinReject {
            reason: RejectReason::SessionFull,
        }),
        Message::LeaveSession(Empty {}),
        Message::SessionEnd(SessionEnd::default()),
        Message::StateSnapshot(Snapshot::Choir(snapshot)),
        Message::StateSnapshot(Snapshot::Solo(SoloSnapshot::default())),
        Message::SetSong(page("b", 2, 0, 0)),
        Message::SetPage(page("b", 2, 1, 1)),
        Message::SetLayoutParity(Layout {
            leader_device_id: "dev-a".into(),
            parity: Parity::Even,
        }),
        Message::PairBond(PairBond {
            half: Some("000102030405060708090a0b0c0d0e0f".into()),
            endpoints: vec!["192.168.1.5:47000".into(), "[fd00::5]:47000".into()],
        }),
        Message::PairBond(PairBond::default()),
        Message::SetFollowMode(FollowModeMsg {
            mode: FollowMode::Free,
        }),
        Message::StreamPrepare(StreamInfo {
            stream_id: "st1".into(),
            song_epoch: 2,
            name: "score.pdf".into(),
            mime: "application/pdf".into(),
            size: 10,
            sha256: "a".repeat(64),
        }),
        Message::StreamClear(StreamClear::default()),
        Message::Ping(Ping { id: 1, t0: 5 }),
        Message::Pong(Pong {
            id: 1,
            t0: 5,
            t1: 6,
            t2: 7,
        }),
        Message::Presence(Presence {
            count: 1,
            complete: false,
            participants: vec![],
        }),
        Message::TransferOffer(TransferOffer {
            transfer: 1,
            manifest: super::Manifest {
                schema_version: 1,
                kind: super::ManifestKind::Pack,
                files: vec![],
                updated_at: 1,
                uploaded_by: "dev-a".into(),
            },
        }),
        Message::TransferRequest(TransferRequest {
            transfer: 1,
            hash: "0".repeat(64),
            want: vec![FileWant { file: 0, from: 0 }],
        }),
        Message::TransferDone(TransferDone {
            transfer: 1,
            hash: "0".repeat(64),
        }),
        Message::Playback(playback()),
        Message::PlaybackRequest(PlaybackOp::Seek {
            position_us: 5_000_000,
        }),
        Message::PlaybackRequest(PlaybackOp::Pause),
        Message::Control(Control::default()),
        Message::KeySet(key_entry("mode.tool", serde_json::json!({"pen": [1, 2]}))),
        Message::TransferAbort(TransferAbort {
            transfer: 1,
            code: "hash-mismatch".into(),
            file: Some(0),
            message: String::new(),
        }),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for m in msgs {
        seen.insert(m.type_name());
        let e = env(m);
        let text = e.encode().unwrap();
        assert_eq!(Envelope::decode(text.as_bytes()).unwrap(), e, "{text}");
    }
    assert_eq!(
        seen.len(),
        MESSAGE_TYPES.len(),
        "a catalog type is untested"
    );
}

#[test]
fn unknown_type_and_unknown_fields_are_ignored() {
    let unknown =
        br#"{"v":1,"session_id":"","sender_id":"a","type":"FUTURE","ts":1,"seq":1,"payload":{}}"#;
    assert_eq!(
        Envelope::decode(unknown),
        Err(DecodeError::UnknownType("FUTURE".into()))
    );
    let extra =
        br#"{"v":1,"session_id":"s","sender_id":"a","type":"SET_PAGE","ts":1,"seq":1,"new":true,
        "payload":{"page_index":4,"colour":"red"}}"#;
    let e = Envelope::decode(extra).unwrap();
    assert_eq!(
        e.msg,
        Message::SetPage(PageState {
            page_index: 4,
            ..Default::default()
        })
    );
}

#[test]
fn missing_payload_means_empty_payload() {
    let m = br#"{"v":1,"session_id":"s","sender_id":"a","type":"LEAVE_SESSION","ts":1,"seq":1}"#;
    assert_eq!(
        Envelope::decode(m).unwrap().msg,
        Message::LeaveSession(Empty {})
    );
}

#[test]
fn wrong_version_is_reported_before_anything_else() {
    let m = br#"{"v":2,"whatever":"new layout"}"#;
    assert_eq!(
        Envelope::decode(m),
        Err(DecodeError::VersionMismatch { got: 2 })
    );
}

#[test]
fn oversize_is_rejected_unread() {
    let big = vec![b' '; MAX_CONTROL_MESSAGE + 1];
    assert!(matches!(
        Envelope::decode(&big),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn encoder_refuses_oversize() {
    let many = Presence {
        count: 0,
        complete: true,
        participants: vec![
            Participant {
                id: "x".repeat(64),
                name: "n".repeat(2000),
                role: Role::Follower,
                follow_mode: FollowMode::Follow,
                status: PresenceStatus::Connected,
            };
            100
        ],
    };
    assert!(matches!(
        env(Message::Presence(many)).encode(),
        Err(EncodeError::TooLarge(_))
    ));
}

#[test]
fn malformed_identifiers_are_rejected() {
    let bad_sender =
        br#"{"v":1,"session_id":"s","sender_id":"a b","type":"LEAVE_SESSION","ts":1,"seq":1}"#;
    assert!(matches!(
        Envelope::decode(bad_sender),
        Err(DecodeError::Invalid {
            field: "sender_id",
            ..
        })
    ));
    let empty_sender =
        br#"{"v":1,"session_id":"s","sender_id":"","type":"LEAVE_SESSION","ts":1,"seq":1}"#;
    assert!(Envelope::decode(empty_sender).is_err());
    let long = format!(
        r#"{{"v":1,"session_id":"{}","sender_id":"a","type":"LEAVE_SESSION","ts":1,"seq":1}}"#,
        "s".repeat(65)
    );
    assert!(Envelope::decode(long.as_bytes()).is_err());
}

#[test]
fn page_out_of_range_is_rejected() {
    let m = br#"{"v":1,"session_id":"s","sender_id":"a","type":"SET_PAGE","ts":1,"seq":1,"payload":{"page_index":100000}}"#;
    assert_eq!(
        Envelope::decode(m),
        Err(DecodeError::Invalid {
            field: "page_index",
            reason: "above 99999"
        })
    );
    let neg = br#"{"v":1,"session_id":"s","sender_id":"a","type":"SET_PAGE","ts":1,"seq":1,"payload":{"page_index":-1}}"#;
    assert!(matches!(
        Envelope::decode(neg),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn display_names_are_clamped_not_rejected() {
    let name = format!("{}\\u0007bell", "é".repeat(40));
    let m = format!(
        r#"{{"v":1,"session_id":"","sender_id":"a","type":"HELLO","ts":1,"seq":1,"payload":{{"mode":"choir_follower","device_name":"{name}"}}}}"#
    );
    let Message::Hello(h) = Envelope::decode(m.as_bytes()).unwrap().msg else {
        panic!("not a hello")
    };
    assert!(h.device_name.len() <= MAX_NAME_LEN);
    assert!(!h.device_name.contains('\u{7}'));
    assert!(h.device_name.starts_with("éé"));
}

#[test]
fn unknown_reject_reason_is_kept_as_unknown() {
    let m = br#"{"v":1,"session_id":"s","sender_id":"a","type":"JOIN_REJECT","ts":1,"seq":1,"payload":{"reason":"banned"}}"#;
    assert_eq!(
        Envelope::decode(m).unwrap().msg,
        Message::JoinReject(JoinReject {
            reason: RejectReason::Unknown
        })
    );
}

#[test]
fn device_id_taken_has_its_wire_name() {
    let Message::JoinReject(r) =
        decode_payload("JOIN_REJECT", r#"{"reason":"device_id_taken"}"#).unwrap()
    else {
        panic!("not a JOIN_REJECT")
    };
    assert_eq!(r.reason, RejectReason::DeviceIdTaken);
    assert_eq!(r.reason.code(), "device-id-taken");
}

#[test]
fn join_accept_carries_a_member_secret_and_still_reads_an_old_masters_token() {
    let snapshot = r#"{"kind":"choir","page":{"page_index":0}}"#;
    let old = decode_payload(
        "JOIN_ACCEPT",
        &format!(r#"{{"token":"00112233445566778899aabbccddeeff","snapshot":{snapshot}}}"#),
    );
    let Ok(Message::JoinAccept(old)) = old else {
        panic!("an old master's JOIN_ACCEPT must decode: {old:?}")
    };
    assert_eq!(
        old.token.as_deref(),
        Some("00112233445566778899aabbccddeeff")
    );
    assert_eq!(old.member_secret, None);
    let new = JoinAccept {
        member_secret: Some("0123456789abcdef0123456789abcdef".into()),
        token: None,
        session_code: String::new(),
        snapshot: old.snapshot,
    };
    let text = env(Message::JoinAccept(new)).encode().unwrap();
    assert!(text.contains(r#""member_secret":"0123456789abcdef0123456789abcdef""#));
    assert!(
        !text.contains("token"),
        "a JOIN_ACCEPT never carries the token: {text}"
    );
    let empty = format!(r#"{{"member_secret":"","snapshot":{snapshot}}}"#);
    assert!(decode_payload("JOIN_ACCEPT", &empty).is_err());
}

#[test]
fn pong_times_must_be_ordered() {
    let m = br#"{"v":1,"session_id":"s","sender_id":"a","type":"PONG","ts":1,"seq":1,"payload":{"id":1,"t0":1,"t1":9,"t2":3}}"#;
    assert!(matches!(
        Envelope::decode(m),
        Err(DecodeError::Invalid { field: "t2", .. })
    ));
}

#[test]
fn stream_hash_must_be_hex() {
    let m = br#"{"v":1,"session_id":"s","sender_id":"a","type":"STREAM_PREPARE","ts":1,"seq":1,"payload":{"stream_id":"x","song_epoch":1,"sha256":"zz"}}"#;
    assert!(matches!(
        Envelope::decode(m),
        Err(DecodeError::Invalid {
            field: "sha256",
            ..
        })
    ));
}

mod props;
