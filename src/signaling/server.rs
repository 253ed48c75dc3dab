//! The master's side of the join (PROTOCOL.md §9): the HTTP endpoint, its routes and limits.
//!
//! - this file: the limits, [`serve`] and the running [`JoinServer`], what the application's
//!   callback gets ([`OfferIn`]) and how the endpoint asks who may join ([`Door`]);
//! - `join.rs`: the two routes' handlers, from the request to the signed answer;
//! - `checks.rs`: the checks of a request's body and the refusals with their statuses;
//! - `body.rs`: reading a request body under its size and time limits;
//! - `limiter.rs`: the per-source rate limits; `nonces.rs`: the nonces between the round trips;
//! - `slots.rs`: capped slots shared fairly between sources, and `pending.rs`: an answer's slot
//!   held until its link opens;
//! - `listener.rs`: the HTTP/1.1 listener and its connection limits;
//! - `page.rs`: the follower page and the CORS answers (PROTOCOL.md §9.7).

mod body;
mod checks;
mod join;
mod limiter;
mod listener;
mod nonces;
mod page;
mod pending;
mod slots;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use tokio::sync::oneshot;

use crate::protocol::RejectReason;
use crate::session::{DoorQuery, DoorReply};
use crate::signaling::wire::{JoinAuth, JOIN_PATH, START_PATH};
use crate::signaling::SignalingError;

use limiter::RateLimiter;
pub use limiter::{RateLimit, RATE_BURST, RATE_PER_SEC};
#[cfg(unix)]
pub use listener::raise_fd_limit;
use nonces::Nonces;
pub use nonces::{MAX_PENDING, MAX_PENDING_PER_SOURCE, NONCE_TTL};
pub use page::{CONTENT_SECURITY_POLICY, PREFLIGHT_MAX_AGE};
pub use pending::{PendingAnswer, PendingHold};

/// Open connections of the join endpoint, in total and per source address (PROTOCOL.md §9.3):
/// a room of followers joining at once needs a few dozen; each costs a descriptor.
pub const MAX_CONNECTIONS: usize = 512;
/// Open connections per source address (one device needs one).
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 8;
/// Time for a request head to arrive, from the connection's start: a LAN client sends it at once.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(3);
/// Time for a whole connection: head, body (its own 10 s limit) and the answer.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(15);
/// Answers pending their link (being made, or sent and waiting for the link to open), in total.
/// Each holds a peer connection (sockets, memory) until its link opens or it is dropped.
pub const MAX_PENDING_ANSWERS: usize = 128;
/// Answers pending their link per source address.
pub const MAX_PENDING_ANSWERS_PER_SOURCE: usize = 4;
/// How long an answer may wait for its link, from the request: on a LAN a link opens within
/// milliseconds of the answer, and within 3 s even after two lost DTLS flights (retransmitted
/// after 1 s, then 2 s); a follower whose link did not open dials again. Longer only lets a
/// flood of answers that never open hold their slots.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request that finds no slot for its answer waits for one before it is refused
/// `busy`: followers joining at once get in as the first links open.
pub const PENDING_WAIT: Duration = Duration::from_secs(1);
/// How long [`JoinServer::shutdown`] waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A join request that passed every check, handed to the application's callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferIn {
    /// The device id the follower proved and was admitted as: the link made from this offer
    /// speaks for this device and no other.
    pub device_id: String,
    /// The follower's display name (≤ 48 bytes, control characters removed).
    pub device_name: String,
    /// The follower's SDP offer (≤ 16 KiB; not otherwise checked).
    pub offer_sdp: String,
    /// Which secret the follower proved.
    pub auth: JoinAuth,
    /// This answer's slot among the answers pending their link: [`hold`](PendingAnswer::hold)
    /// it until the link opens.
    pub pending: PendingAnswer,
}

/// The future a [`Door`] returns.
pub type DoorFuture = Pin<Box<dyn Future<Output = DoorReply> + Send>>;
/// How the endpoint asks the master's machine who may join (typically `Node::door`): the secret
/// a request must prove and the admission verdict, at the instant of the request.
pub type Door = Arc<dyn Fn(DoorQuery) -> DoorFuture + Send + Sync>;

/// The boxed form of the application's callback.
type OfferFuture = Pin<Box<dyn Future<Output = Result<String, RejectReason>> + Send>>;
type OfferHandler = Box<dyn Fn(OfferIn) -> OfferFuture + Send + Sync>;

/// A running join endpoint. Dropping it stops the server at once; [`shutdown`](Self::shutdown)
/// lets requests in flight finish first.
#[derive(Debug)]
pub struct JoinServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl JoinServer {
    /// The address the endpoint listens on (the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits (up to 5 s) for requests in flight to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        tracing::debug!(addr = %self.local_addr, "join endpoint stopped");
    }
}

impl Drop for JoinServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Shared {
    door: Door,
    on_offer: OfferHandler,
    limiter: Mutex<RateLimiter>,
    /// The follower page's GETs: their own bucket, so loading (or reloading) the page never
    /// spends the join's budget (PROTOCOL.md §9.7).
    page_limiter: Mutex<RateLimiter>,
    nonces: Mutex<Nonces>,
    pending: slots::Slots,
}

/// Starts the join endpoint on `bind` (the master's LAN address; port 0 picks a free port).
///
/// `door` decides who may join; each request whose proof holds and whom the door admits is
/// handed to `on_offer`, which returns the answer SDP (typically from
/// [`crate::transport::accept_offer`], handing the link to the node as `OfferIn::device_id`) or
/// a rejection; the server signs the answer and returns it.
pub async fn serve<F, Fut>(
    bind: SocketAddr,
    door: Door,
    on_offer: F,
) -> Result<JoinServer, SignalingError>
where
    F: Fn(OfferIn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, RejectReason>> + Send + 'static,
{
    serve_with_rate_limit(bind, door, RateLimit::default(), on_offer).await
}

/// [`serve`] with another rate limit: for benchmarks and demos where many followers join from
/// one address (loopback). Rates that are not positive finite numbers fall back to the default.
pub async fn serve_with_rate_limit<F, Fut>(
    bind: SocketAddr,
    door: Door,
    rate: RateLimit,
    on_offer: F,
) -> Result<JoinServer, SignalingError>
where
    F: Fn(OfferIn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, RejectReason>> + Send + 'static,
{
    let ok = |x: f64| x.is_finite() && x > 0.0;
    let rate = if ok(rate.per_sec) && ok(rate.burst) {
        rate
    } else {
        RateLimit::default()
    };
    let shared_source = rate.burst > RATE_BURST;
    let per_source = |cap: usize, total: usize| if shared_source { total } else { cap };
    let conn_limits = listener::ConnLimits {
        total: MAX_CONNECTIONS,
        per_source: per_source(MAX_CONNECTIONS_PER_SOURCE, MAX_CONNECTIONS),
        head_timeout: HEAD_TIMEOUT,
        lifetime: CONNECTION_LIFETIME,
    };
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| SignalingError::Unreachable(format!("cannot listen on {bind}: {e}")))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| SignalingError::Unreachable(e.to_string()))?;
    let shared = Arc::new(Shared {
        door,
        on_offer: Box::new(move |offer| Box::pin(on_offer(offer))),
        limiter: Mutex::new(RateLimiter::new(rate)),
        page_limiter: Mutex::new(RateLimiter::new(page::page_rate(rate))),
        // A burst of joins from one address (allowed by the rate limit) each holds a nonce.
        nonces: Mutex::new(Nonces::new(rate.burst as usize)),
        pending: slots::Slots::new(
            MAX_PENDING_ANSWERS,
            per_source(MAX_PENDING_ANSWERS_PER_SOURCE, MAX_PENDING_ANSWERS),
            PENDING_TIMEOUT,
        ),
    });
    let join_routes = [
        (START_PATH, post(join::start_handler)),
        (JOIN_PATH, post(join::join_handler)),
    ];
    let app = page::routes(Router::new(), join_routes).with_state(shared);
    // The follower page's files, gzipped before the first phone asks.
    tokio::task::spawn_blocking(page::prepare);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(listener::run(listener, app, conn_limits, stopped));
    tracing::info!(addr = %local_addr, "join endpoint listening");
    Ok(JoinServer {
        local_addr,
        stop: Some(stop),
        task: Some(task),
    })
}
