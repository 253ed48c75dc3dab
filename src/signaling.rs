//! The choir master's LAN join endpoint (HTTP, inside the master process) and its client.
//!
//! A follower POSTs its SDP offer to `/v1/join` on the master's LAN address, with its device id
//! and name and a proof that it knows the join secret; the master checks the request, hands the
//! offer to the application (which answers it with [`crate::transport::accept_offer`] and gives
//! the link to its node), and returns the answer SDP signed with the same secret. There is no
//! backend: when the master is gone there is nothing to join.
//!
//! Secrets never travel in clear (HTTP on a LAN is sniffable). Both sides derive a key from the
//! secret — the token, or the session code plus password — and exchange MACs:
//! - the follower sends `proof = HMAC-SHA256(key, offer_sdp)`: only a device knowing the secret
//!   can join;
//! - the master answers `mac = HMAC-SHA256(key, answer_sdp)`: only the real master can answer, and
//!   since the answer carries the master's DTLS fingerprint, the link that follows is bound to it.
//!   When the follower knows that fingerprint beforehand (from the QR [`JoinLink`]) it checks it
//!   too.
//!
//! Rejections (`{"error": "<reason>"}`) are not authenticated: a device on the LAN can always
//! deny service, but it can neither join nor pose as the master.
//!
//! PROTOCOL.md §9 is the normative description of the wire format.
//!
//! [`JoinLink`]: crate::invite::JoinLink

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

mod listener;
mod slots;

#[cfg(unix)]
pub use listener::raise_fd_limit;

use crate::protocol::{check_id, RejectReason, MAX_NAME_LEN};
use crate::session::{JoinCredentials, SessionCode};

/// The path of the join endpoint.
pub const JOIN_PATH: &str = "/v1/join";
/// Version of the join request (`"v"`); anything else is answered `version_mismatch`.
pub const JOIN_VERSION: u64 = 1;
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
    /// 5 requests per second, bursts of 10: plenty for a person's device, which joins once.
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
/// Client: connection and whole-exchange time limits. The master gathers candidates before it
/// answers (2 s by default), so the exchange allows well beyond that.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`JoinServer::shutdown`] waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
pub const MAX_PENDING_PER_SOURCE: usize = 4;
/// How long an answer may wait for its link, from the request: on a LAN a link opens within
/// milliseconds of the answer, and within 3 s even after two lost DTLS flights (retransmitted
/// after 1 s, then 2 s); a follower whose link did not open dials again. Longer only lets a
/// flood of answers that never open hold their slots.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request that finds no slot for its answer waits for one before it is refused
/// `busy`: followers joining at once get in as the first links open.
pub const PENDING_WAIT: Duration = Duration::from_secs(1);

const TOKEN_KEY_LABEL: &[u8] = b"lansync join token\0";
const CODE_KEY_LABEL: &[u8] = b"lansync join code\0";

type HmacSha256 = Hmac<Sha256>;

/// Who may join, as the join endpoint sees it. The host application shares it with the server
/// as `Arc<RwLock<JoinPolicy>>` and updates it as the session evolves (`ended`, `full`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinPolicy {
    /// The session id (for logs; not checked).
    pub session_id: String,
    /// The human session code, `XXXX-XXXX` (compared after normalisation).
    pub session_code: String,
    /// The session token (32 hex digits).
    pub token: String,
    /// The password a code join needs, if any.
    pub password: Option<String>,
    /// The session is over: every join is refused with `session_ended`.
    pub ended: bool,
    /// No room for another follower: joins of devices not in `members` are refused with
    /// `session_full`.
    pub full: bool,
    /// Device ids of the session's participants: they may always rejoin, full or not (the
    /// session machine applies the same rule).
    pub members: std::collections::BTreeSet<String>,
}

/// Which secret a join request proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinAuth {
    /// The session token.
    Token,
    /// The session code, plus the password when the session has one.
    Code,
}

/// A join request that passed every check, handed to the application's callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferIn {
    /// The follower's device id (1–64 bytes, identifier alphabet).
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
    /// Too many requests from this device; try again in a moment.
    #[error("too many join requests; try again in a moment")]
    RateLimited,
    /// The request was larger than the endpoint accepts.
    #[error("the join request is too large")]
    TooLarge,
    /// The master has too many answers waiting for their link; try again in a moment.
    #[error("the master is busy answering other joins; try again in a moment")]
    Busy,
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
    policy: Arc<RwLock<JoinPolicy>>,
    on_offer: OfferHandler,
    limiter: Mutex<RateLimiter>,
    pending: slots::Slots,
}

/// Starts the join endpoint on `bind` (the master's LAN address; port 0 picks a free port).
///
/// Each request that passes every check is handed to `on_offer`, which returns the answer SDP
/// (typically from [`crate::transport::accept_offer`], handing the link to the node) or a
/// rejection; the server signs the answer and returns it.
pub async fn serve<F, Fut>(
    bind: SocketAddr,
    policy: Arc<RwLock<JoinPolicy>>,
    on_offer: F,
) -> Result<JoinServer, SignalingError>
where
    F: Fn(OfferIn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, RejectReason>> + Send + 'static,
{
    serve_with_rate_limit(bind, policy, RateLimit::default(), on_offer).await
}

/// [`serve`] with another rate limit: for benchmarks and demos where many followers join from
/// one address (loopback). Rates that are not positive finite numbers fall back to the default.
///
/// Raising the burst above the default says that followers share one address, so the
/// per-address caps of connections and pending answers are lifted to the total ones; the
/// totals still hold, shared fairly between addresses.
pub async fn serve_with_rate_limit<F, Fut>(
    bind: SocketAddr,
    policy: Arc<RwLock<JoinPolicy>>,
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
        policy,
        on_offer: Box::new(move |offer| Box::pin(on_offer(offer))),
        limiter: Mutex::new(RateLimiter::new(rate)),
        pending: slots::Slots::new(
            MAX_PENDING_ANSWERS,
            per_source(MAX_PENDING_PER_SOURCE, MAX_PENDING_ANSWERS),
            PENDING_TIMEOUT,
        ),
    });
    let app = Router::new()
        .route(JOIN_PATH, post(join_handler))
        .with_state(shared);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(listener::run(listener, app, conn_limits, stopped));
    tracing::info!(addr = %local_addr, "join endpoint listening");
    Ok(JoinServer {
        local_addr,
        stop: Some(stop),
        task: Some(task),
    })
}

/// A join request on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct JoinRequest {
    v: u64,
    auth: JoinAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_code: Option<String>,
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
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, error, detail) = match self {
            Refusal::Reject(r) => (reject_status(r), reject_name(r), None),
            Refusal::BadRequest(d) => (StatusCode::BAD_REQUEST, "bad_request", Some(d)),
            Refusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            Refusal::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", None),
            Refusal::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy", None),
        };
        let body = Json(ErrorBody {
            error: error.to_string(),
            detail,
        });
        if status == StatusCode::TOO_MANY_REQUESTS || error == "busy" {
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
        RejectReason::InvalidToken | RejectReason::InvalidPassword => StatusCode::FORBIDDEN,
        RejectReason::SessionEnded => StatusCode::GONE,
        RejectReason::SessionFull => StatusCode::SERVICE_UNAVAILABLE,
        RejectReason::Unknown => StatusCode::FORBIDDEN,
    }
}

/// The snake_case wire name of a reason (as in JOIN_REJECT).
fn reject_name(r: RejectReason) -> &'static str {
    match r {
        RejectReason::InvalidToken => "invalid_token",
        RejectReason::InvalidPassword => "invalid_password",
        RejectReason::SessionEnded => "session_ended",
        RejectReason::VersionMismatch => "version_mismatch",
        RejectReason::SessionFull => "session_full",
        RejectReason::SessionNotFound => "session_not_found",
        RejectReason::Unknown => "join_rejected",
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

async fn handle_join(
    shared: &Shared,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Body,
) -> Result<JoinAnswer, Refusal> {
    // Cheapest checks first: a flood costs one map lookup per request.
    let allowed = shared
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(peer.ip(), Instant::now());
    if !allowed {
        return Err(Refusal::RateLimited);
    }
    let bytes = read_body(headers, body).await?;
    let req = parse_request(&bytes)?;

    // Decide under the lock, but never hold it across an await.
    let key = {
        let policy = shared.policy.read().unwrap_or_else(|e| e.into_inner());
        check_request(&policy, &req)?
    };

    let held = take_pending(shared, peer).await?;
    let offer = OfferIn {
        device_id: req.device_id,
        device_name: req.device_name,
        offer_sdp: req.offer,
        auth: req.auth,
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
    let mac = hex(&hmac_sha256(&key, answer.as_bytes()));
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

/// Parses a request: `v` is read alone first, so a later version's request is answered
/// `version_mismatch` whatever else it holds.
fn parse_request(bytes: &[u8]) -> Result<JoinRequest, Refusal> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: Option<serde_json::Value>,
    }
    let probe: VersionOnly = serde_json::from_slice(bytes)
        .map_err(|e| Refusal::BadRequest(format!("not a JSON object: {e}")))?;
    match probe.v.as_ref().and_then(serde_json::Value::as_u64) {
        Some(JOIN_VERSION) => {}
        Some(_) => return Err(Refusal::Reject(RejectReason::VersionMismatch)),
        None if probe.v.is_some() => return Err(Refusal::Reject(RejectReason::VersionMismatch)),
        None => return Err(Refusal::BadRequest("missing \"v\"".into())),
    }
    let mut req: JoinRequest =
        serde_json::from_slice(bytes).map_err(|e| Refusal::BadRequest(e.to_string()))?;
    check_id("device_id", &req.device_id, false).map_err(|e| Refusal::BadRequest(e.to_string()))?;
    if req.device_name.len() > MAX_NAME_LEN {
        return Err(Refusal::BadRequest(
            "device_name longer than 48 bytes".into(),
        ));
    }
    if req.device_name.chars().any(char::is_control) {
        req.device_name.retain(|c| !c.is_control());
    }
    if req.offer.is_empty() || req.offer.len() > MAX_OFFER {
        return Err(Refusal::BadRequest("offer empty or over 16 KiB".into()));
    }
    if req
        .session_code
        .as_ref()
        .is_some_and(|c| c.len() > MAX_CODE_FIELD)
    {
        return Err(Refusal::BadRequest(
            "session_code longer than 32 bytes".into(),
        ));
    }
    if req.proof.len() != 64 || unhex(&req.proof).is_none() {
        return Err(Refusal::BadRequest("proof must be 64 hex digits".into()));
    }
    Ok(req)
}

/// The policy checks, in the order PROTOCOL.md §9 gives. Returns the key to sign the answer.
fn check_request(policy: &JoinPolicy, req: &JoinRequest) -> Result<Vec<u8>, Refusal> {
    let (key, bad_proof) = match req.auth {
        // A master without a token (misconfigured) must not accept an empty one.
        JoinAuth::Token if policy.token.is_empty() => {
            return Err(Refusal::Reject(RejectReason::InvalidToken))
        }
        JoinAuth::Token => (token_key(&policy.token), RejectReason::InvalidToken),
        JoinAuth::Code => {
            let given = req
                .session_code
                .as_deref()
                .ok_or_else(|| Refusal::BadRequest("a code join needs session_code".into()))?;
            let ours = SessionCode::parse(&policy.session_code);
            let matches = match (SessionCode::parse(given), &ours) {
                (Some(g), Some(o)) => g == *o,
                _ => false,
            };
            let Some(ours) = ours.filter(|_| matches) else {
                return Err(Refusal::Reject(RejectReason::SessionNotFound));
            };
            let bad = if policy.password.is_some() {
                RejectReason::InvalidPassword
            } else {
                RejectReason::InvalidToken
            };
            (
                code_key(ours.as_str(), policy.password.as_deref().unwrap_or("")),
                bad,
            )
        }
    };
    let proof = unhex(&req.proof).unwrap_or_default();
    let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(req.offer.as_bytes());
    if mac.verify_slice(&proof).is_err() {
        return Err(Refusal::Reject(bad_proof));
    }
    if policy.ended {
        return Err(Refusal::Reject(RejectReason::SessionEnded));
    }
    if policy.full && !policy.members.contains(&req.device_id) {
        return Err(Refusal::Reject(RejectReason::SessionFull));
    }
    Ok(key)
}

/// Asks the master at `addr` to answer `offer_sdp`, proving the credentials (the token when
/// `creds` has one, else the session code and password), and returns the answer SDP once its
/// MAC — and, when `expected_fingerprint` is given (`"sha-256 AB:CD:…"`, or bare hex), its DTLS
/// fingerprint — show it comes from the real master.
pub async fn request_join(
    addr: SocketAddr,
    creds: &JoinCredentials,
    expected_fingerprint: Option<&str>,
    device_id: &str,
    device_name: &str,
    offer_sdp: &str,
) -> Result<String, SignalingError> {
    let (auth, session_code, key) = match (&creds.token, &creds.session_code) {
        (Some(token), _) => (JoinAuth::Token, None, token_key(token)),
        (None, Some(code)) => {
            let code = SessionCode::parse(code).ok_or_else(|| {
                SignalingError::BadRequest(format!("{code:?} is not a session code"))
            })?;
            let key = code_key(code.as_str(), creds.password.as_deref().unwrap_or(""));
            (JoinAuth::Code, Some(code.as_str().to_string()), key)
        }
        (None, None) => {
            return Err(SignalingError::BadRequest(
                "no token and no session code to join with".into(),
            ))
        }
    };
    let request = JoinRequest {
        v: JOIN_VERSION,
        auth,
        session_code,
        device_id: device_id.to_string(),
        device_name: device_name.to_string(),
        offer: offer_sdp.to_string(),
        proof: hex(&hmac_sha256(&key, offer_sdp.as_bytes())),
    };

    let client = reqwest::Client::builder()
        // The master is on the LAN: a configured HTTP proxy must not see (or break) the join.
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| SignalingError::Unreachable(e.to_string()))?;
    let url = format!("http://{addr}{JOIN_PATH}");
    let mut response = client
        .post(&url)
        .json(&request)
        .send()
        .await
        .map_err(|e| SignalingError::Unreachable(error_chain(&e)))?;
    let status = response.status();

    // Read at most a little more than any legitimate answer: the peer is untrusted.
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| SignalingError::Unreachable(error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(SignalingError::Protocol("response too large".into()));
        }
        body.extend_from_slice(&chunk);
    }

    if !status.is_success() {
        let Ok(err) = serde_json::from_slice::<ErrorBody>(&body) else {
            return Err(SignalingError::Protocol(format!(
                "HTTP {status} without a join error"
            )));
        };
        return Err(match err.error.as_str() {
            "rate_limited" => SignalingError::RateLimited,
            "too_large" => SignalingError::TooLarge,
            "busy" => SignalingError::Busy,
            "bad_request" => SignalingError::BadRequest(err.detail.unwrap_or_default()),
            other => SignalingError::Rejected(
                serde_json::from_value(serde_json::Value::String(other.to_string()))
                    .unwrap_or(RejectReason::Unknown),
            ),
        });
    }
    let answer: JoinAnswer = serde_json::from_slice(&body)
        .map_err(|e| SignalingError::Protocol(format!("bad answer: {e}")))?;
    if answer.answer.len() > MAX_ANSWER {
        return Err(SignalingError::Protocol("answer SDP too large".into()));
    }
    let mac = unhex(&answer.mac).ok_or(SignalingError::BadBinding)?;
    let mut check = HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length");
    check.update(answer.answer.as_bytes());
    if check.verify_slice(&mac).is_err() {
        tracing::warn!(%addr, "join answer has a bad MAC: not the session's master");
        return Err(SignalingError::BadBinding);
    }
    if let Some(expected) = expected_fingerprint {
        if !fingerprint_matches(&answer.answer, expected) {
            tracing::warn!(%addr, "join answer has another DTLS fingerprint than expected");
            return Err(SignalingError::BadBinding);
        }
    }
    Ok(answer.answer)
}

/// `SHA-256("lansync join token\0" || token)`.
fn token_key(token: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(TOKEN_KEY_LABEL);
    h.update(token.as_bytes());
    h.finalize().to_vec()
}

/// `SHA-256("lansync join code\0" || code || "\0" || password)`, the code normalised.
fn code_key(code: &str, password: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(CODE_KEY_LABEL);
    h.update(code.as_bytes());
    h.update(b"\0");
    h.update(password.as_bytes());
    h.finalize().to_vec()
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Whether every `a=fingerprint` line of `sdp` (there must be one) names `expected`.
fn fingerprint_matches(sdp: &str, expected: &str) -> bool {
    let Some(want) = normalise_fingerprint(expected) else {
        return false;
    };
    let mut found = false;
    for line in sdp.lines() {
        if let Some(value) = line.trim_end_matches('\r').strip_prefix("a=fingerprint:") {
            if normalise_fingerprint(value).as_ref() != Some(&want) {
                return false;
            }
            found = true;
        }
    }
    found
}

/// `("sha-256", "ABCD…")` from `"sha-256 AB:CD:…"`; bare hex is taken as SHA-256.
fn normalise_fingerprint(text: &str) -> Option<(String, String)> {
    let mut parts = text.split_whitespace();
    let first = parts.next()?;
    let (alg, value) = match parts.next() {
        Some(value) => (first.to_ascii_lowercase(), value),
        None => ("sha-256".to_string(), first),
    };
    if parts.next().is_some() {
        return None;
    }
    let hex: String = value
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (!hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some((alg, hex))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// The error and its sources in one line (reqwest's own message hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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
    fn keys_follow_the_documented_derivation() {
        let mut h = Sha256::new();
        h.update(b"lansync join token\0abc");
        assert_eq!(token_key("abc"), h.finalize().to_vec());
        let mut h = Sha256::new();
        h.update(b"lansync join code\0ABCD-EFGH\0pw");
        assert_eq!(code_key("ABCD-EFGH", "pw"), h.finalize().to_vec());
        assert_ne!(code_key("ABCD-EFGH", ""), code_key("ABCD-EFGH", "pw"));
        // The example vectors of PROTOCOL.md §9.2.
        let key = token_key("00112233445566778899aabbccddeeff");
        assert_eq!(
            hex(&key),
            "c8f04fca5ce438421a0afbd5d86b97e6e2d913f94f88cef4a09a4c86da13b266"
        );
        assert_eq!(
            hex(&hmac_sha256(&key, b"v=0\r\n")),
            "414696e2b9bd4e0088523fd567e156a9f1cb6325174455996f8726416f88bf6d"
        );
        let key = code_key("ABCD-EFGH", "sopranos");
        assert_eq!(
            hex(&key),
            "787afa928ac81b7cc21fdb166566366114d7e04931a44993da74b65414e8384f"
        );
        assert_eq!(
            hex(&hmac_sha256(&key, b"v=0\r\n")),
            "7ceaa55949f52ad95333c8c83d4fe5b1c641a00366d9b9e1a2e24d176c09bcfa"
        );
    }

    #[test]
    fn hex_round_trip_and_junk() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }

    #[test]
    fn fingerprints_compare_normalised() {
        let sdp = "v=0\r\na=fingerprint:sha-256 AB:CD:EF\r\nm=application\r\na=fingerprint:sha-256 ab:cd:ef\r\n";
        assert!(fingerprint_matches(sdp, "sha-256 AB:CD:EF"));
        assert!(fingerprint_matches(sdp, "abcdef"));
        assert!(!fingerprint_matches(sdp, "sha-256 AB:CD:EE"));
        assert!(!fingerprint_matches(sdp, "sha-1 AB:CD:EF"));
        assert!(!fingerprint_matches("v=0\r\n", "sha-256 AB:CD:EF"));
        let mixed = "a=fingerprint:sha-256 AB:CD:EF\na=fingerprint:sha-256 00:00:00\n";
        assert!(!fingerprint_matches(mixed, "sha-256 AB:CD:EF"));
    }

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
    fn parse_checks_version_first_and_fields() {
        let ok = |v: serde_json::Value| parse_request(v.to_string().as_bytes());
        let base = serde_json::json!({
            "v": 1, "auth": "token", "device_id": "d1", "device_name": "Alto 2",
            "offer": "v=0\r\n", "proof": "00".repeat(32)
        });
        assert!(ok(base.clone()).is_ok());
        let mut v2 = base.clone();
        v2["v"] = 2.into();
        v2["auth"] = "future".into();
        assert!(matches!(
            ok(v2),
            Err(Refusal::Reject(RejectReason::VersionMismatch))
        ));
        for (field, value) in [
            ("device_id", serde_json::Value::from("x".repeat(65))),
            ("device_id", "bad id".into()),
            ("device_name", "n".repeat(49).into()),
            ("offer", "o".repeat(MAX_OFFER + 1).into()),
            ("proof", "zz".into()),
            ("auth", "magic".into()),
        ] {
            let mut req = base.clone();
            req[field] = value;
            assert!(
                matches!(ok(req), Err(Refusal::BadRequest(_))),
                "{field} accepted"
            );
        }
        assert!(matches!(
            parse_request(b"{nope"),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(parse_request(b"[]"), Err(Refusal::BadRequest(_))));
    }
}
