//! lansync keeps devices on one local network in step — two tablets showing a score side by side,
//! a choir master turning pages for thirty singers — peer to peer over WebRTC data channels, with
//! no server and no internet.
//!
//! # The front door
//!
//! Three types cover what an app does (feature `native`):
//!
//! | type | what it is | example |
//! |---|---|---|
//! | [`Host`] | a choir master: join endpoint, mDNS advert, page turns for everyone, session pack | `examples/host.rs` |
//! | [`Join`] | a choir follower, by join link ([`JoinHow::Link`]), session code, or rejoining the stored session | `examples/join.rs` |
//! | [`Pair`] | two equal devices paired from codes alone, pages both ways, files | `examples/pair.rs`, `examples/send_files.rs` |
//!
//! Each has options with a `Default` (and a `loopback()` set for one machine), starts with an
//! `async fn` that returns once it works or with an [`Error`] that says why in one sentence (its
//! [`Error::code`] is the PROTOCOL.md §8 code), offers typed methods (`set_page`, `set_song`, …)
//! that return `Result`, and tells everything that happens in one bounded stream of
//! [`AppEvent`]s ([`Events`]: the session never waits for a slow app; a reader that fell behind
//! gets [`AppEvent::Lagged`]). A `state_dir` in the options keeps the device id, the DTLS
//! identity and the session between runs.
//!
//! ```no_run
//! # async fn run() -> Result<(), lansync::Error> {
//! use lansync::{AppEvent, Join, JoinHow, JoinOptions};
//!
//! let how = JoinHow::parse("lansync://join?h=192.168.1.5:47321&c=ABCD-EFGH&t=…&f=…", None)?;
//! let mut join = Join::start(how, JoinOptions::default()).await?;
//! let mut events = join.events();
//! while let Some(event) = events.recv().await {
//!     if let AppEvent::Session(lansync::session::Event::Page { page, .. }) = event {
//!         println!("show page {}", page + 1);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Architecture
//!
//! A **pure core** holds every rule and does no IO: no sockets, no threads, no clock reads.
//! Time and randomness come in as inputs; messages, timers and events go out.
//!
//! | module | role |
//! |---|---|
//! | [`time`] | [`time::Time`], the clock every pure module is fed (pure) |
//! | [`auth`] | join keys and MACs: token, member secret, SPAKE2 for code joins (pure) |
//! | [`protocol`] | the JSON envelope, the message catalog (file manifests included), limits and validation (pure) |
//! | [`session`] | state machines: solo pair, choir master, choir follower, link health, backoff, clock offset, playback prediction, synced keys (pure) |
//! | [`invite`] | invite/answer codes: compact base45 code, lz-string, QR rendering (pure codecs) |
//! | `sim` | a deterministic simulated network for tests and the demo (pure; feature `test-utils`) |
//! | [`transfer`] | file transfer: chunk codec, manifests, media whitelist, resumable sender/receiver (pure) |
//! | [`sctp`] | SCTP for the data channels, built for lossy Wi-Fi: RTT-driven retransmission, fast retransmit, tail-loss probe, pacing, control ahead of file data (pure) |
//! | `transport` | WebRTC links: ICE and DTLS from `rtc` under [`sctp`]; the only module that imports `rtc` (feature `native`) |
//! | `discovery` | mDNS advert and browse of choir sessions, `_lansync._tcp.local.` (`native`) |
//! | `doctor` | why devices don't see each other: interfaces, mDNS, firewall, a peer's TCP and UDP (`native`) |
//! | `node` | the async driver: runs a machine over links, a clock and a record file; the file service that moves files on disk (`native`) |
//! | `netwatch` | network change notifications, so a follower redials when an interface returns (`native`) |
//! | `signaling` | the master's HTTP join endpoint on the LAN and its client, MAC-bound to the join secret (`native`) |
//!
//! # Features
//!
//! - `native`: the IO modules above (tokio, WebRTC, mDNS, the join endpoint). An app that embeds
//!   lansync takes `default-features = false, features = ["native"]`.
//! - `cli` (default): `native` plus what only the `lansync` binary needs (argument parsing,
//!   progress bars, log output), and `test-utils` for `lansync demo --sim`.
//! - `test-utils`: the `sim` module.
//!
//! Without features the crate is only the pure core and builds for `wasm32-unknown-unknown`, so
//! a web page can run the same protocol logic.
//!
//! # The run-loop contract
//!
//! Every role implements [`session::Machine`]. A driver:
//! 1. feeds [`session::Input`]s — link up/down, bytes received, app commands — with the current
//!    [`session::Time`] (microseconds on a clock that never goes backwards);
//! 2. drains [`session::Machine::poll_output`] until `None`, carrying out each
//!    [`session::Output`]: send bytes on a link, close a link, dial the peer, persist a record,
//!    tell the app an event, give the file service a cue (a `TRANSFER_*` message, a session
//!    fact);
//! 3. sleeps until [`session::Machine::poll_timeout`] (or the next input), then feeds
//!    [`session::Input::Timeout`].
//!
//! A `Dial` must always be answered, by `LinkUp`, `DialFailed` or `DialRefused`.
//!
//! ```
//! use lansync::session::{Command, Input, Machine, Master, MasterConfig, Output, Time};
//!
//! let now = Time::from_millis(1_735_689_600_000);
//! let mut master = Master::new(MasterConfig::new("master"), now, [7; 32]);
//! master.handle(now, Input::Command(&Command::SetSong { song_id: "ave-maria".into() }));
//! while let Some(out) = master.poll_output() {
//!     if let Output::Event(e) = out {
//!         println!("{}", serde_json::to_string(&e).unwrap());
//!     }
//! }
//! assert_eq!(master.page().song_epoch, 1);
//! ```
#![warn(missing_docs)]

pub mod auth;
#[cfg(feature = "native")]
pub mod discovery;
#[cfg(feature = "native")]
pub mod doctor;
mod error;
pub mod invite;
#[cfg(feature = "native")]
pub mod netwatch;
#[cfg(feature = "native")]
pub mod node;
pub mod protocol;
pub mod sctp;
pub mod session;
#[cfg(feature = "native")]
pub mod signaling;
#[cfg(any(test, feature = "test-utils"))]
pub mod sim;
pub mod time;
pub mod transfer;
#[cfg(feature = "native")]
pub mod transport;

pub use error::Error;
#[cfg(feature = "native")]
pub use node::{
    AppEvent, CodeStyle, Events, Host, HostOptions, Join, JoinHow, JoinOptions, Pair, PairAnswer,
    PairCode, PairOffer, PairOptions,
};
