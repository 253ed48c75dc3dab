//! The master's join endpoint asks its session machine who may join (PROTOCOL.md §6.2, §9.3),
//! over real sockets on loopback: a member's device id is refused to anyone else at the door,
//! before any link is made, and a member's secret opens it again.

use lansync::node::{follower_dialer, DialError, Host, HostOptions, JoinTarget, Node, NodeOptions};
use lansync::protocol::RejectReason;
use lansync::session::{
    Command, DoorAuth, DoorQuery, DoorSecret, Event, Follower, FollowerConfig, JoinCredentials,
    MasterConfig,
};
use lansync::transport::TransportConfig;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;

const DEADLINE: Duration = Duration::from_secs(30);

fn loopback() -> TransportConfig {
    TransportConfig {
        loopback_only: true,
        ..TransportConfig::default()
    }
}

async fn wait_for(
    events: &mut UnboundedReceiver<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) {
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(e) = events.recv().await {
            if pred(&e) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no {what} within {DEADLINE:?}");
}

/// The session events of a host's stream (its file events are not looked at here).
fn session_events(mut events: lansync::Events) -> UnboundedReceiver<Event> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let lansync::AppEvent::Session(e) = e {
                let _ = tx.send(e);
            }
        }
    });
    rx
}

fn by_token(token: &str) -> JoinCredentials {
    JoinCredentials {
        token: Some(token.into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_with_a_members_device_id_is_refused_at_the_door() {
    let mut host = Host::start(HostOptions {
        master: MasterConfig::new("master"),
        ..HostOptions::loopback()
    })
    .await
    .unwrap();
    let mut host_events = session_events(host.events());
    let token = host.record().token.clone();
    let target = JoinTarget {
        addr: host.local_addr(),
        fingerprint: Some(host.fingerprint().to_string()),
    };

    // The victim joins with the QR token.
    let dialer = follower_dialer(target.clone(), loopback(), "victim".into(), "Victim".into());
    let mut cfg = FollowerConfig::new("victim");
    cfg.device_name = "Victim".into();
    let (victim, mut victim_events) = Node::spawn(
        Follower::new(cfg, 1),
        NodeOptions {
            dialer: Some(dialer),
            ..Default::default()
        },
    );
    victim.command(Command::Join(by_token(&token))).unwrap();
    wait_for(&mut victim_events, "join", |e| {
        matches!(e, Event::Joined { .. })
    })
    .await;
    wait_for(
        &mut host_events,
        "victim listed",
        |e| matches!(e, Event::ParticipantJoined(p) if p.id == "victim" && p.name == "Victim"),
    )
    .await;

    // The door, asked through the node, holds the victim's id for its own secret.
    let ask = |auth| DoorQuery {
        auth,
        session_code: None,
        device_id: "victim".into(),
    };
    let taken = host.node.door(ask(DoorAuth::Token)).await;
    assert_eq!(taken.secret, Some(DoorSecret::Token(token.clone())));
    assert_eq!(taken.verdict, Err(RejectReason::DeviceIdTaken));
    let own = host.node.door(ask(DoorAuth::Member)).await;
    assert!(matches!(own.secret, Some(DoorSecret::Member(ref s)) if s.len() == 32));
    assert_eq!(own.verdict, Ok(()));

    // An impostor with the same token and the victim's id is refused before any link is made.
    let mut impostor = follower_dialer(target, loopback(), "victim".into(), "evil".into());
    let refused = impostor(by_token(&token)).await;
    assert!(
        matches!(
            refused,
            Err(DialError::Refused(RejectReason::DeviceIdTaken))
        ),
        "the impostor was not refused as device_id_taken"
    );
    // A wrong member secret is a wrong proof.
    let mut guesser = follower_dialer(
        JoinTarget {
            addr: host.local_addr(),
            fingerprint: Some(host.fingerprint().to_string()),
        },
        loopback(),
        "victim".into(),
        "evil".into(),
    );
    let guess = JoinCredentials {
        member_secret: Some("0".repeat(32)),
        ..Default::default()
    };
    assert!(
        matches!(
            guesser(guess).await,
            Err(DialError::Refused(RejectReason::InvalidToken))
        ),
        "a wrong member secret was not refused as invalid_token"
    );
    // The victim was never displaced.
    while let Ok(e) = host_events.try_recv() {
        assert!(
            !matches!(&e, Event::ParticipantLeft(p) if p.id == "victim"),
            "the victim was displaced: {e:?}"
        );
    }
    drop(victim);
    host.shutdown().await;
}
