//! The join endpoint's listener: HTTP/1.1 served with hyper under the limits of PROTOCOL.md §9.3,
//! so idle or slow clients cannot starve it — a deadline for the request head and one for the
//! whole connection, one request per connection, and capped connections (in total and per source
//! address, shared fairly: [`Slots`]). Over its cap a connection is closed at once; the accept
//! loop never waits on a client and survives accept errors (out of descriptors) by pausing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::slots::{Slot, Slots};

/// Limits of the connections of the join endpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Open connections in total.
    pub total: usize,
    /// Open connections per source address.
    pub per_source: usize,
    /// Time for the request head to arrive, from the connection's start.
    pub head_timeout: Duration,
    /// Time for the whole connection: head, body, answer.
    pub lifetime: Duration,
}

/// After an accept error (typically out of descriptors: the pending connection stays queued),
/// wait this long before accepting again rather than spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves `app` on `listener` until `stop` fires (or the task is dropped), then lets the
/// connections in flight finish (each is bounded by its lifetime).
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    mut stop: oneshot::Receiver<()>,
) {
    let slots = Slots::new(limits.total, limits.per_source, limits.lifetime);
    let (stopping_tx, stopping) = watch::channel(false);
    // Owned here: dropping this task (an aborted server) drops every connection too.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match slots.take(peer.ip(), Instant::now()) {
                    Some(slot) => {
                        conns.spawn(serve_one(stream, peer, app.clone(), limits, slot, stopping.clone()));
                    }
                    None => {
                        tracing::debug!(%peer, "join endpoint: connection over the cap, closed");
                        drop(stream);
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "join endpoint: accept failed; pausing");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    while conns.join_next().await.is_some() {}
}

/// One connection: one request, within its deadlines; given up early if its slot is taken by a
/// newcomer from a source holding fewer connections.
async fn serve_one(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ConnLimits,
    slot: Slot,
    mut stopping: watch::Receiver<bool>,
) {
    let inner = TowerToHyperService::new(app);
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        inner.call(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .keep_alive(false);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(limits.lifetime);
    tokio::pin!(deadline);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "join endpoint: connection ended");
                }
                return;
            }
            _ = &mut deadline => {
                tracing::debug!(%peer, "join endpoint: connection past its lifetime, closed");
                return;
            }
            _ = slot.evicted() => {
                tracing::debug!(%peer, "join endpoint: connection gave its slot to a newcomer");
                return;
            }
            _ = stopping.wait_for(|s| *s), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Raises this process's soft limit of open descriptors to its hard limit, so the limit of
/// connections and links is the endpoint's own, not a default of 1024. Returns the new limit.
#[cfg(unix)]
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = raised;
    }
    #[allow(clippy::unnecessary_cast)] // `rlim_t` is narrower than u64 on some targets
    Ok(lim.rlim_cur as u64)
}
