//! The `Join` facade over real sockets on loopback, against an in-process `Host`: it returns
//! once joined with the join's own events first on its stream, and a join that cannot succeed
//! is a typed `Error` at once.
#![cfg(feature = "native")]

use lansync::protocol::RejectReason;
use lansync::session::Event;
use lansync::{AppEvent, Error, Host, HostOptions, Join, JoinHow, JoinOptions};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

async fn host() -> (Host, JoinHow) {
    let host = Host::start(HostOptions::loopback()).await.expect("host");
    let link = host.join_link([127, 0, 0, 1].into());
    (host, JoinHow::Link(link))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_by_link_returns_joined_and_follows_the_page() {
    let (host, how) = host().await;
    let mut join = tokio::time::timeout(DEADLINE, Join::start(how, JoinOptions::loopback()))
        .await
        .expect("in time")
        .expect("joined");
    let mut events = join.events();
    // The Joined that ended `start` is on the stream, not lost.
    let mut joined = false;
    host.set_page(5).unwrap();
    let page = tokio::time::timeout(DEADLINE, async {
        while let Some(e) = events.recv().await {
            match e {
                AppEvent::Session(Event::Joined { rejoin, .. }) => joined = !rejoin,
                AppEvent::Session(Event::Page { page: 5, .. }) => return true,
                _ => {}
            }
        }
        false
    })
    .await;
    assert_eq!(page, Ok(true), "no page 5");
    assert!(joined, "the first join's Joined event was not delivered");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ended_session_refuses_at_once() {
    let (host, how) = host().await;
    host.end().unwrap();
    let t = Instant::now();
    let result = Join::start(how, JoinOptions::loopback()).await;
    assert!(
        matches!(result, Err(Error::Rejected(RejectReason::SessionEnded))),
        "{:?}",
        result.err()
    );
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_master_that_does_not_answer_is_unreachable_after_the_bound() {
    let (host, how) = host().await;
    let addr = host.local_addr().to_string();
    host.shutdown().await;
    let opts = JoinOptions {
        first_join_timeout: Duration::from_secs(2),
        ..JoinOptions::loopback()
    };
    let t = Instant::now();
    match Join::start(how, opts).await {
        Err(e @ Error::Unreachable { .. }) => {
            assert!(e.to_string().contains(&addr), "{e}");
            assert_eq!(e.code(), "network-unavailable");
        }
        other => panic!("{:?}", other.err()),
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejoin_without_a_stored_session_says_so() {
    let dir = std::env::temp_dir().join(format!("lansync-joinlib-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = JoinOptions {
        state_dir: Some(dir.clone()),
        ..JoinOptions::loopback()
    };
    let result = Join::start(JoinHow::Rejoin, opts).await;
    assert!(
        matches!(&result, Err(Error::NothingToRejoin { dir: d }) if *d == dir),
        "{:?}",
        result.err()
    );
    assert!(!Join::has_stored_session(&dir));
}

/// The same QR link joined again from the same state directory (a singer scans it twice, or
/// the app restarts and is given the link again) rejoins as the member it already is, instead of
/// being refused because a member has this device id.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_link_joined_again_rejoins_as_the_member() {
    let (host, how) = host().await;
    let dir = std::env::temp_dir().join(format!("lansync-joinagain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let opts = || JoinOptions {
        state_dir: Some(dir.clone()),
        ..JoinOptions::loopback()
    };
    let first = tokio::time::timeout(DEADLINE, Join::start(how.clone(), opts()))
        .await
        .expect("in time")
        .expect("joined");
    drop(first); // the app goes away without leaving
    let mut again = tokio::time::timeout(DEADLINE, Join::start(how, opts()))
        .await
        .expect("in time")
        .expect("joined again, not refused");
    let mut events = again.events();
    let rejoined = tokio::time::timeout(DEADLINE, async {
        while let Some(e) = events.recv().await {
            if let AppEvent::Session(Event::Joined { rejoin, .. }) = e {
                return rejoin;
            }
        }
        false
    })
    .await;
    assert_eq!(rejoined, Ok(true), "joined as the same member");
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host that shuts down (its person quits) closes every follower's link so that followers
/// notice at once, not after their heartbeat gives up (~10 s), and start rejoining.
#[tokio::test(flavor = "multi_thread")]
async fn followers_notice_a_host_that_quits_at_once() {
    use lansync::session::{FollowerState, RoleState};
    let (host, how) = host().await;
    let mut join = tokio::time::timeout(DEADLINE, Join::start(how, JoinOptions::loopback()))
        .await
        .expect("in time")
        .expect("joined");
    let mut events = join.events();
    let t = Instant::now();
    host.shutdown().await;
    let noticed = tokio::time::timeout(DEADLINE, async {
        while let Some(e) = events.recv().await {
            if let AppEvent::Session(Event::State {
                state: RoleState::Follower(FollowerState::DisconnectedLocal),
                ..
            }) = e
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(noticed, Ok(true));
    // Far below the heartbeat's 10 s: the link said it closed.
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}
