//! The per-link driver: feeds datagrams and timer expiries into the sans-IO [`Connection`] and
//! sends everything it produces at once.
//!
//! The connection lives behind a mutex shared with the [`LinkSender`](super::LinkSender)s,
//! which send directly from their own task (lock, hand the message to the association, write
//! the resulting datagrams, unlock): no task hop on the send path. The driver task owns the
//! receive path and the timers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::ReadBuf;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, trace};

use super::connection::Connection;
use super::net::{HostSocket, GSO_MAX_BYTES, GSO_MAX_SEGMENTS};
use super::{LinkEvent, TransportError};

/// Capacity of the driver → [`Link`](super::Link) event channel.
pub(crate) const EVENT_CHANNEL_CAPACITY: usize = 1024;
/// While this many events wait for room in the channel, the driver stops taking messages out
/// of the association, so its receive window pushes back on the peer instead of memory growing.
const READ_BACKLOG: usize = 64;
/// Receive calls made in one go before the output is drained (lets SACKs coalesce). With
/// UDP_GRO one call can return dozens of datagrams.
const RECV_BATCH: usize = 64;
/// Receive buffer: bigger than any datagram a peer should send (loopback allows 64 KiB).
const RECV_BUF: usize = 65536;
/// Longest sleep when nothing has a deadline: guards against a lost wake-up, costs nothing.
const IDLE_WAKE: Duration = Duration::from_secs(10);
/// A link is idle when no message went either way for this long and nothing is unacknowledged.
const IDLE_AFTER: Duration = Duration::from_secs(1);
/// Wake-up period of an idle link. The ICE agent asks for a wake-up every 200 ms even when
/// connected (its keepalive is due only every 2 s and loss is declared after 5 s); serving
/// those would be most of an idle link's CPU. With no data in flight no SCTP timer is armed,
/// so a coarser tick only delays keepalives and loss detection by up to this much.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// State shared by the driver task, the [`Link`](super::Link) and its senders.
pub(crate) struct Shared {
    engine: Mutex<Engine>,
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

/// The connection with what the driver keeps beside it: its sockets, whether it was closed from
/// our side, the armed deadline and the idle clock.
pub(crate) struct Engine {
    conn: Connection,
    sockets: Arc<[HostSocket]>,
    /// Closed from our side (the driver stops).
    closed: bool,
    /// The deadline the driver currently sleeps until.
    armed: Option<Instant>,
    /// Last message sent or received on either channel.
    last_activity: Instant,
    /// Datagrams taken out of the connection by `flush`, kept to reuse the allocation.
    out_batch: Vec<(usize, SocketAddr, BytesMut)>,
}

impl Shared {
    pub(crate) fn new(conn: Connection, sockets: Arc<[HostSocket]>, limit: usize) -> Arc<Self> {
        Arc::new(Self {
            engine: Mutex::new(Engine {
                conn,
                sockets,
                closed: false,
                armed: None,
                last_activity: Instant::now(),
                out_batch: Vec::new(),
            }),
            wake: Notify::new(),
            space: Notify::new(),
            space_waiters: AtomicUsize::new(0),
            limit,
            low_water: limit.saturating_sub((limit / 4).max(super::MAX_BINARY_MESSAGE)),
            drop_incoming: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Engine> {
        // A panic elsewhere while holding the lock leaves the connection usable enough to close.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a send: if the connection now wants to wake earlier than the driver sleeps, poke it.
    fn rearm(&self, engine: &mut Engine) {
        if let Some(t) = engine.conn.poll_timeout() {
            if engine.armed.is_none_or(|a| t < a) {
                engine.armed = Some(t);
                self.wake.notify_one();
            }
        }
    }

    pub(crate) fn send_control(&self, text: &str) -> Result<(), TransportError> {
        let mut engine = self.lock();
        engine.check_open()?;
        let now = Instant::now();
        engine.conn.send_control(now, text)?;
        engine.last_activity = now;
        engine.flush(now);
        self.rearm(&mut engine);
        Ok(())
    }

    pub(crate) async fn send_binary(&self, data: &[u8]) -> Result<(), TransportError> {
        loop {
            let notified = {
                let mut engine = self.lock();
                engine.check_open()?;
                let buffered = engine.conn.buffered_binary();
                if buffered == 0 || buffered + data.len() <= self.limit {
                    let now = Instant::now();
                    engine.conn.send_binary(now, data)?;
                    engine.last_activity = now;
                    engine.flush(now);
                    self.rearm(&mut engine);
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
        self.lock().conn.buffered_binary()
    }

    pub(crate) fn is_open(&self) -> bool {
        let engine = self.lock();
        !engine.closed && engine.conn.is_open()
    }

    /// Closes the connection from our side (idempotent) and stops the driver.
    pub(crate) fn close_local(&self) {
        self.lock().shutdown();
        self.wake.notify_one();
        self.space.notify_waiters();
    }
}

impl Engine {
    fn check_open(&self) -> Result<(), TransportError> {
        if self.closed || self.conn.is_closed() {
            Err(TransportError::Closed)
        } else if !self.conn.is_open() {
            Err(TransportError::NotOpen)
        } else {
            Ok(())
        }
    }

    /// The deadline to sleep until: the connection's, coarsened while the link is idle.
    fn deadline(&mut self, now: Instant) -> Option<Instant> {
        let d = self.conn.poll_timeout();
        let idle = self.conn.is_open()
            && !self.conn.is_down()
            && now.saturating_duration_since(self.last_activity) >= IDLE_AFTER
            && self.conn.outstanding() == 0;
        if idle {
            d.map(|d| d.max(now + IDLE_TICK))
        } else {
            d
        }
    }

    fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Queues SCTP ABORT and DTLS close_notify so the peer learns at once.
        let now = Instant::now();
        self.conn.close(now);
        self.flush(now);
    }

    /// Writes every queued datagram. Sends never block: a full kernel buffer drops the
    /// datagram, which SCTP retransmits like any loss. Datagrams are taken out of the
    /// connection first and then written in runs (same socket and peer, equal sizes) of one
    /// syscall each.
    fn flush(&mut self, now: Instant) {
        let mut batch = std::mem::take(&mut self.out_batch);
        while let Some(t) = self.conn.poll_transmit(now) {
            let v4 = t.remote.is_ipv4();
            let sock = self
                .sockets
                .iter()
                .position(|s| s.addr == t.local)
                .or_else(|| self.sockets.iter().position(|s| s.addr.is_ipv4() == v4));
            let Some(sock) = sock else {
                trace!(local = %t.local, "no socket for outgoing datagram");
                continue;
            };
            batch.push((sock, t.remote, t.data));
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

    fn input(&mut self, now: Instant, socket: usize, from: SocketAddr, data: &[u8]) {
        let Some(local) = self.sockets.get(socket).map(|s| s.addr) else {
            return;
        };
        self.conn.handle_datagram(now, local, from, data);
    }

    /// Takes the connection's events (if `reads`) and sends its datagrams. Returns true when
    /// the link ended.
    fn pump(&mut self, out: &mut VecDeque<LinkEvent>, reads: bool) -> bool {
        let now = Instant::now();
        if reads {
            while let Some(ev) = self.conn.poll_event(now) {
                if matches!(ev, LinkEvent::Control(_) | LinkEvent::Binary(_)) {
                    self.last_activity = now;
                }
                out.push_back(ev);
            }
        }
        self.flush(now);
        self.conn.is_closed() && !self.closed
    }
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
        let mut engine = shared.lock();
        // The first connectivity checks are due at once.
        engine.conn.handle_timeout(Instant::now());
        engine.pump(&mut out, true)
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
            {
                let mut engine = shared.lock();
                let now = Instant::now();
                while let Some(ev) = engine.conn.poll_event(now) {
                    out.push_back(ev);
                }
            }
            for ev in out.drain(..) {
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
            return;
        }

        let now = Instant::now();
        let deadline = {
            let mut engine = shared.lock();
            if engine.closed {
                return;
            }
            let d = engine.deadline(now);
            engine.armed = d;
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

        let mut engine = shared.lock();
        if engine.closed {
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
                        let now = Instant::now();
                        for d in buf[..n].chunks(step.max(1)) {
                            engine.input(now, i, from, d);
                        }
                    }
                    if !got {
                        break;
                    }
                }
            }
            Wake::Timer => engine.conn.handle_timeout(Instant::now()),
            Wake::Other => {}
        }
        let reads = out.len() < READ_BACKLOG;
        ended = engine.pump(&mut out, reads);
        room = engine.conn.buffered_binary() <= shared.low_water;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
