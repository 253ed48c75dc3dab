//! A choir follower on the LAN: joins a master by its QR link, by session code (found with
//! mDNS, PROTOCOL.md §10) or by the membership kept in a state directory, then follows its pages
//! and keeps rejoining by itself when the master goes away and comes back.

use super::join_dial::{code_candidates, code_dialer, read_target, report_failures, save_target};
use super::state_files::{open_with_id, random_seed};
use super::{
    follower_dialer, load_record, BadRecord, Clock, Dialer, Events, Files, FilesOptions,
    JoinTarget, Node, NodeOptions,
};
use crate::discovery::{Discovery, DiscoveryError};
use crate::invite::JoinLink;
use crate::protocol::{FollowMode, RejectReason};
use crate::session::{
    Command, Event, Follower, FollowerConfig, FollowerRecord, JoinCredentials, Record, SessionCode,
};
use crate::transport::TransportConfig;
use crate::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How a follower finds its session.
#[derive(Debug, Clone)]
pub enum JoinHow {
    /// The master's join link (its QR code): address, session code, token and fingerprint.
    Link(JoinLink),
    /// A session code, looked up with mDNS on the LAN, and the session's password if it has one.
    Code {
        /// The code (`XXXX-XXXX`; case, spaces and dashes do not matter).
        code: String,
        /// The session's password.
        password: Option<String>,
    },
    /// The session kept in [`JoinOptions::state_dir`] by an earlier run (its membership proves
    /// who this device is, PROTOCOL.md §6.2).
    Rejoin,
}

impl JoinHow {
    /// What a person pasted or typed: a join link (`lansync://join?…`, or the phones' URL that
    /// carries it, PROTOCOL.md §9.7) or a session code. The
    /// password only goes with a code (a link carries the session's token instead).
    ///
    /// ```
    /// use lansync::JoinHow;
    /// let how = JoinHow::parse("abcd efgh", None).unwrap();
    /// assert!(matches!(how, JoinHow::Code { ref code, .. } if code == "ABCD-EFGH"));
    /// assert!(JoinHow::parse("hello", None).is_err());
    /// ```
    pub fn parse(text: &str, password: Option<String>) -> Result<JoinHow, Error> {
        let text = text.trim();
        let scheme = text
            .get(..8)
            .is_some_and(|h| h.eq_ignore_ascii_case("lansync:"));
        if scheme || crate::invite::is_page_url(text) {
            return JoinLink::parse(text).map(JoinHow::Link).map_err(|e| {
                Error::InvalidArgument(format!(
                    "this join link cannot be used ({e}): scan the master's QR code again"
                ))
            });
        }
        match SessionCode::parse(text) {
            Some(code) => Ok(JoinHow::Code {
                code: code.as_str().to_string(),
                password,
            }),
            None => Err(Error::InvalidArgument(format!(
                "{:?} is neither a join link (lansync://join?…) nor a session code like \
                 ABCD-EFGH: copy the link or the code the master shows",
                crate::protocol::truncate(text, 40)
            ))),
        }
    }
}

/// How a [`Join`] runs. `Default` is a follower with a random device id, no state directory,
/// every network interface.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// The follower's settings. An empty `device_id` is replaced by the one kept in `state_dir`
    /// (made on first use), or by a random one without a state directory.
    pub follower: FollowerConfig,
    /// Where the device id, the membership (`follower.json`) and the master's address
    /// (`target.json`) are kept, so a later run can [`JoinHow::Rejoin`].
    pub state_dir: Option<PathBuf>,
    /// Where the session's files are downloaded. Default: `files` in `state_dir`, else a new
    /// private temporary directory.
    pub download_dir: Option<PathBuf>,
    /// How links are made.
    pub transport: TransportConfig,
    /// How long a session code is looked for on the LAN. Default 5 s.
    pub mdns_timeout: Duration,
    /// How long a first join (by link or code) may go unanswered before [`Join::start`] gives
    /// up with [`Error::Unreachable`]. Default 10 s.
    pub first_join_timeout: Duration,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            follower: FollowerConfig::new(""),
            state_dir: None,
            download_dir: None,
            transport: TransportConfig::default(),
            mdns_timeout: Duration::from_secs(5),
            first_join_timeout: Duration::from_secs(10),
        }
    }
}

impl JoinOptions {
    /// Everything on loopback (tests, a demo on one machine): links use only loopback.
    pub fn loopback() -> Self {
        JoinOptions {
            transport: TransportConfig {
                loopback_only: true,
                ..TransportConfig::default()
            },
            ..JoinOptions::default()
        }
    }
}

/// A running choir follower.
pub struct Join {
    node: Arc<Node>,
    events: Option<Events>,
    bad_record: Option<BadRecord>,
    download_dir: Option<PathBuf>,
}

/// How the first dial ended, as far as [`Join::start`] waits.
enum Outcome {
    Joined,
    Refused(RejectReason),
    /// A rejoin's first dial found nobody: the follower goes on retrying in the background.
    StillRetrying,
    /// No answer in time (or the follower gave up): `None`, or why the last dial failed.
    Unanswered(Option<String>),
    Stopped,
}

impl Join {
    /// Joins, and returns once the join succeeded or failed: a refusal (wrong or missing
    /// password, ended session, …), a session code nobody advertises, or a master that does not
    /// answer within [`JoinOptions::first_join_timeout`] is an `Err` at once. A [`JoinHow::Rejoin`]
    /// returns as soon as its first try is over: a member keeps rejoining in the background
    /// (the master may come back) unless the master refuses it.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), lansync::Error> {
    /// use lansync::{AppEvent, Join, JoinHow, JoinOptions};
    /// use lansync::session::Event;
    /// let how = JoinHow::parse("lansync://join?h=192.168.1.20:7300&c=…", None)?;
    /// let opts = JoinOptions {
    ///     state_dir: Some("choir-state".into()),
    ///     ..JoinOptions::default()
    /// };
    /// let mut join = Join::start(how, opts).await?;
    /// let mut events = join.events();
    /// while let Some(event) = events.recv().await {
    ///     if let AppEvent::Session(Event::Page { page, .. }) = event {
    ///         println!("page {page}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn start(how: JoinHow, mut opts: JoinOptions) -> Result<Join, Error> {
        let kept = open_with_id(
            opts.state_dir.as_deref(),
            &mut opts.follower.device_id,
            "follower",
        )?;
        let cfg = opts.follower.clone();
        let record_path = kept.as_ref().map(|d| d.path("follower.json"));
        let target_path = kept.as_ref().map(|d| d.path("target.json"));
        // A bad record is reported (Join::bad_record) and moved aside, never overwritten.
        let (stored, bad_record) = match record_path.as_deref().map(load_record) {
            Some(Ok(rec)) => (rec, None),
            Some(Err(bad)) => (None, Some(bad)),
            None => (None, None),
        };
        let ids = (cfg.device_id.clone(), cfg.device_name.clone());
        let seed = random_seed()?;

        let sent_password = matches!(
            &how,
            JoinHow::Code {
                password: Some(_),
                ..
            }
        );
        let by_code = matches!(&how, JoinHow::Code { .. });
        let (machine, creds, dialer, tried): (_, _, Dialer, String) = match how {
            JoinHow::Link(link) => {
                let target = JoinTarget {
                    addr: link.socket_addr(),
                    fingerprint: Some(link.fingerprint.clone()),
                };
                if let Some(path) = &target_path {
                    save_target(path, &target);
                }
                let creds = JoinCredentials {
                    token: Some(link.token.clone()),
                    ..Default::default()
                };
                let tried = target.addr.to_string();
                let dialer = follower_dialer(target, opts.transport.clone(), ids.0, ids.1);
                match membership_of(stored.as_ref(), &link.session_code) {
                    Some(rec) => {
                        let machine = Follower::restore(cfg, seed, Clock::new().now(), rec);
                        (machine, None, dialer, tried)
                    }
                    None => (Follower::new(cfg, seed), Some(creds), dialer, tried),
                }
            }
            JoinHow::Code { code, password } => {
                let code = SessionCode::parse(&code).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{:?} is not a session code: a code looks like ABCD-EFGH",
                        crate::protocol::truncate(&code, 40)
                    ))
                })?;
                let code = code.as_str().to_string();
                let known = target_path
                    .as_deref()
                    .and_then(read_target)
                    .and_then(|t| t.fingerprint);
                let found = match Discovery::new()?.find_all(&code, opts.mdns_timeout).await {
                    Err(DiscoveryError::NotFound { .. }) => {
                        return Err(Error::SessionNotFound { code })
                    }
                    found => found?,
                };
                let candidates = code_candidates(found, known.as_deref());
                if candidates.is_empty() {
                    // Every advert of the code speaks another protocol version.
                    return Err(Error::Rejected(RejectReason::VersionMismatch));
                }
                let tried = candidates
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let creds = JoinCredentials {
                    session_code: Some(code),
                    password,
                    ..Default::default()
                };
                let member =
                    membership_of(stored.as_ref(), creds.session_code.as_deref().unwrap_or(""));
                let dialer =
                    code_dialer(candidates, opts.transport.clone(), ids, target_path.clone());
                match member {
                    Some(rec) => {
                        let machine = Follower::restore(cfg, seed, Clock::new().now(), rec);
                        (machine, None, dialer, tried)
                    }
                    None => (Follower::new(cfg, seed), Some(creds), dialer, tried),
                }
            }
            JoinHow::Rejoin => {
                let nothing = || match &opts.state_dir {
                    Some(dir) => Error::NothingToRejoin { dir: dir.clone() },
                    None => Error::InvalidArgument(
                        "rejoining needs the state directory of an earlier join".into(),
                    ),
                };
                let Some(Record::Follower(rec)) = stored else {
                    return Err(nothing());
                };
                let Some(target) = target_path.as_deref().and_then(read_target) else {
                    return Err(nothing());
                };
                let tried = target.addr.to_string();
                let dialer = follower_dialer(target, opts.transport.clone(), ids.0, ids.1);
                let machine = Follower::restore(cfg, seed, Clock::new().now(), rec);
                (machine, None, dialer, tried)
            }
        };

        let mut files_opts = FilesOptions::new(opts.follower.device_id.clone());
        files_opts.download_dir = opts
            .download_dir
            .clone()
            .or_else(|| kept.as_ref().map(|d| d.path("files")));
        let download_dir = files_opts.download_dir.clone();
        let (files, files_events) = Files::spawn(files_opts);
        let (failures_tx, mut failures) = watch::channel(None);
        let node_opts = NodeOptions {
            dialer: Some(report_failures(dialer, failures_tx)),
            record_path,
            files: Some(files),
        };
        let (node, mut session) = Node::spawn(machine, node_opts);
        let rejoin = creds.is_none();
        if let Some(creds) = creds {
            node.command(Command::Join(creds))?;
        }

        let mut seen = Vec::new();
        let outcome = first_outcome(
            &mut session,
            &mut failures,
            &mut seen,
            rejoin,
            opts.first_join_timeout,
        )
        .await;
        // On an error the node (its only handle) is dropped with `node`: it stops, and an
        // unfinished dial goes nowhere.
        match outcome {
            Outcome::Joined | Outcome::StillRetrying => {}
            Outcome::Refused(RejectReason::InvalidPassword) if by_code && !sent_password => {
                return Err(Error::PasswordRequired)
            }
            // A code join proving a password to a session that has none (PROTOCOL.md §9.3).
            Outcome::Refused(RejectReason::InvalidToken) if by_code && sent_password => {
                return Err(Error::Rejected(RejectReason::InvalidPassword))
            }
            Outcome::Refused(reason) => return Err(Error::Rejected(reason)),
            Outcome::Unanswered(last) => {
                let secs = opts.first_join_timeout.as_secs_f64();
                return Err(Error::Unreachable {
                    addr: tried,
                    detail: format!(
                        "nothing answered within {secs} s{}; check that the master is still \
                         running and that this device is on the same network",
                        last.as_deref().map(innermost).unwrap_or_default()
                    ),
                });
            }
            Outcome::Stopped => return Err(Error::Stopped),
        }

        // What happened while joining is the application's too: it comes first on the stream.
        let (tx, rx) = mpsc::unbounded_channel();
        for e in seen {
            let _ = tx.send(e);
        }
        tokio::spawn(async move {
            while let Some(e) = session.recv().await {
                if tx.send(e).is_err() {
                    break;
                }
            }
        });
        let node = Arc::new(node);
        // An interface coming back (Wi-Fi rejoined, cable in) redials at once, not after the
        // backoff. The watcher holds no handle: the node still stops when the Join is dropped.
        let watched = Arc::downgrade(&node);
        if let Err(e) = crate::netwatch::watch(move || match watched.upgrade() {
            Some(node) => {
                node.network_changed();
                true
            }
            None => false,
        }) {
            tracing::info!(%e, "no network change notifications; relying on the backoff");
        }
        Ok(Join {
            node,
            events: Some(Events::merge(rx, Some(files_events))),
            bad_record,
            download_dir,
        })
    }

    /// Whether `state_dir` holds a session an earlier run joined, to [`JoinHow::Rejoin`].
    pub fn has_stored_session(state_dir: &Path) -> bool {
        let record = state_dir.join("follower.json");
        // Only looked at: a bad record is moved aside by `start`, which reports it.
        let stored = std::fs::metadata(&record).is_ok_and(|m| m.len() < 1024 * 1024)
            && std::fs::read(&record)
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
                .is_some_and(|r| matches!(r, Record::Follower(_)));
        stored && read_target(&state_dir.join("target.json")).is_some()
    }

    /// The session's events and those of the follower's file service, in one bounded stream
    /// (see [`Events`]); the events of the join itself come first. Taken once; a second call
    /// gets a stream that has already ended.
    pub fn events(&mut self) -> Events {
        self.events.take().unwrap_or_else(Events::ended)
    }

    /// The low-level handle every typed method below uses.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Shows `page` (zero-based) on this device only. In follow mode the master's next turn
    /// brings it back in step; see [`set_follow_mode`](Self::set_follow_mode).
    pub fn set_page(&self, page: u32) -> Result<(), Error> {
        self.node.command(Command::SetPage { page })
    }

    /// Follow the master's page turns, or navigate freely (song changes still apply).
    pub fn set_follow_mode(&self, mode: FollowMode) -> Result<(), Error> {
        self.node.command(Command::SetFollowMode { mode })
    }

    /// Retries at once instead of waiting for the backoff, when the link is down.
    pub fn retry(&self) -> Result<(), Error> {
        self.node.command(Command::Retry)
    }

    /// Leaves the session: the master is told, the kept membership is cleared.
    pub fn leave(&self) -> Result<(), Error> {
        self.node.command(Command::Leave)
    }

    /// Where the session's files are downloaded, if set.
    pub fn download_dir(&self) -> Option<&Path> {
        self.download_dir.as_deref()
    }

    /// The record file found unusable at start (moved aside), if any.
    pub fn bad_record(&self) -> Option<&BadRecord> {
        self.bad_record.as_ref()
    }
}

/// The last words of a chain of errors (`… tcp connect error: Connection refused (os error
/// 111)`): what a person can act on.
fn innermost(e: &str) -> String {
    format!(" ({})", e.rsplit(": ").next().unwrap_or(e))
}

/// Waits for the first join's outcome, keeping every event seen on the way.
///
/// The deadline of a first join lives here, in the facade, not in the follower machine: the
/// machine's states and backoff (PROTOCOL.md §6.3) are the same for a first join and a rejoin
/// and for every driver (the wasm build, tests on the simulated network), while how long a
/// person waits before being told "cannot reach" is the application's choice
/// ([`JoinOptions::first_join_timeout`]). [`Join::start`] has to wait for the outcome anyway.
async fn first_outcome(
    session: &mut mpsc::UnboundedReceiver<Event>,
    failures: &mut watch::Receiver<Option<String>>,
    seen: &mut Vec<Event>,
    rejoin: bool,
    timeout: Duration,
) -> Outcome {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        tokio::select! {
            e = session.recv() => {
                let Some(e) = e else { return Outcome::Stopped };
                let outcome = match &e {
                    Event::Joined { .. } => Some(Outcome::Joined),
                    Event::Rejected { reason } => Some(Outcome::Refused(*reason)),
                    Event::GaveUp { .. } if !rejoin => {
                        Some(Outcome::Unanswered(failures.borrow().clone()))
                    }
                    _ => None,
                };
                seen.push(e);
                if let Some(outcome) = outcome {
                    return outcome;
                }
            }
            Ok(()) = failures.changed(), if rejoin => return Outcome::StillRetrying,
            _ = tokio::time::sleep_until(deadline) => {
                return if rejoin {
                    Outcome::StillRetrying
                } else {
                    Outcome::Unanswered(failures.borrow().clone())
                };
            }
        }
    }
}

/// This device's stored membership of the session with `code`, if it has one: joining that
/// session again (its QR code scanned twice, its code typed again) rejoins as that member. A new
/// join with a member's device id and no proof of its secret is refused (PROTOCOL.md §6.2).
fn membership_of(stored: Option<&Record>, code: &str) -> Option<FollowerRecord> {
    match stored {
        Some(Record::Follower(rec))
            if rec.member_secret.is_some() && rec.session_code.eq_ignore_ascii_case(code) =>
        {
            Some(rec.clone())
        }
        _ => None,
    }
}
