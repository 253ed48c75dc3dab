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
//! Who may join is never decided here: the master's machine answers a
//! [`DoorQuery`](crate::session::DoorQuery) through the `door` callback, at the instant of each
//! request.
//!
//! Rejections (`{"error": "<reason>"}`) are not authenticated: a device on the LAN can always
//! deny service, but it can neither join nor pose as the master.
//!
//! PROTOCOL.md §9 is the normative description of the wire format.
//!
//! What lives where:
//! - [`wire`]: the JSON bodies, paths, version and limits of both round trips. Pure (no IO, no
//!   `native` feature), so the follower page's WebAssembly reads and writes the same bodies; the
//!   keys, proofs and MACs they carry are [`crate::auth`]'s, pure too.
//! - `server` (`server.rs` and `server/`): the endpoint — routes, checks, rate limits, nonces,
//!   pending answers, the listener and the follower page (`native`).
//! - `client.rs`: the follower's two round trips over HTTP ([`request_join`], `native`).
//! - `error.rs`: [`SignalingError`], the errors of both sides (`native`).

#[cfg(feature = "native")]
mod client;
#[cfg(feature = "native")]
mod error;
#[cfg(feature = "native")]
mod server;
pub mod wire;

#[cfg(feature = "native")]
pub use client::{request_join, VerifiedAnswer};
#[cfg(feature = "native")]
pub use error::SignalingError;
#[cfg(all(feature = "native", unix))]
pub use server::raise_fd_limit;
#[cfg(feature = "native")]
pub use server::{
    serve, serve_with_rate_limit, Door, DoorFuture, JoinServer, OfferIn, PendingAnswer,
    PendingHold, RateLimit, CONNECTION_LIFETIME, CONTENT_SECURITY_POLICY, HEAD_TIMEOUT,
    MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE, MAX_PENDING, MAX_PENDING_ANSWERS,
    MAX_PENDING_ANSWERS_PER_SOURCE, MAX_PENDING_PER_SOURCE, NONCE_TTL, PENDING_TIMEOUT,
    PENDING_WAIT, PREFLIGHT_MAX_AGE, RATE_BURST, RATE_PER_SEC,
};
pub use wire::{
    JoinAuth, JOIN_PATH, JOIN_VERSION, MAX_ANSWER, MAX_BODY, MAX_CODE_FIELD, MAX_OFFER, START_PATH,
};
