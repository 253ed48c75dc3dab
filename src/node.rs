//! The async driver: runs one session machine over real links, a real clock, a record file and
//! the application's commands.
//!
//! It is deliberately thin — every decision is the machine's. The loop waits for whichever comes
//! first: a command from the app, an event from a link, the end of a dial, or the machine's next
//! timeout; it feeds that to the machine as an [`Input`] and then carries out every [`Output`].
//!
//! ```text
//!  app ── Node::command ──▶ ┌────────────┐ ◀── link events (one task per link)
//!                           │ drive loop │ ──▶ LinkSender::send_control / close
//!  app ◀── events (mpsc) ── └────────────┘ ──▶ record file (atomic replace)
//! ```
//!
//! What lives where: this file is the driver (the loop, links, dials, outputs); `record_file`
//! reads a persisted record back; `files` is the file service the driver forwards file cues to;
//! `host`, `join` and `pair` (with `join_dial`, `pair_*`) are the front doors; `state_dir` and
//! `state_files` what a device keeps between runs; `events` the app's event stream.

mod events;
mod files;
mod host;
mod join;
mod join_dial;
mod pair;
pub mod pair_advert;
mod pair_book;
mod pair_redial;
mod record_file;
mod state_dir;
mod state_files;

pub use events::{AppEvent, Events, EVENT_QUEUE};
pub use files::{list_files, Files, FilesEvent, FilesOptions, ProgressView, PublishedFiles};
pub use host::{follower_dialer, Host, HostOptions, JoinTarget};
pub use join::{Join, JoinHow, JoinOptions};
pub use pair::{
    pair_id, CodeStyle, Pair, PairAnswer, PairCode, PairOffer, PairOptions, CODE_PAIR_PATIENCE,
};
pub(crate) use record_file::set_aside;
pub use record_file::{load_record, BadRecord};
pub use state_dir::{
    default_state_dir, lock_default_state_dir, lock_state_dir, StateDirLock, MAX_DEFAULT_STATE_DIRS,
};

use crate::protocol::RejectReason;
use crate::session::{
    Command, DoorQuery, DoorReply, Event, FileCue, Input, JoinCredentials, Machine, Output, PeerId,
    Record, Time,
};
use crate::transfer::{ManifestKind, TransferError};
use crate::transport::{Link, LinkEvent, LinkSender};
use files::Req;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// The node's clock: the wall clock read once at start, advanced by a monotonic clock, so it is
/// comparable across devices and never goes backwards.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_start_us: u64,
    start: Instant,
}

impl Clock {
    /// Starts the clock now.
    pub fn new() -> Clock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            wall_start_us: wall.as_micros() as u64,
            start: Instant::now(),
        }
    }

    /// Current time.
    pub fn now(&self) -> Time {
        Time(self.wall_start_us + self.start.elapsed().as_micros() as u64)
    }

    /// The `Instant` at which the clock shows `t`.
    fn instant_of(&self, t: Time) -> Instant {
        let us = t.0.saturating_sub(self.wall_start_us);
        self.start + Duration::from_micros(us)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Why a dial produced no link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialError {
    /// The peer's join endpoint refused, for this reason: do not retry blindly.
    Refused(RejectReason),
    /// Anything else (unreachable, timeout): worth retrying later.
    Failed(String),
}

impl From<String> for DialError {
    fn from(e: String) -> Self {
        DialError::Failed(e)
    }
}

impl From<&str> for DialError {
    fn from(e: &str) -> Self {
        DialError::Failed(e.to_string())
    }
}

/// A future that opens a new link to the peer (answering the machine's `Dial`).
pub type DialFuture = Pin<Box<dyn Future<Output = Result<Link, DialError>> + Send>>;

/// Makes a [`DialFuture`] each time the machine asks to dial, with the credentials it presents.
pub type Dialer = Box<dyn FnMut(JoinCredentials) -> DialFuture + Send>;

/// How a node is wired to the world.
#[derive(Default)]
pub struct NodeOptions {
    /// Answers `Dial`; without one every dial fails at once (the peer must dial us).
    pub dialer: Option<Dialer>,
    /// Where `Persist` records are written (JSON, replaced atomically).
    pub record_path: Option<PathBuf>,
    /// The file service: gets every transfer message and binary message of this node's links.
    pub files: Option<Files>,
}

/// How many app commands and new links wait for the driver before [`Node::command`] says
/// [`Error::Busy`](crate::Error::Busy): the driver takes them as fast as the machine handles
/// them, so a full queue means the app sends far faster than a session can act.
pub const REQUEST_QUEUE: usize = 1024;

enum Request {
    Command(Command),
    /// A link, and the device id the join endpoint admitted it as, if it did.
    AddLink(Link, Option<String>),
    Door(DoorQuery, oneshot::Sender<DoorReply>),
    NetworkChanged,
    /// Answered once everything asked before has been handled and carried out.
    Flush(oneshot::Sender<()>),
    /// Close every link (each peer is told at once) and stop; answered when they are closed.
    Shutdown(oneshot::Sender<()>),
}

/// Handle to a running node. Cloneable; dropping every handle stops the node.
#[derive(Clone)]
pub struct Node {
    tx: mpsc::Sender<Request>,
    files: Option<Files>,
}

impl Node {
    /// Starts driving `machine` on the current tokio runtime. Returns the handle and the stream
    /// of events for the app.
    pub fn spawn<M: Machine + Send + 'static>(
        machine: M,
        opts: NodeOptions,
    ) -> (Node, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let files = opts.files.clone();
        tokio::spawn(drive(machine, opts, rx, events_tx));
        (Node { tx, files }, events_rx)
    }

    /// Publishes `paths` as the set of `kind` (host; solo sender), or withdraws it with `None`,
    /// and tells the session: pack and media metadata go into snapshots (the participants'
    /// start gate), a streamed score is announced with STREAM_PREPARE (cleared with `None`).
    /// Every admitted peer is then sent the set. Needs [`NodeOptions::files`].
    pub async fn publish(
        &self,
        kind: ManifestKind,
        paths: Option<Vec<PathBuf>>,
    ) -> Result<PublishedFiles, crate::Error> {
        let files = self.files.as_ref().ok_or_else(|| {
            TransferError::InvalidSessionPack("this node has no file service".into())
        })?;
        let published = files.publish(kind, paths).await?;
        match kind {
            ManifestKind::Stream => match &published.stream {
                Some(info) => self.command(Command::StreamPrepare(info.clone()))?,
                None => self.command(Command::StreamClear)?,
            },
            _ => self.command(Command::SetFiles(published.files.clone()))?,
        }
        Ok(published)
    }

    /// Publishes the regular files of `dir` as the session pack (see [`publish`](Self::publish)).
    pub async fn publish_pack(&self, dir: PathBuf) -> Result<PublishedFiles, crate::Error> {
        let paths = files::list_files(&dir, ManifestKind::Pack)?;
        self.publish(ManifestKind::Pack, Some(paths)).await
    }

    /// Gives the machine an application command. Whether the machine accepts it is told by an
    /// event (a refused command gives `Event::Error` with its code); `Err` here only means the
    /// node has stopped.
    pub fn command(&self, cmd: Command) -> Result<(), crate::Error> {
        self.tx
            .try_send(Request::Command(cmd))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => crate::Error::Busy,
                mpsc::error::TrySendError::Closed(_) => crate::Error::Stopped,
            })
    }

    /// Hands over an open link (from pairing or a join), which becomes `LinkUp`.
    pub fn add_link(&self, link: Link) {
        self.hand_over(Request::AddLink(link, None));
    }

    /// Hands over a link the join endpoint made for a request it admitted as `device_id`
    /// (PROTOCOL.md §9.4): the link may only join as that id.
    pub fn add_admitted_link(&self, link: Link, device_id: String) {
        self.hand_over(Request::AddLink(link, Some(device_id)));
    }

    /// Asks the machine, as it is at this instant, what a join request must prove and whether
    /// it would be admitted (PROTOCOL.md §9.3). A stopped node admits nobody.
    pub async fn door(&self, query: DoorQuery) -> DoorReply {
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Request::Door(query, reply)).await.is_err() {
            return DoorReply::closed();
        }
        answer.await.unwrap_or_else(|_| DoorReply::closed())
    }

    /// Tells the machine the network changed, so it retries at once.
    pub fn network_changed(&self) {
        // A change already queued and not yet seen does the same.
        let _ = self.tx.try_send(Request::NetworkChanged);
    }

    /// Queues a link for the driver; a link it cannot take (stopped, or flooded with requests)
    /// is dropped, which closes it: the peer sees a closed link and retries.
    fn hand_over(&self, request: Request) {
        if self.tx.try_send(request).is_err() {
            tracing::warn!("the node cannot take a new link now; closing it");
        }
    }

    /// Returns once every command given before has been handled and what it made the machine
    /// do (messages handed to the links, closes scheduled) has been carried out; at once if
    /// the node has stopped.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Request::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Stops the node: every link is closed the way a peer notices at once (an SCTP ABORT, not
    /// silence its heartbeat must time out), waiting up to [`CLOSE_WAIT`] for that to leave.
    /// The machine is not told anything: a master stopped this way keeps its session resumable.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Request::Shutdown(done)).await.is_ok() {
            let _ = tokio::time::timeout(CLOSE_WAIT + Duration::from_millis(500), wait).await;
        }
    }
}

/// How long [`Node::shutdown`] waits for its links to tell their peers they closed.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);

struct OpenLink {
    sender: LinkSender,
    close: Option<oneshot::Sender<()>>,
    /// The link's task: it ends once the link has closed.
    task: tokio::task::JoinHandle<()>,
}

struct Driver<M> {
    machine: M,
    clock: Clock,
    opts: NodeOptions,
    links: HashMap<PeerId, OpenLink>,
    next_peer: PeerId,
    link_events: mpsc::UnboundedSender<(PeerId, LinkEvent)>,
    dial_results: mpsc::UnboundedSender<Result<Link, DialError>>,
    events: mpsc::UnboundedSender<Event>,
}

async fn drive<M: Machine>(
    machine: M,
    opts: NodeOptions,
    mut requests: mpsc::Receiver<Request>,
    events: mpsc::UnboundedSender<Event>,
) {
    let (link_tx, mut link_rx) = mpsc::unbounded_channel();
    let (dial_tx, mut dial_rx) = mpsc::unbounded_channel();
    let mut stopped = None;
    let mut d = Driver {
        machine,
        clock: Clock::new(),
        opts,
        links: HashMap::new(),
        next_peer: 1,
        link_events: link_tx,
        dial_results: dial_tx,
        events,
    };
    loop {
        d.carry_out().await;
        let deadline = d
            .machine
            .poll_timeout()
            .map(|t| d.clock.instant_of(t))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            req = requests.recv() => match req {
                Some(Request::Command(cmd)) => d.input(Input::Command(&cmd)),
                Some(Request::AddLink(link, admitted)) => d.add_link(link, admitted),
                Some(Request::Door(query, reply)) => {
                    let _ = reply.send(d.machine.door(d.clock.now(), &query));
                }
                Some(Request::NetworkChanged) => d.input(Input::NetworkChanged),
                Some(Request::Flush(done)) => {
                    d.carry_out().await;
                    let _ = done.send(());
                }
                Some(Request::Shutdown(done)) => {
                    stopped = Some(done);
                    break;
                }
                None => break, // every handle dropped
            },
            Some((peer, ev)) = link_rx.recv() => d.on_link_event(peer, ev),
            Some(result) = dial_rx.recv() => match result {
                Ok(link) => d.add_link(link, None),
                Err(DialError::Refused(reason)) => {
                    tracing::info!(?reason, "dial refused");
                    d.input(Input::DialRefused(reason));
                }
                Err(DialError::Failed(e)) => {
                    tracing::info!(%e, "dial failed");
                    d.input(Input::DialFailed);
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => d.input(Input::Timeout),
        }
    }
    let mut closing = Vec::new();
    for (_, l) in d.links.drain() {
        if let Some(close) = l.close {
            let _ = close.send(());
        }
        closing.push(l.task);
    }
    if let Some(done) = stopped {
        let _ = tokio::time::timeout(CLOSE_WAIT, futures_join(closing)).await;
        let _ = done.send(());
    }
}

/// Waits for every task (in order; they run concurrently anyway).
async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

impl<M: Machine> Driver<M> {
    fn input(&mut self, input: Input<'_>) {
        let now = self.clock.now();
        self.machine.handle(now, input);
    }

    fn add_link(&mut self, mut link: Link, admitted: Option<String>) {
        let peer = self.next_peer;
        self.next_peer += 1;
        let sender = link.sender();
        let (close_tx, mut close_rx) = oneshot::channel::<()>();
        let events = self.link_events.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = link.recv() => match ev {
                        Some(ev) => {
                            let closed = ev == LinkEvent::Closed;
                            if events.send((peer, ev)).is_err() || closed {
                                break;
                            }
                        }
                        None => {
                            let _ = events.send((peer, LinkEvent::Closed));
                            break;
                        }
                    },
                    _ = &mut close_rx => break,
                }
            }
            link.close().await;
        });
        if let Some(files) = &self.opts.files {
            files.tell(Req::LinkUp(peer, sender.clone()));
        }
        self.links.insert(
            peer,
            OpenLink {
                sender,
                close: Some(close_tx),
                task,
            },
        );
        match &admitted {
            Some(id) => self.input(Input::AdmittedLinkUp(peer, id)),
            None => self.input(Input::LinkUp(peer)),
        }
    }

    fn on_link_event(&mut self, peer: PeerId, ev: LinkEvent) {
        if !self.links.contains_key(&peer) {
            return;
        }
        match ev {
            // The machine decodes it; a transfer message comes back as a cue for the files.
            LinkEvent::Control(text) => self.input(Input::Received(peer, text.as_bytes())),
            LinkEvent::Closed => {
                self.links.remove(&peer);
                if let Some(files) = &self.opts.files {
                    files.tell(Req::LinkGone(peer));
                }
                self.input(Input::LinkDown(peer));
            }
            // Connectivity blips are judged by the machine's own heartbeat.
            LinkEvent::Down | LinkEvent::Up | LinkEvent::Open => {
                tracing::debug!(peer, ?ev, "link connectivity")
            }
            LinkEvent::Binary(bytes) => match &self.opts.files {
                Some(files) => files.tell(Req::Chunk(peer, bytes)),
                None => tracing::debug!(peer, "binary message with no file service"),
            },
        }
    }

    /// Carries out every output the machine has queued.
    async fn carry_out(&mut self) {
        while let Some(out) = self.machine.poll_output() {
            match out {
                Output::Send(peer, text) => {
                    if let Some(l) = self.links.get(&peer) {
                        if let Err(e) = l.sender.send_control(&text).await {
                            tracing::warn!(peer, %e, "send failed");
                        }
                    }
                }
                Output::Close(peer) => {
                    if let Some(files) = &self.opts.files {
                        files.tell(Req::LinkGone(peer));
                    }
                    if let Some(mut l) = self.links.remove(&peer) {
                        // Give queued messages a moment to leave before the link goes.
                        let close = l.close.take();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            if let Some(close) = close {
                                let _ = close.send(());
                            }
                        });
                    }
                }
                Output::Dial(creds) => match self.opts.dialer.as_mut() {
                    Some(dial) => {
                        let fut = dial(creds);
                        let results = self.dial_results.clone();
                        tokio::spawn(async move {
                            let _ = results.send(fut.await);
                        });
                    }
                    None => {
                        let _ = self
                            .dial_results
                            .send(Err("no way to dial this peer".into()));
                    }
                },
                Output::Persist(rec) => self.persist(&rec),
                Output::Event(e) => {
                    let _ = self.events.send(e);
                }
                Output::Files(cue) => self.tell_files(cue),
            }
        }
    }

    /// Passes a session cue to the file service, which serves only links this node still holds.
    fn tell_files(&self, cue: FileCue) {
        let Some(files) = &self.opts.files else {
            return;
        };
        if matches!(cue, FileCue::Serve(peer) if !self.links.contains_key(&peer)) {
            return;
        }
        files.tell(Req::Cue(cue));
    }

    fn persist(&self, rec: &Record) {
        let Some(path) = &self.opts.record_path else {
            return;
        };
        // Write a temporary file and rename it over the old one: a crash leaves either record.
        let tmp = path.with_extension("tmp");
        let result = serde_json::to_vec_pretty(rec)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            tracing::warn!(%e, path = %path.display(), "cannot save the session record");
        }
    }
}
