//! The follower page's core: lansync's choir follower ([`Follower`], PROTOCOL.md §6.3), the
//! join handshake ([`Handshake`], §9) and the transfer receiver (§11), compiled to WebAssembly
//! for `web/static/lansync.js`. Every protocol rule runs here, in the crate's own code; the
//! script only moves bytes between this core and the browser (RTCPeerConnection, `fetch`,
//! timers, `localStorage`) and draws the screen (PROTOCOL.md §9.7).
//!
//! The driver contract is the crate's run-loop contract: feed inputs with the time, drain
//! [`Core::poll`] until `undefined`, call [`Core::timeout`] once [`Core::next_timeout`] passes.
//! Outputs are JSON objects with an `op`: `send` (`peer`, `text`), `close` (`peer`), `dial`
//! (`creds`), `persist` (`record`, or `null` to forget), `event` (`event`: a session event) and
//! `files` (`note`: a file received, a set done or failed).

mod files;
mod join;
mod score;

pub use join::Handshake;

use files::{Files, FilesNote};
use lansync::invite::JoinLink;
use lansync::protocol::{Envelope, FollowMode, Role};
use lansync::session::{
    Command, Event, FileCue, Follower, FollowerConfig, Input, JoinCredentials, Machine, Output,
    PeerId, Record, SessionRole, Time,
};
use serde_json::json;
use std::collections::VecDeque;
use wasm_bindgen::prelude::*;

/// Most outputs queued for the page before the oldest are dropped (the page drains after every
/// input, so this only bounds a page that stopped draining).
const MAX_QUEUED: usize = 4096;

/// A follower page's session.
#[wasm_bindgen]
pub struct Core {
    follower: Follower,
    link: JoinLink,
    device_id: String,
    device_name: String,
    /// The master's device id, once joined.
    host_id: String,
    /// The open link, if any.
    peer: Option<PeerId>,
    files: Files,
    out: VecDeque<String>,
}

/// Microseconds on the page's clock from milliseconds (`performance.timeOrigin +
/// performance.now()`); negative or not a number reads as 0.
fn time(now_ms: f64) -> Time {
    if now_ms.is_finite() && now_ms > 0.0 {
        Time((now_ms * 1000.0) as u64)
    } else {
        Time(0)
    }
}

/// Parses the phones' URL fragment (`h=…&c=…&t=…&f=…`, PROTOCOL.md §9.7) and returns the
/// link as JSON (`addr`, `session_code`, `fingerprint`; the token stays inside); throws with
/// the parser's sentence.
#[wasm_bindgen]
pub fn parse_fragment(fragment: &str) -> Result<String, JsError> {
    let link = JoinLink::parse_fragment(fragment).map_err(|e| JsError::new(&e.to_string()))?;
    Ok(
        json!({"addr": link.socket_addr().to_string(), "session_code": link.session_code,
        "fingerprint": link.fingerprint})
        .to_string(),
    )
}

#[wasm_bindgen]
impl Core {
    /// A follower for the session of the URL fragment. `record` is what an earlier `persist`
    /// asked to keep (or empty): when it is a membership of the same session the page rejoins
    /// as that member, otherwise it joins with the link's token. `seed`: 8 random bytes.
    #[wasm_bindgen(constructor)]
    pub fn new(
        fragment: &str,
        device_id: &str,
        device_name: &str,
        record: &str,
        seed: &[u8],
        now_ms: f64,
    ) -> Result<Core, JsError> {
        let link = JoinLink::parse_fragment(fragment).map_err(|e| JsError::new(&e.to_string()))?;
        lansync::protocol::check_id("device_id", device_id, false)
            .map_err(|e| JsError::new(&e.to_string()))?;
        let now = time(now_ms);
        let mut seed_bytes = [0u8; 8];
        for (d, s) in seed_bytes.iter_mut().zip(seed) {
            *d = *s;
        }
        let seed = u64::from_le_bytes(seed_bytes);
        let mut cfg = FollowerConfig::new(device_id);
        cfg.device_name = device_name.to_string();
        let kept = match serde_json::from_str::<Record>(record) {
            Ok(Record::Follower(rec)) if rec.session_code == link.session_code => Some(rec),
            _ => None,
        };
        let mut core = Core {
            follower: match kept {
                Some(mut rec) => {
                    rec.token.get_or_insert_with(|| link.token.clone());
                    Follower::restore(cfg, seed, now, rec)
                }
                None => Follower::new(cfg, seed),
            },
            device_id: device_id.to_string(),
            device_name: device_name.to_string(),
            host_id: String::new(),
            peer: None,
            files: Files::default(),
            out: VecDeque::new(),
            link,
        };
        if core.follower.session_id().is_empty() {
            let creds = JoinCredentials {
                token: Some(core.link.token.clone()),
                session_code: Some(core.link.session_code.clone()),
                ..JoinCredentials::default()
            };
            core.input(now, Input::Command(&Command::Join(creds)));
        } else {
            core.pump(now);
        }
        Ok(core)
    }

    /// A join attempt for the credentials of a `dial` output (`creds`, as JSON), with 32
    /// random bytes (a code join's PAKE).
    pub fn handshake(&self, creds: &str, entropy: &[u8]) -> Result<Handshake, JsError> {
        let creds: JoinCredentials =
            serde_json::from_str(creds).map_err(|e| JsError::new(&e.to_string()))?;
        let mut bytes = [0u8; 32];
        for (d, s) in bytes.iter_mut().zip(entropy) {
            *d = *s;
        }
        Handshake::new(&self.link, &creds, &self.device_id, bytes).map_err(|e| JsError::new(&e))
    }

    /// Both channels of link `peer` are open and the master's ready marker arrived (§1).
    pub fn link_up(&mut self, now_ms: f64, peer: f64) {
        let peer = peer as PeerId;
        self.peer = Some(peer);
        self.input(time(now_ms), Input::LinkUp(peer));
    }

    /// Link `peer` is gone.
    pub fn link_down(&mut self, now_ms: f64, peer: f64) {
        let peer = peer as PeerId;
        if self.peer == Some(peer) {
            self.peer = None;
            self.files.link_down();
        }
        self.input(time(now_ms), Input::LinkDown(peer));
    }

    /// The last `dial` produced no link (unreachable, timed out, answer not verified).
    pub fn dial_failed(&mut self, now_ms: f64) {
        self.input(time(now_ms), Input::DialFailed);
    }

    /// The master refused the last `dial` (`error` of §9.3, e.g. `invalid_token`).
    pub fn dial_refused(&mut self, now_ms: f64, error: &str) {
        let reason = serde_json::from_value(serde_json::Value::String(error.into()))
            .unwrap_or(lansync::protocol::RejectReason::Unknown);
        self.input(time(now_ms), Input::DialRefused(reason));
    }

    /// The browser is back online: retry now.
    pub fn network_changed(&mut self, now_ms: f64) {
        self.input(time(now_ms), Input::NetworkChanged);
    }

    /// A text message on `control`, for the follower, which decodes it (size, version and
    /// fields, §3) and hands transfer messages back for the file receiver.
    pub fn received(&mut self, now_ms: f64, peer: f64, text: &str) {
        self.input(
            time(now_ms),
            Input::Received(peer as PeerId, text.as_bytes()),
        );
    }

    /// A binary message on `binary` (a file chunk, §11.3); over 16 384 bytes is refused.
    pub fn binary(&mut self, now_ms: f64, peer: f64, bytes: &[u8]) {
        let (now, peer) = (time(now_ms), peer as PeerId);
        if self.peer != Some(peer) || bytes.len() > lansync::transfer::MAX_CHUNK_MESSAGE {
            return;
        }
        let mut notes = Vec::new();
        let replies = self.files.chunk(now, bytes, &mut notes);
        self.send_transfer(now, peer, replies);
        self.notes(notes);
    }

    /// A command of the page as JSON: `{"cmd":"free"}`, `{"cmd":"follow"}`,
    /// `{"cmd":"set_page","page":N}`, `{"cmd":"retry"}`, or any session command.
    pub fn command(&mut self, now_ms: f64, cmd: &str) -> Result<(), JsError> {
        let value: serde_json::Value =
            serde_json::from_str(cmd).map_err(|e| JsError::new(&e.to_string()))?;
        let mode = |m: FollowMode| Command::SetFollowMode { mode: m };
        let cmd = match value.get("cmd").and_then(|c| c.as_str()) {
            Some("free") => mode(FollowMode::Free),
            Some("follow") => mode(FollowMode::Follow),
            _ => serde_json::from_value(value).map_err(|e| JsError::new(&e.to_string()))?,
        };
        self.input(time(now_ms), Input::Command(&cmd));
        Ok(())
    }

    /// `next_timeout` has passed.
    pub fn timeout(&mut self, now_ms: f64) {
        self.input(time(now_ms), Input::Timeout);
    }

    /// When to call `timeout` (ms on the page's clock), if ever.
    pub fn next_timeout(&self) -> Option<f64> {
        self.follower
            .poll_timeout()
            .map(|t| t.as_micros() as f64 / 1000.0)
    }

    /// The next output as JSON, or `undefined`.
    pub fn poll(&mut self) -> Option<String> {
        self.out.pop_front()
    }

    /// What the screen shows, as JSON: `role_state`, `song_id`, `page`, `follow`, `leader`,
    /// `presence`, `files`, `device_id`, `session_name`, `session_code`, `score`.
    pub fn status(&self) -> String {
        let view = self.follower.view();
        let files = self.files.list();
        let score = score::pick(&files, self.follower.stream(), view);
        json!({
            "role_state": lansync::session::RoleState::Follower(self.follower.state()).name(),
            "song_id": view.song_id,
            "page": view.page_index,
            "follow": self.follower.follow_mode() == FollowMode::Follow,
            "leader": self.leader(),
            "presence": (self.follower.count() > 0).then_some(self.follower.count()),
            "files": files,
            "device_id": self.device_id,
            "device_name": self.device_name,
            "session_code": self.link.session_code,
            "score": score,
        })
        .to_string()
    }

    /// The verified bytes of the file with this SHA-256, once (then only the page holds them).
    pub fn take_file(&mut self, sha256: &str) -> Option<Vec<u8>> {
        self.files.take(sha256)
    }
}

impl Core {
    fn input(&mut self, now: Time, input: Input<'_>) {
        self.follower.handle(now, input);
        self.pump(now);
    }

    /// Drains the follower's outputs into the page's queue; file cues go to the receiver.
    fn pump(&mut self, now: Time) {
        while let Some(out) = self.follower.poll_output() {
            let op = match out {
                Output::Send(peer, text) => json!({"op": "send", "peer": peer, "text": text}),
                Output::Close(peer) => json!({"op": "close", "peer": peer}),
                Output::Dial(creds) => json!({"op": "dial", "creds": creds}),
                Output::Persist(Record::Cleared) => json!({"op": "persist", "record": null}),
                Output::Persist(rec) => json!({"op": "persist", "record": rec}),
                Output::Event(e) => {
                    if let Event::Joined { host_id, .. } = &e {
                        self.host_id = host_id.clone();
                    }
                    json!({"op": "event", "event": e})
                }
                Output::Files(cue) => {
                    self.file_cue(now, cue);
                    continue;
                }
            };
            self.push(op);
        }
    }

    /// Transfer messages from the open link go to the receiver; the session's host names whose
    /// sets it accepts. The other cues are the native file service's (this page publishes
    /// nothing).
    fn file_cue(&mut self, now: Time, cue: FileCue) {
        match cue {
            FileCue::Transfer(peer, env) if self.peer == Some(peer) => {
                let mut notes = Vec::new();
                let replies = self.files.control(now, &env, &mut notes);
                self.send_transfer(now, peer, replies);
                self.notes(notes);
            }
            FileCue::Session {
                role: SessionRole::Follower { host_id },
                ..
            } => self.files.set_host(&host_id),
            _ => {}
        }
    }

    fn push(&mut self, op: serde_json::Value) {
        if self.out.len() >= MAX_QUEUED {
            self.out.pop_front();
        }
        self.out.push_back(op.to_string());
    }

    fn notes(&mut self, notes: Vec<FilesNote>) {
        for note in notes {
            self.push(json!({"op": "files", "note": note}));
        }
    }

    /// Transfer replies in envelopes of their own counter (as the native file service does).
    fn send_transfer(&mut self, now: Time, peer: PeerId, msgs: Vec<lansync::protocol::Message>) {
        for msg in msgs {
            let env = Envelope {
                session_id: self.follower.session_id().to_string(),
                sender_id: self.device_id.clone(),
                ts: now.as_millis(),
                seq: self.files.next_seq(),
                msg,
            };
            if let Ok(text) = env.encode() {
                self.push(json!({"op": "send", "peer": peer, "text": text}));
            }
        }
    }

    /// Who leads: the master's name as the participant list gives it, else the session's code.
    fn leader(&self) -> String {
        self.follower
            .participants()
            .find(|p| p.role == Role::Master || p.id == self.host_id)
            .map(|p| p.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.link.session_code.clone())
    }
}

#[cfg(test)]
mod tests;
