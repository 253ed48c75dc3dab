//! A link once made: its events ([`LinkEvent`]), the [`Link`] that reads them and owns the
//! connection, and the [`LinkSender`]s that send on it from any task.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::driver::Shared;
use super::{TransportError, MAX_BINARY_MESSAGE, MAX_CONTROL_MESSAGE};

/// What happens on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Both channels are open. Reported once ([`Link::wait_open`] consumes it).
    Open,
    /// A message on the `control` channel.
    Control(String),
    /// A message on the `binary` channel.
    Binary(bytes::Bytes),
    /// Connectivity lost (ICE disconnected): may recover.
    Down,
    /// Connectivity recovered after [`Down`](Self::Down).
    Up,
    /// The link is over (closed by the peer, a channel closed, or ICE failed). Last event.
    Closed,
}

/// One open (or opening) link to a peer. Owns the connection: dropping it, or
/// [`close`](Self::close), closes it.
pub struct Link {
    shared: Arc<Shared>,
    events: mpsc::Receiver<LinkEvent>,
    /// Events read by [`wait_open`](Self::wait_open) before `Open`, handed out by `recv`.
    stash: VecDeque<LinkEvent>,
    open: bool,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").field("open", &self.open).finish()
    }
}

impl Link {
    /// A link over the connection in `shared`, whose driver task sends its events to `events`.
    pub(super) fn new(
        shared: Arc<Shared>,
        events: mpsc::Receiver<LinkEvent>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self {
            shared,
            events,
            stash: VecDeque::new(),
            open: false,
            task: Some(task),
        }
    }

    /// Waits until both channels are open, at most `timeout`. Other events that arrive first
    /// are kept for [`recv`](Self::recv).
    pub async fn wait_open(&mut self, timeout: Duration) -> Result<(), TransportError> {
        if self.open {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return Err(TransportError::OpenTimeout),
                Ok(None) => return Err(TransportError::Closed),
                Ok(Some(LinkEvent::Open)) => {
                    self.open = true;
                    return Ok(());
                }
                Ok(Some(LinkEvent::Closed)) => {
                    self.stash.push_back(LinkEvent::Closed);
                    return Err(TransportError::Closed);
                }
                Ok(Some(other)) => self.stash.push_back(other),
            }
        }
    }

    /// A handle for sending, usable from other tasks.
    pub fn sender(&self) -> LinkSender {
        LinkSender {
            shared: self.shared.clone(),
        }
    }

    /// The next event; `None` once the link is closed for good and every event was read.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        if let Some(ev) = self.stash.pop_front() {
            return Some(ev);
        }
        let ev = self.events.recv().await;
        if ev == Some(LinkEvent::Open) {
            self.open = true;
        }
        ev
    }

    /// Closes the connection (the peer sees [`LinkEvent::Closed`]) and waits for the driver.
    pub async fn close(mut self) {
        self.shared.close_local();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.close_local();
    }
}

/// Sends on a link. Cheap to clone; `Send + Sync`. Sends go straight to the socket from the
/// calling task (no hop through the driver).
#[derive(Clone)]
pub struct LinkSender {
    shared: Arc<Shared>,
}

impl fmt::Debug for LinkSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkSender").finish_non_exhaustive()
    }
}

impl LinkSender {
    /// Sends a text message on the `control` channel (ordered, reliable).
    pub async fn send_control(&self, text: &str) -> Result<(), TransportError> {
        if text.len() > MAX_CONTROL_MESSAGE {
            return Err(TransportError::TooLarge {
                limit: MAX_CONTROL_MESSAGE,
                len: text.len(),
            });
        }
        self.shared.send_control(text)
    }

    /// Sends a binary message on the `binary` channel (ordered, reliable). Waits while the
    /// channel's unacknowledged bytes would exceed the configured
    /// [`send_buffer_limit`](super::TransportConfig::send_buffer_limit); never drops.
    pub async fn send_binary(&self, data: &[u8]) -> Result<(), TransportError> {
        if data.len() > MAX_BINARY_MESSAGE {
            return Err(TransportError::TooLarge {
                limit: MAX_BINARY_MESSAGE,
                len: data.len(),
            });
        }
        self.shared.send_binary(data).await
    }

    /// Bytes queued on the `binary` channel and not yet acknowledged by the peer.
    pub fn buffered_binary(&self) -> usize {
        self.shared.buffered_binary()
    }

    /// True once both channels are open and the link is not closed.
    pub fn is_open(&self) -> bool {
        self.shared.is_open()
    }

    /// For tests and demos: while `on`, this side drops every datagram it receives, as if the
    /// network were cut towards it. ICE reports [`LinkEvent::Down`] after about 5 s and
    /// [`LinkEvent::Up`] once datagrams flow again (the link closes if the cut lasts ~30 s).
    pub fn simulate_receive_loss(&self, on: bool) {
        self.shared
            .drop_incoming
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
}
