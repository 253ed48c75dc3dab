//! What can go wrong with a join, on either side of the endpoint.

use crate::protocol::RejectReason;

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
