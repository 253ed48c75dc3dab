//! Property tests of the codec: any message round-trips, no input panics the decoder.

use super::*;

fn arb_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.:-]{1,64}"
}

fn arb_page() -> impl Strategy<Value = PageState> {
    (
        proptest::option::of("[^\\p{Cc}]{0,40}"),
        any::<u64>(),
        any::<u64>(),
        0..=MAX_PAGE,
        proptest::option::of(any::<u64>()),
    )
        .prop_map(
            |(song_id, song_epoch, page_revision, page_index, at)| PageState {
                song_id,
                song_epoch,
                page_revision,
                page_index,
                at,
            },
        )
}

fn arb_key() -> impl Strategy<Value = String> {
    "[a-z]{1,10}\\.[a-z_]{1,20}"
}

fn arb_playback() -> impl Strategy<Value = Playback> {
    (
        "[a-z0-9-]{0,20}",
        any::<u64>(),
        any::<bool>(),
        (
            0..=MAX_POSITION_US,
            0..=MAX_POSITION_US,
            0..=MAX_POSITION_US,
        ),
        any::<u64>(),
        1u32..=256,
        any::<bool>(),
        "[a-z ]{0,20}",
    )
        .prop_map(
            |(media_id, revision, running, (a, b, c), anchor_us, rate16, back, phase)| {
                let mut p = Playback {
                    media_id,
                    revision,
                    running,
                    position_us: b,
                    anchor_us,
                    rate: Rate::new(f64::from(rate16) / 16.0),
                    direction: if back {
                        Direction::Backward
                    } else {
                        Direction::Forward
                    },
                    loop_mode: if running {
                        LoopMode::Loop
                    } else {
                        LoopMode::Off
                    },
                    in_us: a.min(c),
                    out_us: Some(a.max(c)),
                    phase,
                };
                p.clamp();
                p
            },
        )
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        arb_page().prop_map(Message::SetPage),
        arb_page().prop_map(Message::SetSong),
        (any::<u64>(), any::<u64>()).prop_map(|(id, t0)| Message::Ping(Ping { id, t0 })),
        arb_playback().prop_map(Message::Playback),
        (
            arb_key(),
            any::<i64>(),
            any::<u64>(),
            arb_id(),
            any::<bool>()
        )
            .prop_map(|(key, v, ts, sender_id, host)| Message::KeySet(KeyEntry {
                key,
                value: serde_json::json!({ "n": v }),
                policy: if host {
                    KeyPolicy::Host
                } else {
                    KeyPolicy::Lww
                },
                stamp: Stamp { ts, sender_id },
            })),
        (0..=MAX_POSITION_US)
            .prop_map(|position_us| Message::PlaybackRequest(PlaybackOp::Seek { position_us })),
        (arb_id(), any::<bool>()).prop_map(|(leader_device_id, even)| Message::SetLayoutParity(
            Layout {
                leader_device_id,
                parity: if even { Parity::Even } else { Parity::Odd },
            }
        )),
        (
            proptest::option::of("[0-9a-fA-F]{32}"),
            proptest::collection::vec(any::<(bool, [u8; 16], u16)>(), 0..=MAX_BOND_ENDPOINTS),
        )
            .prop_map(|(half, addrs)| Message::PairBond(PairBond {
                half,
                endpoints: addrs
                    .into_iter()
                    .map(|(v4, ip, port)| {
                        let ip: std::net::IpAddr = if v4 {
                            [ip[0], ip[1], ip[2], ip[3]].into()
                        } else {
                            ip.into()
                        };
                        std::net::SocketAddr::new(ip, port).to_string()
                    })
                    .collect(),
            })),
        ("[^\\p{Cc}]{0,20}", proptest::option::of("[ -~]{0,128}")).prop_map(|(name, token)| {
            let mut device_name: String = name;
            clamp_name(&mut device_name);
            Message::JoinRequest(JoinRequest {
                token,
                session_code: None,
                password: None,
                member_secret: None,
                device_name,
                follow_mode: FollowMode::Follow,
            })
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_trip(session in "[A-Za-z0-9]{0,64}", sender in arb_id(), ts in any::<u64>(), seq in any::<u64>(), msg in arb_message()) {
        let e = Envelope { session_id: session, sender_id: sender, ts, seq, msg };
        let text = e.encode().unwrap();
        prop_assert_eq!(Envelope::decode(text.as_bytes()).unwrap(), e);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(msg in arb_message(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = env(msg).encode().unwrap().into_bytes();
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let _ = Envelope::decode(&bytes);
    }
}
