//! A link as the file service sends on it.

use crate::node::Clock;
use crate::protocol::{Envelope, Message};
use crate::session::Time;
use crate::transport::LinkSender;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A link as the files side uses it: its sender and the envelope fields transfer messages
/// carry. Transfer messages have their own `seq` counter (PROTOCOL.md §2): the machine routes
/// them out before any role logic, so the roles' per-link order checks never see them.
#[derive(Clone)]
pub(crate) struct LinkOut {
    pub(super) sender: LinkSender,
    pub(super) session_id: Arc<str>,
    pub(super) device_id: Arc<str>,
    pub(super) seq: Arc<AtomicU64>,
    pub(super) clock: Clock,
}

impl LinkOut {
    pub(super) fn now(&self) -> Time {
        self.clock.now()
    }

    pub(super) async fn send(&self, msg: Message) -> Result<(), String> {
        let env = Envelope {
            session_id: self.session_id.to_string(),
            sender_id: self.device_id.to_string(),
            ts: self.now().as_millis(),
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            msg,
        };
        let text = env.encode().map_err(|e| e.to_string())?;
        self.sender
            .send_control(&text)
            .await
            .map_err(|e| e.to_string())
    }
}
