//! One typed stream of what happens, for the application: the session's events and the file
//! service's events together, in a bounded queue.
//!
//! **Slow consumers.** The queue holds [`EVENT_QUEUE`] events. The session never waits for the
//! application (a page turn or a heartbeat must not stall behind an unread event), so when the
//! queue is full a new event is dropped and counted, and the application next receives
//! [`AppEvent::Lagged`] with the count before the events that follow. Everything an event reports
//! is also state the application can read again (the page, the role state, the files on disk), so
//! an application that lagged re-reads what it shows.

use super::FilesEvent;
use crate::session::Event;
use tokio::sync::mpsc;

/// How many events wait for the application before new ones are dropped (see the module doc).
pub const EVENT_QUEUE: usize = 1024;

/// Something the application hears.
#[derive(Debug, Clone, PartialEq)]
pub enum AppEvent {
    /// The session: link and role states, pages, songs, participants, refusals, the end.
    Session(Event),
    /// Files: publishing, progress, verification, failures.
    Files(FilesEvent),
    /// The application did not read for a while and `missed` events were dropped.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// The receiving end of the application's events. Ends (`recv` returns `None`) once the session
/// has stopped and every event was read.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<AppEvent>,
}

impl Events {
    /// The next event; `None` once the session has stopped.
    pub async fn recv(&mut self) -> Option<AppEvent> {
        self.rx.recv().await
    }

    /// A stream that has already ended.
    pub(crate) fn ended() -> Events {
        Events {
            rx: mpsc::channel(1).1,
        }
    }

    /// The next event if one is waiting (never waits).
    pub fn try_recv(&mut self) -> Option<AppEvent> {
        self.rx.try_recv().ok()
    }

    /// Merges a node's session events and, if any, its file service's events into one bounded
    /// stream. The internal queues are drained at once by the merging task, so the only queue an
    /// application can fill is this one.
    pub(crate) fn merge(
        session: mpsc::UnboundedReceiver<Event>,
        files: Option<mpsc::UnboundedReceiver<FilesEvent>>,
    ) -> Events {
        Events::merge_watching_end(session, files, None)
    }

    /// [`merge`](Self::merge), also firing `ended` when the session reports its end (a host
    /// withdraws its mDNS advert then, whoever ended the session).
    pub(crate) fn merge_watching_end(
        mut session: mpsc::UnboundedReceiver<Event>,
        mut files: Option<mpsc::UnboundedReceiver<FilesEvent>>,
        mut ended: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Events {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(async move {
            let mut sink = Sink { tx, missed: 0 };
            loop {
                let event = tokio::select! {
                    e = session.recv() => match e {
                        Some(e) => AppEvent::Session(e),
                        None => break,
                    },
                    Some(e) = recv_files(&mut files) => AppEvent::Files(e),
                };
                if matches!(event, AppEvent::Session(Event::SessionEnded)) {
                    if let Some(ended) = ended.take() {
                        let _ = ended.send(());
                    }
                }
                sink.send(event);
            }
            // The session stopped: what the file service still says is delivered too.
            if let Some(files) = &mut files {
                while let Ok(e) = files.try_recv() {
                    sink.send(AppEvent::Files(e));
                }
            }
            sink.finish().await;
        });
        Events { rx }
    }
}

/// The file service's next event, or never when there is none (so `select!` skips it).
async fn recv_files(files: &mut Option<mpsc::UnboundedReceiver<FilesEvent>>) -> Option<FilesEvent> {
    match files {
        Some(rx) => match rx.recv().await {
            Some(e) => Some(e),
            None => {
                *files = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// The sending side with the drop-and-count policy of the module doc.
struct Sink {
    tx: mpsc::Sender<AppEvent>,
    missed: u64,
}

impl Sink {
    fn send(&mut self, event: AppEvent) {
        if self.missed > 0 {
            match self.tx.try_send(AppEvent::Lagged {
                missed: self.missed,
            }) {
                Ok(()) => self.missed = 0,
                Err(_) => {
                    self.missed += 1;
                    return;
                }
            }
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(event) {
            self.missed += 1;
        }
    }

    /// The last word: a count of dropped events is delivered even after the session stopped.
    async fn finish(self) {
        if self.missed > 0 {
            let missed = self.missed;
            let _ = self.tx.send(AppEvent::Lagged { missed }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Event;

    #[tokio::test]
    async fn a_reader_that_falls_behind_is_told_how_many_events_it_missed() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut events = Events::merge(rx, None);
        for _ in 0..EVENT_QUEUE + 10 {
            tx.send(Event::SessionEnded).unwrap();
        }
        drop(tx);
        let mut seen = 0;
        let mut lagged = None;
        while let Some(e) = events.recv().await {
            match e {
                AppEvent::Session(_) => seen += 1,
                AppEvent::Lagged { missed } => lagged = Some(missed),
                AppEvent::Files(_) => unreachable!(),
            }
        }
        // Unread events beyond the queue were dropped; none were lost silently.
        assert_eq!(seen + lagged.unwrap_or(0) as usize, EVENT_QUEUE + 10);
        assert!(seen >= EVENT_QUEUE);
    }
}
