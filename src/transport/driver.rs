//! The per-link driver: feeds datagrams and timer expiries into the sans-IO peer connection and
//! sends everything it produces at once.
//!
//! The peer connection lives behind a mutex shared with the [`LinkSender`](super::LinkSender)s,
//! which send directly from their own task (lock, hand the message to the engine, write the
//! resulting datagrams, unlock): no task hop on the send path. The driver task owns the receive
//! path and the timers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::data_channel::RTCDataChannelId;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState};
use rtc::peer_connection::RTCPeerConnection;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::io::ReadBuf;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, trace, warn};

use super::net::{HostSocket, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use super::{LinkEvent, TransportError};

/// Capacity of the driver → [`Link`](super::Link) event channel.
pub(crate) const EVENT_CHANNEL_CAPACITY: usize = 1024;
/// While this many events wait for room in the channel, the driver stops taking messages out
/// of the engine, so SCTP flow control pushes back on the peer instead of memory growing.
const READ_BACKLOG: usize = 64;
/// Receive calls made in one go before the engine's output is drained (lets SACKs coalesce).
/// With UDP_GRO one call can return dozens of datagrams.
const RECV_BATCH: usize = 64;
/// Receive buffer: bigger than any datagram a peer should send (loopback allows 64 KiB).
const RECV_BUF: usize = 65536;
/// Rounds of "poll events, poke timers" per pump; the engine settles in two or three.
const PUMP_ROUNDS: usize = 16;
/// Longest sleep when the engine has no deadline: guards against a lost wake-up, costs nothing.
const IDLE_WAKE: Duration = Duration::from_secs(10);
/// A link is idle when no message went either way for this long and nothing is unacknowledged.
const IDLE_AFTER: Duration = Duration::from_secs(1);
/// Wake-up period of an idle link. The ICE agent asks for a wake-up every 200 ms even when
/// connected (its keepalive is due only every 2 s and loss is declared after 5 s); serving
/// those would be most of an idle link's CPU. With no data in flight no SCTP timer is armed,
/// so a coarser tick only delays keepalives and loss detection by up to this much.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Inbound bytes the engine may hold for messages not yet delivered before the link is closed
/// as a flood (PROTOCOL.md §1). The engine (`rtc` 0.21) refuses a message over the negotiated
/// `max-message-size` only once it is reassembled whole, and keeps taking the chunks of an
/// unfinished message past its receive window (to avoid a deadlock), so a peer that ignores the
/// limit could otherwise make it buffer without bound. The estimate counts each DTLS datagram
/// from the peer (less [`DATAGRAM_ALLOWANCE`]) and takes off what each delivered message accounts
/// for ([`delivered_credit`]), never going below zero. An honest peer keeps at most a receive
/// window ([`RECEIVE_WINDOW`](super::RECEIVE_WINDOW)) in flight, so four windows leave room for
/// retransmissions and the estimate's drift.
const FLOOD_LIMIT: usize = 4 * super::RECEIVE_WINDOW as usize;
/// Taken off each counted datagram: less than the least overhead of a datagram carrying data
/// (DTLS record 37 bytes, SCTP header 12, DATA chunk header 16), so data always counts.
const DATAGRAM_ALLOWANCE: usize = 48;
/// The same while the application lags (reads paused): the engine may then also hold up to 256
/// finished messages of at most 64 KiB in its own queue.
const FLOOD_LIMIT_BACKLOGGED: usize = 256 * super::MAX_CONTROL_MESSAGE + FLOOD_LIMIT;
/// An inbound datagram this small may be a SACK of our data: it is free while we have sent
/// data datagrams that it could acknowledge (a sender sees nothing but SACKs for a long while).
const SACK_SIZE: usize = 200;
/// What a delivered message takes off the estimate: its length, plus a little for its share of
/// headers — less than the 16-byte chunk header a bundled message costs, so that a stream of
/// small messages can never make room for an unfinished one; the `len / 64` covers the
/// per-datagram overhead of a message split over several datagrams (about 17 bytes each after
/// the allowance, one per 1.2 KB at least).
fn delivered_credit(len: usize) -> usize {
    len + len / 64 + 12
}

/// How fast the estimate forgets, in bytes per second. Control traffic on a healthy link drifts
/// it upwards a little (the peer's SACKs of our small messages, its heartbeats: about 40 B/s on
/// an idle link with the 1 s PING of PROTOCOL.md §6.4), which would otherwise close a link that
/// stays up for a day (2 MiB / 40 B/s ≈ 15 h). A peer hiding an unfinished message gains no more
/// than this rate: 11 MB a day.
const FORGET_PER_SEC: u64 = 128;

/// The estimate after `elapsed` of forgetting at [`FORGET_PER_SEC`].
fn forget(undelivered: usize, elapsed: Duration) -> usize {
    let forgotten = (elapsed.as_millis() as u64).saturating_mul(FORGET_PER_SEC) / 1000;
    undelivered.saturating_sub(usize::try_from(forgotten).unwrap_or(usize::MAX))
}

/// Outbound datagrams at least this large carry data and earn one free SACK each.
const DATA_DATAGRAM: usize = 1000;
/// Most SACK allowances kept.
const MAX_SACK_CREDIT: u32 = 1 << 16;

/// State shared by the driver task, the [`Link`](super::Link) and its senders.
pub(crate) struct Shared {
    core: Mutex<Core>,
    /// Wakes the driver: its timer may need to be earlier, or the link was closed.
    wake: Notify,
    /// Wakes senders waiting for room in the binary send buffer.
    space: Notify,
    space_waiters: AtomicUsize,
    limit: usize,
    /// Waiting senders are woken when the unacknowledged bytes fall to this.
    low_water: usize,
    /// Test hook: drop every incoming datagram (simulates a cut link).
    pub(crate) drop_incoming: AtomicBool,
}

/// Which side of the offer/answer exchange this link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Offerer,
    Answerer,
}

/// The control message the answering side sends once its channels are open; the offering side
/// reports the link open (and lets the app send) only after it arrives. Without it the
/// offerer's first messages can reach the answerer before the answerer has bound its
/// negotiated channels to their SCTP streams, and `rtc` drops them (it reads data on an unbound
/// stream as an in-band channel open). The marker is never passed to the app.
pub(crate) const READY_MARKER: &str = "{\"lansync\":\"ready\"}";

pub(crate) struct Core {
    pc: RTCPeerConnection,
    side: Side,
    /// Both channels open on this side (the offerer may still wait for the ready marker).
    channels_open: bool,
    sockets: Arc<[HostSocket]>,
    control: RTCDataChannelId,
    binary: RTCDataChannelId,
    control_open: bool,
    binary_open: bool,
    open_reported: bool,
    down: bool,
    closed: bool,
    /// The deadline the driver currently sleeps until.
    armed: Option<Instant>,
    /// Last message sent or received on either channel.
    last_activity: Instant,
    /// Datagrams taken out of the engine by `flush`, kept to reuse the allocation.
    out_batch: Vec<(usize, SocketAddr, BytesMut)>,
    /// Estimate of the inbound bytes held for messages not yet delivered (see [`FLOOD_LIMIT`]).
    undelivered: usize,
    /// When the estimate last forgot ([`FORGET_PER_SEC`]).
    forgot_at: Instant,
    /// Small inbound datagrams still allowed free as SACKs of data we sent.
    sack_credit: u32,
    /// Reads were paused since a message last came out.
    backlogged: bool,
    /// Where our DTLS records go: only DTLS from there can feed the engine's SCTP, so only it
    /// is counted (a stranger's junk is dropped by the engine and must not close the link).
    dtls_peer: Option<SocketAddr>,
    /// The peer broke a size limit: the link is being closed, inbound datagrams are dropped.
    refused: bool,
}

impl Shared {
    pub(crate) fn new(
        pc: RTCPeerConnection,
        sockets: Arc<[HostSocket]>,
        control: RTCDataChannelId,
        binary: RTCDataChannelId,
        limit: usize,
        side: Side,
    ) -> Arc<Self> {
        Arc::new(Self {
            core: Mutex::new(Core {
                pc,
                side,
                channels_open: false,
                sockets,
                control,
                binary,
                control_open: false,
                binary_open: false,
                open_reported: false,
                down: false,
                closed: false,
                armed: None,
                last_activity: Instant::now(),
                out_batch: Vec::new(),
                undelivered: 0,
                forgot_at: Instant::now(),
                sack_credit: 0,
                backlogged: false,
                dtls_peer: None,
                refused: false,
            }),
            wake: Notify::new(),
            space: Notify::new(),
            space_waiters: AtomicUsize::new(0),
            limit,
            low_water: limit.saturating_sub((limit / 4).max(super::MAX_BINARY_MESSAGE)),
            drop_incoming: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic elsewhere while holding the lock leaves the engine usable enough to close.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a send: if the engine now wants to wake earlier than the driver sleeps, poke it.
    fn rearm(&self, core: &mut Core) {
        if let Some(t) = core.pc.poll_timeout() {
            if core.armed.is_none_or(|a| t < a) {
                core.armed = Some(t);
                self.wake.notify_one();
            }
        }
    }

    pub(crate) fn send_control(&self, text: &str) -> Result<(), TransportError> {
        let mut core = self.lock();
        core.check_open()?;
        let id = core.control;
        let mut dc = core.pc.data_channel(id).ok_or(TransportError::Closed)?;
        let now = Instant::now();
        dc.send_text(now, text).map_err(send_err)?;
        core.last_activity = now;
        core.flush();
        self.rearm(&mut core);
        Ok(())
    }

    pub(crate) async fn send_binary(&self, data: &[u8]) -> Result<(), TransportError> {
        loop {
            let notified = {
                let mut core = self.lock();
                core.check_open()?;
                let buffered = core.binary_buffered();
                if buffered == 0 || buffered + data.len() <= self.limit {
                    let id = core.binary;
                    let mut dc = core.pc.data_channel(id).ok_or(TransportError::Closed)?;
                    let now = Instant::now();
                    dc.send(now, BytesMut::from(data)).map_err(send_err)?;
                    core.last_activity = now;
                    core.flush();
                    self.rearm(&mut core);
                    return Ok(());
                }
                // Created under the lock, so a notify_waiters after we unlock is not missed.
                self.space_waiters.fetch_add(1, Ordering::SeqCst);
                self.space.notified()
            };
            notified.await;
            self.space_waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    pub(crate) fn buffered_binary(&self) -> usize {
        self.lock().binary_buffered()
    }

    pub(crate) fn is_open(&self) -> bool {
        let core = self.lock();
        core.open_reported && !core.closed
    }

    /// Closes the peer connection from our side (idempotent) and stops the driver.
    pub(crate) fn close_local(&self) {
        self.lock().shutdown();
        self.wake.notify_one();
        self.space.notify_waiters();
    }
}

fn send_err(e: rtc::shared::error::Error) -> TransportError {
    use rtc::shared::error::Error as E;
    match e {
        E::ErrDataChannelNotOpen => TransportError::NotOpen,
        E::ErrDataChannelClosed => TransportError::Closed,
        other => TransportError::Webrtc(other.to_string()),
    }
}

impl Core {
    fn check_open(&self) -> Result<(), TransportError> {
        if self.closed {
            Err(TransportError::Closed)
        } else if !self.open_reported {
            Err(TransportError::NotOpen)
        } else {
            Ok(())
        }
    }

    /// The deadline to sleep until: the engine's, coarsened while the link is idle.
    fn deadline(&mut self, now: Instant) -> Option<Instant> {
        let d = self.pc.poll_timeout();
        let idle = self.open_reported
            && !self.down
            && now.saturating_duration_since(self.last_activity) >= IDLE_AFTER
            && self.outstanding() == 0;
        if idle {
            d.map(|d| d.max(now + IDLE_TICK))
        } else {
            d
        }
    }

    /// Unacknowledged bytes on both channels.
    fn outstanding(&mut self) -> usize {
        let (c, b) = (self.control, self.binary);
        [c, b]
            .into_iter()
            .filter_map(|id| self.pc.data_channel(id).map(|dc| dc.outstanding_bytes()))
            .sum()
    }

    fn binary_buffered(&mut self) -> usize {
        let id = self.binary;
        self.pc
            .data_channel(id)
            .map(|dc| dc.outstanding_bytes())
            .unwrap_or(0)
    }

    fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Queues SCTP ABORT and DTLS close_notify so the peer learns at once.
        if let Err(e) = self.pc.close() {
            debug!("closing peer connection: {e}");
        }
        self.flush();
    }

    /// Writes every queued datagram. Sends never block: a full kernel buffer drops the
    /// datagram, which SCTP retransmits like any loss. Datagrams are taken out of the engine
    /// first and then written in runs (same socket and peer, equal sizes) of one syscall each.
    fn flush(&mut self) {
        let mut batch = std::mem::take(&mut self.out_batch);
        while let Some(m) = self.pc.poll_write() {
            let local = m.transport.local_addr;
            let v4 = m.transport.peer_addr.is_ipv4();
            let sock = self
                .sockets
                .iter()
                .position(|s| s.addr == local)
                .or_else(|| self.sockets.iter().position(|s| s.addr.is_ipv4() == v4));
            let Some(sock) = sock else {
                trace!(%local, "no socket for outgoing datagram");
                continue;
            };
            if is_dtls(&m.message) {
                self.dtls_peer = Some(m.transport.peer_addr);
                if m.message.len() >= DATA_DATAGRAM {
                    self.sack_credit = (self.sack_credit + 1).min(MAX_SACK_CREDIT);
                }
            }
            batch.push((sock, m.transport.peer_addr, m.message));
        }
        let mut start = 0;
        while start < batch.len() {
            let end = run_end(&batch, start);
            let (sock, peer, _) = &batch[start];
            let mut run: [&[u8]; GSO_MAX_SEGMENTS] = [&[]; GSO_MAX_SEGMENTS];
            for (slot, (_, _, d)) in run.iter_mut().zip(&batch[start..end]) {
                *slot = d;
            }
            if let Err(e) = self.sockets[*sock].send_run(*peer, &run[..end - start]) {
                trace!(%peer, "send failed: {e}");
            }
            start = end;
        }
        batch.clear();
        self.out_batch = batch;
    }

    fn input(&mut self, socket: usize, from: SocketAddr, data: &[u8]) {
        let Some(local_addr) = self.sockets.get(socket).map(|s| s.addr) else {
            return;
        };
        if self.refused {
            return;
        }
        if self.dtls_peer != Some(from) || !is_dtls(data) {
            // Not counted: STUN, or not from the peer.
        } else if data.len() <= SACK_SIZE && self.sack_credit > 0 {
            self.sack_credit -= 1;
        } else {
            let now = Instant::now();
            let held = forget(self.undelivered, now - self.forgot_at);
            if self.undelivered == 0 || held != self.undelivered {
                // Not moved while less than a byte was forgotten, so fractions add up; an empty
                // estimate has nothing to forget, so time spent empty is no credit later.
                self.forgot_at = now;
            }
            let counted = data.len().saturating_sub(DATAGRAM_ALLOWANCE);
            self.undelivered = held.saturating_add(counted);
        }
        let limit = if self.backlogged {
            FLOOD_LIMIT_BACKLOGGED
        } else {
            FLOOD_LIMIT
        };
        if self.undelivered > limit {
            warn!(
                bytes = self.undelivered,
                "closing the link: the peer sent about {limit} bytes more than the messages it \
                 completed (one over the size limit?)"
            );
            self.refused = true;
            return;
        }
        let msg = TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = self.pc.handle_read(msg) {
            trace!(%from, "datagram rejected: {e}");
        }
    }

    fn timeout(&mut self) {
        if let Err(e) = self.pc.handle_timeout(Instant::now()) {
            debug!("handle_timeout: {e}");
        }
    }

    /// Drains the engine: events, then messages (if `reads`), then datagrams; repeats while
    /// events keep coming. Some engine steps triggered by an event (the DTLS ClientHello once
    /// ICE selects a pair) are only released by a timeout call, so one is made after each round
    /// that raised events; it is harmless as every timer checks its own deadline. Returns true
    /// when the link ended.
    fn pump(&mut self, out: &mut VecDeque<LinkEvent>, reads: bool) -> bool {
        let mut ended = false;
        for _ in 0..PUMP_ROUNDS {
            let mut raised = false;
            while let Some(ev) = self.pc.poll_event() {
                raised = true;
                ended |= self.on_event(ev, out);
            }
            if reads {
                while let Some(m) = self.pc.poll_read() {
                    self.on_message(m, out);
                }
            } else {
                self.backlogged = true;
            }
            self.flush();
            if !raised {
                break;
            }
            self.timeout();
        }
        self.flush();
        ended |= self.refused;
        if ended && !self.closed {
            out.push_back(LinkEvent::Closed);
            self.shutdown();
        }
        ended
    }

    fn on_event(&mut self, ev: RTCPeerConnectionEvent, out: &mut VecDeque<LinkEvent>) -> bool {
        match ev {
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(state) => {
                debug!(%state, "ice connection state");
                match state {
                    RTCIceConnectionState::Disconnected if self.open_reported && !self.down => {
                        self.down = true;
                        out.push_back(LinkEvent::Down);
                    }
                    RTCIceConnectionState::Connected | RTCIceConnectionState::Completed
                        if self.down =>
                    {
                        self.down = false;
                        out.push_back(LinkEvent::Up);
                    }
                    // The engine drops its candidates on failure: no way back without a restart.
                    RTCIceConnectionState::Failed => return true,
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                debug!(%state, "peer connection state");
                if matches!(
                    state,
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
                ) {
                    return true;
                }
            }
            RTCPeerConnectionEvent::OnDataChannel(dc) => match dc {
                RTCDataChannelEvent::OnOpen(id) => {
                    if id == self.control {
                        self.control_open = true;
                    } else if id == self.binary {
                        self.binary_open = true;
                    }
                    if self.control_open && self.binary_open && !self.channels_open {
                        self.channels_open = true;
                        match self.side {
                            // Tell the offerer we can hear it now.
                            Side::Answerer => {
                                let id = self.control;
                                let sent = self
                                    .pc
                                    .data_channel(id)
                                    .map(|mut dc| dc.send_text(Instant::now(), READY_MARKER));
                                if let Some(Err(e)) = sent {
                                    debug!("cannot send the ready marker: {e}");
                                }
                                self.open_reported = true;
                                out.push_back(LinkEvent::Open);
                            }
                            Side::Offerer => {} // open once the answerer's marker arrives
                        }
                    }
                }
                RTCDataChannelEvent::OnClose(id) if id == self.control || id == self.binary => {
                    debug!(id, "data channel closed");
                    return true;
                }
                _ => {}
            },
            _ => {}
        }
        false
    }

    fn on_message(&mut self, m: TaggedRTCMessage, out: &mut VecDeque<LinkEvent>) {
        let RTCMessage::DataChannelMessage(id, msg) = m.message else {
            return;
        };
        if self.refused {
            return;
        }
        self.last_activity = Instant::now();
        // The limits of PROTOCOL.md §1/§3: a peer that breaks them is not one to keep talking to.
        let limit = if id == self.control {
            super::MAX_CONTROL_MESSAGE
        } else if id == self.binary {
            super::MAX_BINARY_MESSAGE
        } else {
            return; // a channel the peer opened in band: not ours, and no credit for it
        };
        if msg.data.len() > limit {
            warn!(
                len = msg.data.len(),
                limit, "closing the link: the peer sent a message over the limit"
            );
            self.refused = true;
            return;
        }
        self.undelivered = self
            .undelivered
            .saturating_sub(delivered_credit(msg.data.len()));
        self.backlogged = false;
        if id == self.control {
            match String::from_utf8(msg.data.to_vec()) {
                Ok(s) if !self.open_reported && s == READY_MARKER => {
                    self.open_reported = true;
                    out.push_back(LinkEvent::Open);
                }
                Ok(s) => out.push_back(LinkEvent::Control(s)),
                Err(_) => warn!("dropping control message that is not UTF-8"),
            }
        } else if id == self.binary {
            out.push_back(LinkEvent::Binary(msg.data.freeze()));
        }
    }
}

/// A DTLS record by its first byte (RFC 7983 demultiplexing: 20–63).
fn is_dtls(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| (20..=63).contains(b))
}

/// End (exclusive) of the longest run from `start` that one segmented send can carry: same
/// socket and peer, equal sizes except a shorter last one, within the kernel's limits.
fn run_end(batch: &[(usize, SocketAddr, BytesMut)], start: usize) -> usize {
    let (sock, peer, first) = &batch[start];
    let size = first.len();
    let mut total = size;
    let mut end = start + 1;
    while end < batch.len() && end - start < GSO_MAX_SEGMENTS {
        let (s, p, d) = &batch[end];
        if s != sock || p != peer || d.len() > size || total + d.len() > GSO_MAX_BYTES {
            break;
        }
        total += d.len();
        end += 1;
        if d.len() < size {
            break; // a shorter datagram ends a run
        }
    }
    end
}

/// Waits until any socket is readable.
fn poll_readable_any(sockets: &[HostSocket], cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
    for s in sockets {
        match s.io.poll_recv_ready(cx) {
            Poll::Ready(Ok(())) => return Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
    }
    Poll::Pending
}

/// Polls every socket for one datagram: (socket index, length, sender).
pub(crate) fn poll_recv_any(
    sockets: &[HostSocket],
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<std::io::Result<(usize, usize, SocketAddr)>> {
    for (i, s) in sockets.iter().enumerate() {
        let mut rb = ReadBuf::new(buf);
        match s.io.poll_recv_from(cx, &mut rb) {
            Poll::Ready(Ok(from)) => return Poll::Ready(Ok((i, rb.filled().len(), from))),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
    }
    Poll::Pending
}

enum Wake {
    Readable,
    Timer,
    Other,
}

/// Hands queued events to the link while the channel has room. False when the link is gone.
fn deliver(out: &mut VecDeque<LinkEvent>, tx: &mpsc::Sender<LinkEvent>) -> bool {
    while let Some(ev) = out.pop_front() {
        match tx.try_send(ev) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => {
                out.push_front(ev);
                break;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
        }
    }
    true
}

/// The driver task of one link. Ends when the link is closed (locally or by the peer) or the
/// [`Link`](super::Link) is gone.
pub(crate) async fn run(
    shared: Arc<Shared>,
    sockets: Arc<[HostSocket]>,
    tx: mpsc::Sender<LinkEvent>,
) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut out: VecDeque<LinkEvent> = VecDeque::new();
    // Waiting senders are woken only once the buffer has drained to the low-water mark: one
    // wake-up then moves a quarter of the buffer instead of one message per SACK.
    let mut room = true;
    let mut ended = {
        let mut core = shared.lock();
        // Applying the remote description queued connectivity checks.
        core.timeout();
        core.pump(&mut out, true)
    };
    loop {
        if !deliver(&mut out, &tx) {
            shared.close_local();
            return;
        }
        if room && shared.space_waiters.load(Ordering::SeqCst) > 0 {
            shared.space.notify_waiters();
        }
        if ended {
            // Deliver the rest (ending with Closed), then stop.
            shared.space.notify_waiters();
            for ev in out.drain(..) {
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
            return;
        }

        let now = Instant::now();
        let deadline = {
            let mut core = shared.lock();
            if core.closed {
                return;
            }
            let d = core.deadline(now);
            core.armed = d;
            d
        };
        let wake = if deadline.is_some_and(|d| d <= now) {
            Wake::Timer
        } else {
            let sleep_for = deadline.map_or(IDLE_WAKE, |d| d.saturating_duration_since(now));
            tokio::select! {
                biased;
                r = std::future::poll_fn(|cx| poll_readable_any(&sockets, cx)) => match r {
                    Ok(()) => Wake::Readable,
                    Err(e) => {
                        debug!("recv: {e}");
                        Wake::Other
                    }
                },
                _ = shared.wake.notified() => Wake::Other,
                _ = tokio::time::sleep(sleep_for) => Wake::Timer,
                r = tx.reserve(), if !out.is_empty() => match r {
                    Ok(permit) => {
                        if let Some(ev) = out.pop_front() {
                            permit.send(ev);
                        }
                        Wake::Other
                    }
                    Err(_) => {
                        shared.close_local();
                        return;
                    }
                },
            }
        };

        let mut core = shared.lock();
        if core.closed {
            return;
        }
        let drop_incoming = shared.drop_incoming.load(Ordering::Relaxed);
        match wake {
            Wake::Readable => {
                // Take everything that has arrived (up to a budget) before draining the engine,
                // so replies coalesce.
                let mut budget = RECV_BATCH;
                while budget > 0 {
                    let mut got = false;
                    for (i, s) in sockets.iter().enumerate() {
                        let Ok((n, from, segment)) = s.recv_coalesced(&mut buf) else {
                            continue;
                        };
                        got = true;
                        budget = budget.saturating_sub(1);
                        if drop_incoming {
                            continue;
                        }
                        let step = if segment == 0 { n } else { segment };
                        for d in buf[..n].chunks(step.max(1)) {
                            core.input(i, from, d);
                        }
                    }
                    if !got {
                        break;
                    }
                }
            }
            Wake::Timer => core.timeout(),
            Wake::Other => {}
        }
        let reads = out.len() < READ_BACKLOG;
        ended = core.pump(&mut out, reads);
        room = core.binary_buffered() <= shared.low_water;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flood_estimate_forgets_slowly_and_never_below_zero() {
        assert_eq!(forget(10_000, Duration::from_secs(1)), 10_000 - 128);
        assert_eq!(forget(10_000, Duration::from_millis(10)), 10_000 - 1);
        assert_eq!(forget(100, Duration::from_secs(3600)), 0);
    }

    fn batch(items: &[(usize, u16, usize)]) -> Vec<(usize, SocketAddr, BytesMut)> {
        items
            .iter()
            .map(|&(sock, port, len)| {
                let peer = SocketAddr::from(([127, 0, 0, 1], port));
                (sock, peer, BytesMut::from(&vec![0u8; len][..]))
            })
            .collect()
    }

    #[test]
    fn runs_are_equal_sizes_to_one_peer_ending_at_a_shorter_one() {
        let b = batch(&[
            (0, 1, 100),
            (0, 1, 100),
            (0, 1, 60),
            (0, 1, 100),
            (0, 2, 100),
            (1, 2, 100),
            (1, 2, 120),
        ]);
        assert_eq!(run_end(&b, 0), 3); // two full and the shorter last
        assert_eq!(run_end(&b, 3), 4); // next datagram goes to another peer
        assert_eq!(run_end(&b, 4), 5); // another socket
        assert_eq!(run_end(&b, 5), 6); // a longer datagram cannot follow
        assert_eq!(run_end(&b, 6), 7);
    }

    #[test]
    fn runs_respect_the_kernel_limits() {
        let many = batch(&[(0, 1, 10); GSO_MAX_SEGMENTS + 5]);
        assert_eq!(run_end(&many, 0), GSO_MAX_SEGMENTS);
        let big = batch(&[(0, 1, 16_400); 5]);
        assert_eq!(run_end(&big, 0), GSO_MAX_BYTES / 16_400);
    }
}
