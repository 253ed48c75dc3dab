//! What the rehearsal saw: every node's session events and every follower's file events, with
//! when they arrived, and the questions the script's checks ask of them.

use lansync::node::FilesEvent;
use lansync::session::Event;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Who sent an event: the master or follower `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Who {
    Master,
    Follower(usize),
}

/// Every event of every node, with when it arrived.
#[derive(Default)]
pub(super) struct Log {
    pub(super) entries: Mutex<Vec<(Who, Instant, Event)>>,
    changed: Notify,
}

impl Log {
    pub(super) fn collect(
        self: &Arc<Self>,
        who: Who,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    ) {
        let log = self.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                log.entries.lock().unwrap().push((who, Instant::now(), e));
                log.changed.notify_waiters();
            }
        });
    }

    /// Collects the session events of a front-door stream (the demo's files have their own log).
    pub(super) fn collect_app(self: &Arc<Self>, who: Who, mut events: lansync::Events) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let lansync::AppEvent::Session(e) = e {
                    let _ = tx.send(e);
                }
            }
        });
        self.collect(who, rx);
    }

    /// Waits until `done` holds over the log, at most `limit`.
    pub(super) async fn wait(
        &self,
        limit: Duration,
        done: impl Fn(&[(Who, Instant, Event)]) -> bool,
    ) -> bool {
        let end = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if done(&self.entries.lock().unwrap()) {
                return true;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                return done(&self.entries.lock().unwrap());
            }
        }
    }

    pub(super) fn since(&self, t: Instant) -> Vec<(Who, Instant, Event)> {
        let entries = self.entries.lock().unwrap();
        entries
            .iter()
            .filter(|(_, at, _)| *at >= t)
            .cloned()
            .collect()
    }
}

/// Every follower's file events.
#[derive(Default)]
pub(super) struct FileLog {
    entries: Mutex<Vec<(usize, Instant, FilesEvent)>>,
    changed: Notify,
}

impl FileLog {
    pub(super) fn collect(
        self: &Arc<Self>,
        f: usize,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<FilesEvent>,
    ) {
        let log = self.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                log.entries.lock().unwrap().push((f, Instant::now(), e));
                log.changed.notify_waiters();
            }
        });
    }

    /// Waits until every follower in `0..n` has an event matching `pred`; returns whether they
    /// did and when the last one came.
    pub(super) async fn wait_all(
        &self,
        n: usize,
        pred: impl Fn(&FilesEvent) -> bool,
    ) -> Option<Instant> {
        let end = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let notified = self.changed.notified();
            {
                let entries = self.entries.lock().unwrap();
                let last = (0..n)
                    .map(|f| {
                        entries
                            .iter()
                            .find(|(w, _, e)| *w == f && pred(e))
                            .map(|(_, at, _)| *at)
                    })
                    .collect::<Option<Vec<Instant>>>();
                if let Some(times) = last {
                    return times.into_iter().max().or(Some(Instant::now()));
                }
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// The page a follower shows, from its latest Page event.
pub(super) fn shown(entries: &[(Who, Instant, Event)], f: usize) -> Option<(u64, u32)> {
    entries.iter().rev().find_map(|(w, _, e)| match e {
        Event::Page {
            song_epoch, page, ..
        } if *w == Who::Follower(f) => Some((*song_epoch, *page)),
        _ => None,
    })
}

/// The state a node last reported.
pub(super) fn last_state(entries: &[(Who, Instant, Event)], who: Who) -> Option<String> {
    entries.iter().rev().find_map(|(w, _, e)| match e {
        Event::State { state, .. } if *w == who => Some(state.name().to_string()),
        _ => None,
    })
}

/// How many of the followers `0..n` joined.
pub(super) fn count_joined(log: &Log, n: usize) -> usize {
    let e = log.entries.lock().unwrap();
    (0..n)
        .filter(|&f| {
            e.iter()
                .any(|(w, _, e)| *w == Who::Follower(f) && matches!(e, Event::Joined { .. }))
        })
        .count()
}
