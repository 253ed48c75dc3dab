//! The choir master's LAN join endpoint (HTTP, inside the master process) and its client.
//!
//! A join takes two round trips (PROTOCOL.md §9):
//! 1. `POST /v1/join/start` names how the follower authenticates (session token, member secret,
//!    or session code — then with the first SPAKE2 message) and its device id; the master
//!    answers a fresh nonce (and its SPAKE2 message).
//! 2. `POST /v1/join` carries the SDP offer with a proof, an HMAC over the nonce, the device id
//!    and the offer under the join key ([`crate::auth`]). The master checks the proof, asks the
//!    session core whether the device is admitted, hands the offer to the application (which
//!    answers it with [`crate::transport::accept_offer`] and gives the link to its node, as the
//!    device id it was admitted as), and returns the answer SDP with a MAC under the same key.
//!
//! Each nonce serves one join request within 30 s, so a captured request cannot be replayed. The
//! answer's MAC shows the follower that whoever answered holds the key — the real master — and
//! since the answer carries the master's DTLS fingerprint, the link that follows is bound to it.
//! Who may join is never decided here: the master's machine answers a [`DoorQuery`] through the
//! `door` callback, at the instant of each request.
//!
//! Rejections (`{"error": "<reason>"}`) are not authenticated: a device on the LAN can always
//! deny service, but it can neither join nor pose as the master.
//!
//! PROTOCOL.md §9 is the normative description of the wire format.

mod client;
mod listener;
mod nonces;
mod page;
mod slots;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::auth::{self, hex, unhex, Key, MAC_LEN, NONCE_LEN, PAKE_MSG_LEN};
use crate::protocol::{check_id, RejectReason, MAX_NAME_LEN};
use crate::session::{DoorAuth, DoorQuery, DoorReply, DoorSecret};

pub use client::{request_join, VerifiedAnswer};
#[cfg(unix)]
pub use listener::raise_fd_limit;
use nonces::{Nonce, Nonces, Pending};
pub use nonces::{MAX_PENDING, MAX_PENDING_PER_SOURCE, NONCE_TTL};
pub use page::{CONTENT_SECURITY_POLICY, PREFLIGHT_MAX_AGE};

/// The path of the first round trip: nonce (and PAKE) exchange.
pub const START_PATH: &str = "/v1/join/start";
/// The path of the second round trip: offer, proof, answer.
pub const JOIN_PATH: &str = "/v1/join";
/// Version of the join requests (`"v"`); anything else is answered `version_mismatch`.
pub const JOIN_VERSION: u64 = 2;
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
/// Largest request body, in bytes; larger ones are answered `too_large` without being read.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest offer SDP, in bytes.
pub const MAX_OFFER: usize = 16 * 1024;
/// Largest answer SDP the client accepts (an answer is about the size of an offer).
pub const MAX_ANSWER: usize = 16 * 1024;
/// Largest session code field, in bytes (PROTOCOL.md §3).
pub const MAX_CODE_FIELD: usize = 32;
/// Requests per second each source address may make, sustained (default of [`RateLimit`]).
pub const RATE_PER_SEC: f64 = 5.0;
/// Requests each source address may make in a burst (default of [`RateLimit`]).
pub const RATE_BURST: f64 = 10.0;

/// The per-source-address token bucket of the join endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (sustained requests per second).
    pub per_sec: f64,
    /// Bucket size (requests in a burst).
    pub burst: f64,
}

impl Default for RateLimit {
    /// 5 requests per second, bursts of 10: plenty for a person's device, which joins once
    /// (two requests).
    fn default() -> Self {
        RateLimit {
            per_sec: RATE_PER_SEC,
            burst: RATE_BURST,
        }
    }
}

/// Distinct source addresses tracked by the rate limiter; beyond this, idle ones are forgotten.
const MAX_TRACKED_SOURCES: usize = 4096;
/// How long a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// After refusing an oversized body, how much of it (and for how long) is read and thrown away
/// so the connection closes cleanly: closing a socket with unread data makes the kernel send a
/// reset, which can destroy our `too_large` answer before the client reads it.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long [`JoinServer::shutdown`] waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Which secret a join proves (the start request's `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinAuth {
    /// The session token (QR join link).
    Token,
    /// The session code and password, through SPAKE2.
    Code,
    /// The member secret the master gave this device at its first join.
    Member,
}

impl JoinAuth {
    fn door(self) -> DoorAuth {
        match self {
            JoinAuth::Token => DoorAuth::Token,
            JoinAuth::Code => DoorAuth::Code,
            JoinAuth::Member => DoorAuth::Member,
        }
    }
}

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

/// An answer's slot among the endpoint's capped answers pending their link (PROTOCOL.md §9.3).
/// The server takes it before the application's callback runs and holds it while the callback
/// runs; to keep it until the link opens, the callback calls [`hold`](Self::hold) before it
/// returns. The slot is freed when no [`PendingHold`] is left, when it expires
/// ([`PENDING_TIMEOUT`] after the request), or when a request from a source holding fewer slots
/// takes it while all are in use.
#[derive(Debug, Clone)]
pub struct PendingAnswer(Weak<slots::Slot>);

impl PendingAnswer {
    /// Keeps the slot (if it is still this answer's) until the returned hold is dropped.
    pub fn hold(&self) -> PendingHold {
        PendingHold(self.0.upgrade())
    }
}

impl PartialEq for PendingAnswer {
    /// The same slot.
    fn eq(&self, other: &Self) -> bool {
        Weak::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for PendingAnswer {}

/// A hold on an answer's slot ([`PendingAnswer::hold`]); dropping it lets the slot go.
#[derive(Debug)]
pub struct PendingHold(Option<Arc<slots::Slot>>);

impl PendingHold {
    /// Runs `opening` (the link's opening) while holding the slot; `None` when the slot expired
    /// or was taken first (or was already gone): the application then drops the link.
    pub async fn run<F: Future>(self, opening: F) -> Option<F::Output> {
        let slot = self.0?;
        let deadline = tokio::time::Instant::from_std(slot.expires());
        tokio::select! {
            out = opening => Some(out),
            _ = slot.evicted() => None,
            _ = tokio::time::sleep_until(deadline) => None,
        }
    }
}

/// Errors of the join endpoint and its client.
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    /// The master refused the join.
    #[error("join rejected: {}", .0.code())]
    Rejected(RejectReason),
    /// Too many requests from this device (or pending joins); try again in a moment.
    #[error("too many join requests; try again in a moment")]
    RateLimited,
    /// The master has too many answers or starts waiting; try again in a moment.
    #[error("the master is busy answering other joins; try again in a moment")]
    Busy,
    /// The nonce was used, expired, or never issued: start again.
    #[error("the join took too long or was replayed; start again")]
    StaleNonce,
    /// The request was larger than the endpoint accepts.
    #[error("the join request is too large")]
    TooLarge,
    /// The request was malformed (or, on the client, could not be made from what was given).
    #[error("bad join request: {0}")]
    BadRequest(String),
    /// The answer's MAC or DTLS fingerprint is wrong: whoever answered is not the real master.
    #[error("the answer is not from the session's master (signature or fingerprint mismatch)")]
    BadBinding,
    /// The endpoint cannot be reached (client), or cannot listen on the address (server).
    #[error("join endpoint unreachable: {0}")]
    Unreachable(String),
    /// The other side spoke something other than this protocol.
    #[error("join protocol error: {0}")]
    Protocol(String),
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
        (START_PATH, post(start_handler)),
        (JOIN_PATH, post(join_handler)),
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

/// The first request on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct StartRequest {
    v: u64,
    auth: JoinAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_code: Option<String>,
    device_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pake: Option<String>,
}

/// The answer to the first request.
#[derive(Debug, Serialize, Deserialize)]
struct StartReply {
    nonce: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pake: Option<String>,
}

/// The second request on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct JoinRequest {
    v: u64,
    nonce: String,
    device_id: String,
    #[serde(default)]
    device_name: String,
    offer: String,
    proof: String,
}

/// A successful answer on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct JoinAnswer {
    answer: String,
    mac: String,
}

/// A refusal on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

/// Why the server refuses a request.
#[derive(Debug)]
enum Refusal {
    Reject(RejectReason),
    BadRequest(String),
    TooLarge,
    RateLimited,
    Busy,
    StaleNonce,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let retry = matches!(self, Refusal::RateLimited | Refusal::Busy);
        let (status, error, detail) = match self {
            Refusal::Reject(r) => (reject_status(r), reject_name(r), None),
            Refusal::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad_request".into(), Some(d)),
            Refusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large".into(), None),
            Refusal::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into(), None),
            Refusal::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy".into(), None),
            Refusal::StaleNonce => (StatusCode::FORBIDDEN, "stale_nonce".into(), None),
        };
        let body = Json(ErrorBody { error, detail });
        if retry {
            (status, [(header::RETRY_AFTER, "1")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

fn reject_status(r: RejectReason) -> StatusCode {
    match r {
        RejectReason::VersionMismatch => StatusCode::BAD_REQUEST,
        RejectReason::SessionNotFound => StatusCode::NOT_FOUND,
        RejectReason::SessionEnded => StatusCode::GONE,
        RejectReason::SessionFull => StatusCode::SERVICE_UNAVAILABLE,
        // Wrong proofs, a device id held by another member, and reasons without a status.
        _ => StatusCode::FORBIDDEN,
    }
}

/// The snake_case wire name of a reason (as in JOIN_REJECT).
fn reject_name(r: RejectReason) -> String {
    match serde_json::to_value(r) {
        Ok(serde_json::Value::String(name)) if r != RejectReason::Unknown => name,
        _ => "join_rejected".into(),
    }
}

async fn start_handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle_start(&shared, peer, &headers, body).await {
        Ok(reply) => Json(reply).into_response(),
        Err(refusal) => {
            tracing::debug!(%peer, ?refusal, "join start refused");
            refusal.into_response()
        }
    }
}

async fn join_handler(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle_join(&shared, peer, &headers, body).await {
        Ok(answer) => Json(answer).into_response(),
        Err(refusal) => {
            tracing::debug!(%peer, ?refusal, "join refused");
            refusal.into_response()
        }
    }
}

/// Cheapest check first: a flood costs one map lookup per request.
fn rate_check(shared: &Shared, peer: SocketAddr) -> Result<(), Refusal> {
    bucket_check(&shared.limiter, peer)
}

fn bucket_check(limiter: &Mutex<RateLimiter>, peer: SocketAddr) -> Result<(), Refusal> {
    let allowed = limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(peer.ip(), Instant::now());
    if allowed {
        Ok(())
    } else {
        Err(Refusal::RateLimited)
    }
}

fn random32() -> Result<[u8; 32], Refusal> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        tracing::error!(%e, "no random source");
        Refusal::Reject(RejectReason::Unknown)
    })?;
    Ok(bytes)
}

async fn handle_start(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<StartReply, Refusal> {
    rate_check(shared, peer)?;
    let bytes = read_body(headers, body).await?;
    let req = parse_start(&bytes)?;
    let query = DoorQuery {
        auth: req.auth.door(),
        session_code: req.session_code.clone(),
        device_id: req.device_id.clone(),
    };
    let door = (shared.door)(query).await;
    let (key, pake) = match (req.auth, &door.secret) {
        (JoinAuth::Code, Some(DoorSecret::Code { code, password })) => {
            let msg = req.pake.as_deref().and_then(unhex).unwrap_or_default();
            let (key, reply) = auth::pake_master(code, password, &msg, random32()?)
                .ok_or_else(|| Refusal::BadRequest("pake is not a SPAKE2 message".into()))?;
            (Some(key), Some(hex(&reply)))
        }
        // A code that is not this session's: nothing to run the PAKE with (§9.3).
        (JoinAuth::Code, _) => return Err(Refusal::Reject(RejectReason::SessionNotFound)),
        (JoinAuth::Token, Some(DoorSecret::Token(token))) if !token.is_empty() => {
            (Some(auth::token_key(token)), None)
        }
        (JoinAuth::Member, Some(DoorSecret::Member(secret))) if !secret.is_empty() => {
            (Some(auth::member_key(&req.device_id, secret)), None)
        }
        // Nothing provable: the join request will be refused as a wrong proof, so that an
        // unknown device id looks like a wrong secret.
        _ => (None, None),
    };
    let nonce = random32()?;
    let now = Instant::now();
    let pending = Pending {
        auth: req.auth,
        device_id: req.device_id,
        secret: door.secret,
        key,
        source: peer.ip(),
        expires: now + NONCE_TTL,
    };
    let kept = shared
        .nonces
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(nonce, pending, now);
    if !kept {
        return Err(Refusal::Busy);
    }
    Ok(StartReply {
        nonce: hex(&nonce),
        pake,
    })
}

async fn handle_join(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<JoinAnswer, Refusal> {
    rate_check(shared, peer)?;
    let bytes = read_body(headers, body).await?;
    let req = parse_join(&bytes)?;
    let nonce: Nonce = unhex(&req.nonce)
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| Refusal::BadRequest("nonce must be 64 hex digits".into()))?;
    let pending = shared
        .nonces
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take(&nonce, Instant::now())
        .ok_or(Refusal::StaleNonce)?;
    let key = check_proof(&pending, &nonce, &req)?;

    // The proof held: ask again, now, whether this device is admitted (§9.3's order).
    let query = DoorQuery {
        auth: pending.auth.door(),
        session_code: None,
        device_id: pending.device_id.clone(),
    };
    let query = match &pending.secret {
        Some(DoorSecret::Code { code, .. }) => DoorQuery {
            session_code: Some(code.clone()),
            ..query
        },
        _ => query,
    };
    let door = (shared.door)(query).await;
    if door.secret != pending.secret {
        // The secret changed since the start (a member left, the session restarted).
        return Err(Refusal::Reject(wrong_proof(&pending)));
    }
    door.verdict.map_err(Refusal::Reject)?;

    let held = take_pending(shared, peer).await?;
    let offer = OfferIn {
        device_id: pending.device_id,
        device_name: req.device_name,
        offer_sdp: req.offer,
        auth: pending.auth,
        pending: PendingAnswer(held.0.as_ref().map_or_else(Weak::new, Arc::downgrade)),
    };
    let device_id = offer.device_id.clone();
    let answer = held
        .run((shared.on_offer)(offer))
        .await
        .ok_or(Refusal::Busy)?
        .map_err(|r| {
            tracing::info!(%peer, device_id = %device_id, reason = r.code(), "join rejected by the application");
            Refusal::Reject(r)
        })?;
    let mac = hex(&auth::answer_mac(&key, &nonce, &answer));
    tracing::info!(%peer, device_id = %device_id, "join answered");
    Ok(JoinAnswer { answer, mac })
}

/// A slot among the answers pending their link, or `busy` (PROTOCOL.md §9.3).
async fn take_pending(shared: &Shared, peer: SocketAddr) -> Result<PendingHold, Refusal> {
    match shared.pending.take_within(peer.ip(), PENDING_WAIT).await {
        Some(slot) => Ok(PendingHold(Some(Arc::new(slot)))),
        None => {
            tracing::info!(%peer, "join refused: too many answers pending their link");
            Err(Refusal::Busy)
        }
    }
}

/// The refusal for a proof that does not hold: `invalid_password` when the session has a
/// password and the join is by code, else `invalid_token`.
fn wrong_proof(pending: &Pending) -> RejectReason {
    match &pending.secret {
        Some(DoorSecret::Code { password, .. }) if !password.is_empty() => {
            RejectReason::InvalidPassword
        }
        _ => RejectReason::InvalidToken,
    }
}

/// The proof must be for the device id the start named, under the key the start set up.
fn check_proof(pending: &Pending, nonce: &Nonce, req: &JoinRequest) -> Result<Key, Refusal> {
    let proof = unhex(&req.proof).unwrap_or_default();
    match pending.key {
        Some(key)
            if req.device_id == pending.device_id
                && auth::verify_proof(&key, nonce, &req.device_id, &req.offer, &proof) =>
        {
            Ok(key)
        }
        _ => Err(Refusal::Reject(wrong_proof(pending))),
    }
}

/// Reads the body, refusing anything over [`MAX_BODY`] as soon as that is known: from
/// `Content-Length` before reading anything, else once the bytes read exceed it.
async fn read_body(headers: &HeaderMap, mut body: Body) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        drain_in_background(body);
        return Err(Refusal::TooLarge);
    }
    let read = async {
        let mut buf = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|e| Refusal::BadRequest(format!("body: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > MAX_BODY {
                    return Ok(None);
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(Some(buf))
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(Refusal::BadRequest("body took too long to arrive".into())),
        Ok(Err(refusal)) => Err(refusal),
        Ok(Ok(Some(buf))) => Ok(Bytes::from(buf)),
        Ok(Ok(None)) => {
            drain_in_background(body);
            Err(Refusal::TooLarge)
        }
    }
}

/// Reads and discards (a bounded amount of) a refused body while the answer goes out.
fn drain_in_background(mut body: Body) {
    tokio::spawn(async move {
        let drain = async {
            let mut seen = 0usize;
            while seen < DRAIN_LIMIT {
                match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                    Some(Ok(frame)) => {
                        seen += frame.data_ref().map_or(0, |d| d.len());
                    }
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    });
}

/// Reads `v` alone first, so a later version's request is answered `version_mismatch` whatever
/// else it holds.
fn check_version(bytes: &[u8]) -> Result<(), Refusal> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: Option<serde_json::Value>,
    }
    let probe: VersionOnly = serde_json::from_slice(bytes)
        .map_err(|e| Refusal::BadRequest(format!("not a JSON object: {e}")))?;
    match probe.v.as_ref().and_then(serde_json::Value::as_u64) {
        Some(JOIN_VERSION) => Ok(()),
        Some(_) => Err(Refusal::Reject(RejectReason::VersionMismatch)),
        None if probe.v.is_some() => Err(Refusal::Reject(RejectReason::VersionMismatch)),
        None => Err(Refusal::BadRequest("missing \"v\"".into())),
    }
}

fn bad(e: impl std::fmt::Display) -> Refusal {
    Refusal::BadRequest(e.to_string())
}

/// Parses and checks a start request (PROTOCOL.md §9.1).
fn parse_start(bytes: &[u8]) -> Result<StartRequest, Refusal> {
    check_version(bytes)?;
    let mut req: StartRequest = serde_json::from_slice(bytes).map_err(bad)?;
    check_id("device_id", &req.device_id, false).map_err(bad)?;
    if req.auth != JoinAuth::Code {
        // Ignored for the other kinds.
        req.session_code = None;
        req.pake = None;
        return Ok(req);
    }
    match &req.session_code {
        None => return Err(bad("a code join needs session_code")),
        Some(c) if c.len() > MAX_CODE_FIELD => return Err(bad("session_code over 32 bytes")),
        Some(_) => {}
    }
    let pake_ok = req
        .pake
        .as_deref()
        .is_some_and(|p| p.len() == 2 * PAKE_MSG_LEN && unhex(p).is_some());
    if !pake_ok {
        return Err(bad("a code join needs pake, 66 hex digits"));
    }
    Ok(req)
}

/// Parses and checks a join request (PROTOCOL.md §9.1).
fn parse_join(bytes: &[u8]) -> Result<JoinRequest, Refusal> {
    check_version(bytes)?;
    let mut req: JoinRequest = serde_json::from_slice(bytes).map_err(bad)?;
    if req.nonce.len() != 2 * NONCE_LEN || unhex(&req.nonce).is_none() {
        return Err(bad("nonce must be 64 hex digits"));
    }
    check_id("device_id", &req.device_id, false).map_err(bad)?;
    if req.device_name.len() > MAX_NAME_LEN {
        return Err(bad("device_name longer than 48 bytes"));
    }
    if req.device_name.chars().any(char::is_control) {
        req.device_name.retain(|c| !c.is_control());
    }
    if req.offer.is_empty() || req.offer.len() > MAX_OFFER {
        return Err(bad("offer empty or over 16 KiB"));
    }
    if req.proof.len() != 2 * MAC_LEN || unhex(&req.proof).is_none() {
        return Err(bad("proof must be 64 hex digits"));
    }
    Ok(req)
}

/// A token bucket per source address.
#[derive(Debug)]
struct RateLimiter {
    rate: RateLimit,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    fn new(rate: RateLimit) -> Self {
        RateLimiter {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `ip` if it has one.
    fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = self.rate;
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_TRACKED_SOURCES {
            // Forget sources whose bucket has refilled: they are idle.
            self.buckets
                .retain(|_, b| refill(*b, now, rate).tokens < rate.burst);
            if self.buckets.len() >= MAX_TRACKED_SOURCES {
                return false;
            }
        }
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        *bucket = refill(*bucket, now, rate);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refill(b: Bucket, now: Instant, rate: RateLimit) -> Bucket {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    Bucket {
        tokens: (b.tokens + elapsed * rate.per_sec).min(rate.burst),
        at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut limiter = RateLimiter::new(RateLimit::default());
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let t0 = Instant::now();
        let allowed = (0..20).filter(|_| limiter.allow(ip, t0)).count();
        assert_eq!(allowed, RATE_BURST as usize);
        assert!(!limiter.allow(ip, t0 + Duration::from_millis(100)));
        assert!(limiter.allow(ip, t0 + Duration::from_millis(250)));
        // Another source is not affected.
        assert!(limiter.allow("10.0.0.10".parse().unwrap(), t0));
    }

    #[test]
    fn reasons_have_their_wire_names() {
        assert_eq!(
            reject_name(RejectReason::InvalidPassword),
            "invalid_password"
        );
        assert_eq!(
            reject_name(RejectReason::SessionNotFound),
            "session_not_found"
        );
        assert_eq!(reject_name(RejectReason::Unknown), "join_rejected");
        assert_eq!(
            reject_status(RejectReason::InvalidToken),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn parse_start_checks_version_first_and_fields() {
        let ok = |v: serde_json::Value| parse_start(v.to_string().as_bytes());
        let base = serde_json::json!({
            "v": 2, "auth": "code", "session_code": "abcd efgh", "device_id": "d1",
            "pake": "41".repeat(PAKE_MSG_LEN)
        });
        assert!(ok(base.clone()).is_ok());
        let mut v1 = base.clone();
        v1["v"] = 1.into();
        v1["auth"] = "future".into();
        assert!(matches!(
            ok(v1),
            Err(Refusal::Reject(RejectReason::VersionMismatch))
        ));
        for (field, value) in [
            ("device_id", serde_json::Value::from("x".repeat(65))),
            ("device_id", "bad id".into()),
            ("session_code", "c".repeat(33).into()),
            ("session_code", serde_json::Value::Null),
            ("pake", "41".repeat(PAKE_MSG_LEN + 1).into()),
            ("pake", "zz".repeat(PAKE_MSG_LEN).into()),
            ("pake", serde_json::Value::Null),
            ("auth", "magic".into()),
        ] {
            let mut req = base.clone();
            req[field] = value;
            assert!(
                matches!(ok(req), Err(Refusal::BadRequest(_))),
                "{field} accepted"
            );
        }
        let token = serde_json::json!({"v": 2, "auth": "token", "device_id": "d1"});
        assert!(ok(token).is_ok());
        assert!(matches!(parse_start(b"{nope"), Err(Refusal::BadRequest(_))));
        assert!(matches!(parse_start(b"[]"), Err(Refusal::BadRequest(_))));
    }

    #[test]
    fn parse_join_checks_fields() {
        let ok = |v: serde_json::Value| parse_join(v.to_string().as_bytes());
        let base = serde_json::json!({
            "v": 2, "nonce": "00".repeat(32), "device_id": "d1", "device_name": "Alto\u{7} 2",
            "offer": "v=0\r\n", "proof": "00".repeat(32)
        });
        assert_eq!(ok(base.clone()).unwrap().device_name, "Alto 2");
        for (field, value) in [
            ("nonce", serde_json::Value::from("00".repeat(31))),
            ("nonce", "zz".repeat(32).into()),
            ("device_id", "bad id".into()),
            ("device_name", "n".repeat(49).into()),
            ("offer", "".into()),
            ("offer", "o".repeat(MAX_OFFER + 1).into()),
            ("proof", "zz".into()),
        ] {
            let mut req = base.clone();
            req[field] = value;
            assert!(
                matches!(ok(req), Err(Refusal::BadRequest(_))),
                "{field} accepted"
            );
        }
        let mut v3 = base.clone();
        v3["v"] = 3.into();
        assert!(matches!(
            ok(v3),
            Err(Refusal::Reject(RejectReason::VersionMismatch))
        ));
    }
}
