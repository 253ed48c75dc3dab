//! Session state machines: pure, deterministic, no IO.
//!
//! What lives where: the skeleton every role shares ([`Input`], [`Output`], [`Machine`], the
//! outbox) in `machine`; [`Command`] in `command`; [`Event`] in `event`; the file service's
//! [`FileCue`]s in `file_cue`; the persisted [`Record`] and its checks in `records`; one file per
//! role (`solo`, `master`, `follower`) and one per concern they share (`link` heartbeat, `clock`
//! offset, `backoff`, `keys`, `playback`, `door`).
//!
//! Each role ([`Solo`], [`Master`], [`Follower`]) is a [`Machine`]: the driver feeds it
//! [`Input`]s together with the current [`Time`], drains [`Output`]s with
//! [`Machine::poll_output`], and calls [`Machine::handle`] with [`Input::Timeout`] once
//! [`Machine::poll_timeout`] has passed. Time and randomness are inputs, so the same machine runs
//! under tokio, in a browser, or on the virtual clock of the simulated network in `tests/sim`.
//!
//! ```text
//!            Input (link up/down, bytes received, command, timeout)
//!   driver ───────────────────────────────▶ machine
//!          ◀─────────────────────────────── poll_output(): Send, Close, Dial, Persist, Event, Files
//!                                           poll_timeout(): when to call back
//! ```

mod backoff;
mod clock;
mod command;
mod door;
mod event;
mod file_cue;
mod follower;
mod keys;
mod link;
mod machine;
mod master;
mod playback;
mod records;
mod solo;

pub use crate::protocol::SessionCode;
pub use backoff::{Backoff, BackoffConfig, Rng};
pub use clock::{ClockEstimate, ClockFilter};
pub use command::Command;
pub use door::{DoorAuth, DoorQuery, DoorReply, DoorSecret};
pub use event::{Event, Origin};
pub use file_cue::{FileCue, SessionRole};
pub use follower::{Follower, FollowerConfig, FollowerRecord, FollowerState, JoinCredentials};
pub use keys::{KeyStore, Merge, DEFAULT_SYNC_GROUPS, PLAYBACK_GROUP};
pub use link::{HeartbeatConfig, LinkState};
pub(crate) use machine::{earliest, Outbox, StateName};
pub use machine::{Input, Machine, Output, PeerId, RoleState};
pub use master::{Master, MasterConfig, MasterRecord, MasterState, MemberRecord};
pub use playback::TIMER_MEDIA_ID;
pub use records::{Record, RecordError};
pub use solo::{Solo, SoloConfig, SoloRecord, SoloState, PARTNER_LEFT};

// `Time` is the whole crate's (crate::time); kept here too, where drivers first meet it.
pub use crate::time::Time;
