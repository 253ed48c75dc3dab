//! The remembered-pair facade on loopback (PROTOCOL.md §6.1): two `Pair`s made from codes with
//! state directories remember each other; the dialing side, stopped without a goodbye (as in a
//! crash) and resumed with no code, is paired again and sees the page its partner turned
//! meanwhile; forgetting deletes the pair; a directory with no pair has nothing to resume.
#![cfg(feature = "native")]

use lansync::session::{Event, RoleState, SoloState};
use lansync::{AppEvent, Error, Events, Pair, PairOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lansync-piresume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn opts(dir: &Path, name: &str) -> PairOptions {
    let mut o = PairOptions::loopback();
    o.state_dir = Some(dir.to_path_buf());
    o.solo.device_name = name.into();
    o
}

async fn wait(events: &mut Events, what: &str, pred: impl Fn(&Event) -> bool) {
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(e) = events.recv().await {
            if let AppEvent::Session(e) = e {
                if pred(&e) {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "no {what} within {DEADLINE:?}");
}

fn paired(e: &Event) -> bool {
    matches!(
        e,
        Event::State {
            state: RoleState::Solo(SoloState::PairedConnected),
            ..
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_pair_finds_its_partner_with_no_code_and_converges() {
    let (dir_a, dir_b) = (scratch("a"), scratch("b"));
    let empty = scratch("empty");
    assert!(matches!(
        Pair::resume(opts(&empty, "A")).await,
        Err(Error::NothingToRejoin { .. })
    ));

    let mut offer = Pair::offer(opts(&dir_a, "Tablet-A")).await.unwrap();
    let answer = Pair::answer(offer.code().text(), opts(&dir_b, "Tablet-B"))
        .await
        .unwrap();
    let answer_code = answer.code().text().to_string();
    let (a, b) = tokio::join!(offer.accept(&answer_code), answer.open());
    let (mut a, mut b) = (a.unwrap(), b.unwrap());
    let (mut ea, mut eb) = (a.events(), b.events());
    let remembered = |e: &Event| matches!(e, Event::PairRemembered { .. });
    wait(&mut ea, "pair remembered (A)", remembered).await;
    wait(&mut eb, "pair remembered (B)", remembered).await;
    assert!(a.remembered() && b.remembered());
    assert!(Pair::has_remembered(&dir_a));
    assert_eq!(
        Pair::remembered_partner(&dir_a).as_deref(),
        Some("Tablet-B")
    );

    // A stops with no goodbye (a crash); B turns a page meanwhile; A resumes with no code.
    a.node.shutdown().await;
    drop((a, ea));
    wait(&mut eb, "B reconnecting", |e| {
        matches!(
            e,
            Event::State {
                state: RoleState::Solo(SoloState::PairedReconnecting),
                ..
            }
        )
    })
    .await;
    b.set_page(4).unwrap();
    let mut a = Pair::resume(opts(&dir_a, "Tablet-A")).await.unwrap();
    let mut ea = a.events();
    wait(&mut ea, "A paired again", paired).await;
    wait(&mut ea, "page 4 on A", |e| {
        matches!(e, Event::Page { page: 4, .. })
    })
    .await;
    wait(&mut eb, "B paired again", paired).await;

    // Forgetting says goodbye and deletes the pair: nothing to resume any more.
    assert!(a.forget().await.unwrap());
    assert!(!Pair::has_remembered(&dir_a));
    assert!(matches!(
        Pair::resume(opts(&dir_a, "Tablet-A")).await,
        Err(Error::NothingToRejoin { .. })
    ));
    b.close().await;
    for d in [dir_a, dir_b, empty] {
        let _ = std::fs::remove_dir_all(d);
    }
}
