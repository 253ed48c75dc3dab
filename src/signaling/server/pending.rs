//! An answer's slot among the answers pending their link (PROTOCOL.md §9.3, limits), as the
//! application's callback sees it: a weak handle it may hold until the link opens.

use std::future::Future;
use std::sync::{Arc, Weak};

use super::slots::Slot;

/// An answer's slot among the endpoint's capped answers pending their link (PROTOCOL.md §9.3).
/// The server takes it before the application's callback runs and holds it while the callback
/// runs; to keep it until the link opens, the callback calls [`hold`](Self::hold) before it
/// returns. The slot is freed when no [`PendingHold`] is left, when it expires
/// ([`PENDING_TIMEOUT`](super::PENDING_TIMEOUT) after the request), or when a request from a
/// source holding fewer slots takes it while all are in use.
#[derive(Debug, Clone)]
pub struct PendingAnswer(pub(super) Weak<Slot>);

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
pub struct PendingHold(pub(super) Option<Arc<Slot>>);

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
