//! What can go wrong with discovery.

use std::time::Duration;

/// Errors of discovery.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The mDNS daemon could not start or refused a request.
    #[error("mDNS is unavailable: {0}")]
    Mdns(String),
    /// [`Discovery::new`](super::Discovery::new) was called outside a tokio runtime.
    #[error("discovery must be started inside a tokio runtime")]
    NoRuntime,
    /// The advert given to [`Discovery::advertise`](super::Discovery::advertise) cannot be
    /// published.
    #[error("cannot advertise this session: {0}")]
    InvalidAdvert(String),
    /// The text given to [`Discovery::find`](super::Discovery::find) cannot be a session code.
    #[error("{0:?} is not a session code (expected XXXX-XXXX)")]
    BadCode(String),
    /// No session with this code was seen in time.
    #[error("no session with code {code} was found on the network within {waited:?}")]
    NotFound {
        /// The normalised code looked for.
        code: String,
        /// How long it was looked for.
        waited: Duration,
    },
    /// The discovery actor has stopped (its daemon shut down).
    #[error("the discovery service has stopped")]
    Stopped,
}

impl DiscoveryError {
    /// The stable error code (PROTOCOL.md §8) for `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            DiscoveryError::Mdns(_) | DiscoveryError::Stopped => "network-unavailable",
            DiscoveryError::NotFound { .. } | DiscoveryError::BadCode(_) => "session-not-found",
            DiscoveryError::NoRuntime | DiscoveryError::InvalidAdvert(_) => "internal",
        }
    }
}
