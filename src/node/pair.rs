//! Solo pairing from codes alone (PROTOCOL.md §6.1, §7): two devices, no network service. A
//! person carries the codes between the devices, so pairing takes two steps on each side:
//!
//! ```text
//!  device A                                   device B
//!  Pair::offer(opts) ── invite code ──────▶  Pair::answer(invite, opts)
//!  offer.accept(answer) ◀── answer code ───  answer.code()
//!        │                                   answer.open()
//!        ▼                                          ▼
//!      Pair  ◀════ pages, songs, layout, files ═══▶ Pair
//! ```
//!
//! Everything that can be checked before anybody is invited is checked first: the files to send
//! (type and hash), the network (a device with no interface besides loopback cannot pair over
//! the LAN), the code pasted.

use super::pair_book::{self, Launch};
use super::pair_redial::RedialEndpoint;
use super::state_files::{open_with_id, random_seed, StateDir};
use super::{Events, Files, FilesOptions, Node, PublishedFiles};
use crate::auth::sdp_fingerprint;
use crate::invite::{self, CodeFormat, CodeKind};
use crate::protocol::Parity;
use crate::session::{Command, HeartbeatConfig, Solo, SoloConfig};
use crate::signaling;
use crate::transfer::ManifestKind;
use crate::transport::{self, Link, PendingOffer, TransportConfig};
use crate::Error;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long a silent link of a code pair is kept before the pair falls back to local mode: a
/// pair made from codes alone (no state directory) has no way to dial again, so a silent link
/// is kept for as long as ICE can still bring it back (a Wi-Fi outage, a device asleep) instead
/// of being given up. A pair with a state directory is remembered and redials (PROTOCOL.md
/// §6.1): it uses the normal heartbeat.
pub const CODE_PAIR_PATIENCE: Duration = Duration::from_secs(300);

/// How long [`Pair::close`] gives its goodbye to cross before the link closes (the node closes
/// a link 200 ms after the machine asks, so queued messages leave first).
const GOODBYE_GRACE: Duration = Duration::from_millis(300);

/// Which code format a device writes. Both are always read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CodeStyle {
    /// The compact code (PROTOCOL.md §7.1): about 90 characters, shell-safe text, small QR.
    #[default]
    Compact,
    /// The lz-string code of the JavaScript apps of this family (PROTOCOL.md §7.2).
    Lz,
}

/// How to pair. `PairOptions::default()` pairs over every LAN interface with a device id kept
/// nowhere (a new random one), moving no files.
#[derive(Clone)]
pub struct PairOptions {
    /// This device's settings. An empty `device_id` (the default) means: the one kept in
    /// `state_dir`, else a new random one. `pair_id` and `initiator` are set by the pairing.
    pub solo: SoloConfig,
    /// Where the device id, the DTLS identity and the remembered pair (`solo.json`) are kept
    /// (created if missing). With one, the pair is remembered: both devices find each other
    /// again after a cut or a restart ([`Pair::resume`]). Without one, the pair lasts as long
    /// as its link.
    pub state_dir: Option<PathBuf>,
    /// Link settings.
    pub transport: TransportConfig,
    /// The format this device writes its codes in. An answer is written in the invite's format
    /// when the invite was lz (a JavaScript app reads lz back).
    pub style: CodeStyle,
    /// Files to send to the partner once paired. They are type-checked and hashed before the
    /// invite is made, so a missing or unsupported file fails before anybody is invited.
    pub send: Vec<PathBuf>,
    /// Where files from the partner go. `None` with nothing to send: this device has no file
    /// service and takes no files.
    pub receive_dir: Option<PathBuf>,
    /// How long the link may take to open once both codes are known. Default 30 s.
    pub open_timeout: Duration,
    /// Remember the pair in `state_dir` (default `true`); `false` pairs for this run only
    /// (a one-off file transfer).
    pub remember: bool,
}

impl Default for PairOptions {
    fn default() -> Self {
        let mut solo = SoloConfig::new("");
        solo.heartbeat.dead_after = CODE_PAIR_PATIENCE;
        PairOptions {
            solo,
            state_dir: None,
            transport: TransportConfig::default(),
            style: CodeStyle::Compact,
            send: Vec::new(),
            receive_dir: None,
            open_timeout: Duration::from_secs(30),
            remember: true,
        }
    }
}

impl PairOptions {
    /// Both devices on this machine (tests, demos): links use only loopback.
    pub fn loopback() -> Self {
        PairOptions {
            transport: TransportConfig {
                loopback_only: true,
                ..TransportConfig::default()
            },
            ..PairOptions::default()
        }
    }
}

/// A code to show the other device: [`text`](Self::text) to copy (shell-safe for the compact
/// style: `LS.` + base64url, PROTOCOL.md §7.1.2), [`qr`](Self::qr) to put in a QR code (`LS:` +
/// base45, the QR alphanumeric mode). Both decode to the same description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairCode {
    text: String,
    qr: String,
}

impl PairCode {
    fn new(kind: CodeKind, sdp: &str, style: CodeStyle) -> PairCode {
        if style == CodeStyle::Compact {
            match (
                invite::encode_compact_url(kind, sdp),
                invite::encode_compact(kind, sdp),
            ) {
                (Ok(text), Ok(qr)) => return PairCode { text, qr },
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(%e, "compact code impossible, using lz-string")
                }
            }
        }
        let lz = invite::encode_lz(kind, sdp);
        PairCode {
            text: lz.clone(),
            qr: lz,
        }
    }

    /// The text a person copies; no character a shell would change.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text for a QR code.
    pub fn qr(&self) -> &str {
        &self.qr
    }
}

impl std::fmt::Display for PairCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// What both sides prepare before the first code: the device id, the checked files, the
/// network check, and for a pair to remember its DTLS identity and bond half.
pub(super) struct Prepared {
    pub(super) solo: SoloConfig,
    pub(super) transport: TransportConfig,
    style: CodeStyle,
    pub(super) files: Option<(
        Files,
        tokio::sync::mpsc::UnboundedReceiver<super::FilesEvent>,
    )>,
    pub(super) sends: bool,
    open_timeout: Duration,
    /// The state directory: the pair is remembered.
    pub(super) kept: Option<StateDir>,
    /// The waiting side's redial endpoint, started with the answer code.
    redial: Option<RedialEndpoint>,
}

impl Prepared {
    pub(super) async fn new(mut opts: PairOptions) -> Result<Prepared, Error> {
        if !opts.transport.loopback_only && transport::lan_addresses().is_empty() {
            return Err(Error::NoNetwork);
        }
        let kept = open_with_id(opts.state_dir.as_deref(), &mut opts.solo.device_id, "dev")?;
        let kept = kept.filter(|_| opts.remember);
        if let Some(dir) = &kept {
            // The partner remembers this fingerprint: it must stay valid across restarts.
            if opts.transport.certificate.is_none() {
                opts.transport.certificate = Some(dir.identity()?);
            }
            if opts.solo.bond_half.is_none() {
                opts.solo.bond_half = Some(random_half()?);
            }
            // A remembered pair can redial: a silent link is given up as usual.
            if opts.solo.heartbeat.dead_after == CODE_PAIR_PATIENCE {
                opts.solo.heartbeat.dead_after = HeartbeatConfig::default().dead_after;
            }
        }
        let sends = !opts.send.is_empty();
        let files = if sends || opts.receive_dir.is_some() {
            let mut fo = FilesOptions::new(opts.solo.device_id.clone());
            fo.download_dir = opts.receive_dir.clone();
            let (files, events) = Files::spawn(fo);
            if sends {
                // A pair has no session snapshot to announce the set in: it is simply offered
                // to the partner once paired (PROTOCOL.md §11.5).
                files.publish(ManifestKind::Pack, Some(opts.send)).await?;
            }
            Some((files, events))
        } else {
            None
        };
        Ok(Prepared {
            solo: opts.solo,
            transport: opts.transport,
            style: opts.style,
            files,
            sends,
            open_timeout: opts.open_timeout,
            kept,
            redial: None,
        })
    }

    /// Waits for the link, then starts the solo machine on it.
    async fn start(
        mut self,
        mut link: Link,
        pair_id: String,
        initiator: bool,
    ) -> Result<Pair, Error> {
        let secs = self.open_timeout.as_secs();
        link.wait_open(self.open_timeout)
            .await
            .map_err(|e| match e {
                transport::TransportError::OpenTimeout => Error::Transport(format!(
                    "the devices did not connect within {secs} s: check that both are on the \
                     same network, then pair again with new codes"
                )),
                other => Error::Transport(other.to_string()),
            })?;
        self.solo.pair_id = pair_id;
        self.solo.initiator = initiator;
        let seed = random_seed()?;
        let machine = Solo::new(self.solo.clone(), seed);
        let redial = self.redial.take();
        Ok(pair_book::launch(
            self,
            Launch {
                machine,
                link: Some(link),
                redial,
                remembered: false,
            },
        ))
    }
}

/// A fresh bond half: 16 random bytes as 32 hex digits (PROTOCOL.md §6.1, PAIR_BOND).
fn random_half() -> Result<String, Error> {
    let mut half = [0u8; 16];
    getrandom::fill(&mut half).map_err(|e| Error::Transport(format!("no random source: {e}")))?;
    Ok(hex::encode(half))
}

/// The offering device's half-made pairing: its invite code, waiting for the answer code.
pub struct PairOffer {
    pending: Option<PendingOffer>,
    code: PairCode,
    pair_id: String,
    prepared: Option<Prepared>,
}

impl PairOffer {
    /// The invite code to show the other device.
    pub fn code(&self) -> &PairCode {
        &self.code
    }

    /// The pair id both devices will use (PROTOCOL.md §6.1).
    pub fn pair_id(&self) -> &str {
        &self.pair_id
    }

    /// Takes the answer code and waits for the link to open. A code that cannot be used (a
    /// typo, an invite pasted back, half a code) is an [`Error::Invite`] and the offer stays
    /// usable: ask again. Once a code was accepted, the offer is spent.
    pub async fn accept(&mut self, answer_code: &str) -> Result<Pair, Error> {
        let answer = invite::decode(answer_code)?;
        invite::expect_kind(&answer, CodeKind::Answer)?;
        let (Some(pending), Some(prepared)) = (self.pending.take(), self.prepared.take()) else {
            return Err(Error::InvalidArgument(
                "this invite was already answered: make a new one".into(),
            ));
        };
        let link = pending
            .accept_answer(&answer.sdp)
            .await
            .map_err(|e| Error::Transport(format!("the answer code cannot be used: {e}")))?;
        let mut prepared = prepared;
        prepared.solo.partner_fingerprint = sdp_fingerprint(&answer.sdp);
        prepared.start(link, self.pair_id.clone(), true).await
    }
}

/// The answering device's half-made pairing: its answer code, to be shown while the link opens.
pub struct PairAnswer {
    link: Link,
    code: PairCode,
    pair_id: String,
    prepared: Prepared,
}

impl PairAnswer {
    /// The answer code to show the offering device.
    pub fn code(&self) -> &PairCode {
        &self.code
    }

    /// The pair id both devices will use (PROTOCOL.md §6.1).
    pub fn pair_id(&self) -> &str {
        &self.pair_id
    }

    /// Waits for the link to open (the other device must have taken the answer code by then,
    /// within [`PairOptions::open_timeout`]).
    pub async fn open(self) -> Result<Pair, Error> {
        self.prepared.start(self.link, self.pair_id, false).await
    }
}

/// Two devices in step: pages, songs, layout, and files if asked for.
///
/// ```no_run
/// # async fn run(answer_from_the_other_device: &str) -> Result<(), lansync::Error> {
/// use lansync::{Pair, PairOptions};
/// let mut offer = Pair::offer(PairOptions::default()).await?;
/// println!("on the other device: lansync pair answer {}", offer.code());
/// let mut pair = offer.accept(answer_from_the_other_device).await?;
/// pair.set_page(2)?;
/// let mut events = pair.events();
/// while let Some(event) = events.recv().await {
///     println!("{event:?}");
/// }
/// pair.close().await;
/// # Ok(()) }
/// ```
pub struct Pair {
    /// The device's node: the low-level handle the typed methods use.
    pub node: Node,
    pub(super) events: Option<Events>,
    pub(super) files: Option<Files>,
    pub(super) sends: bool,
    pub(super) device_id: String,
    /// The state directory of a pair that is (or will be) remembered.
    pub(super) state_dir: Option<PathBuf>,
    /// The waiting side's redial endpoint.
    pub(super) redial: Option<signaling::JoinServer>,
    /// The pair's mDNS advert or browse, once the pair is remembered.
    pub(super) mdns: Arc<std::sync::Mutex<Option<super::pair_advert::PairMdns>>>,
    /// Keeps the node reachable for the network watcher and the browse (they hold it weakly).
    pub(super) _watched: Arc<Node>,
}

impl Pair {
    /// Starts a pairing: checks the files to send and the network, then makes the invite code.
    pub async fn offer(opts: PairOptions) -> Result<PairOffer, Error> {
        let prepared = Prepared::new(opts).await?;
        let pending = transport::create_offer(&prepared.transport)
            .await
            .map_err(transport_error)?;
        let pair_id = pair_id(pending.sdp());
        let code = PairCode::new(CodeKind::Offer, pending.sdp(), prepared.style);
        Ok(PairOffer {
            pending: Some(pending),
            code,
            pair_id,
            prepared: Some(prepared),
        })
    }

    /// Answers an invite code: checks the code first, then the files and the network, and
    /// makes the answer code. The answer is written in the invite's format when that was lz.
    pub async fn answer(invite_code: &str, opts: PairOptions) -> Result<PairAnswer, Error> {
        let offer = invite::decode(invite_code)?;
        invite::expect_kind(&offer, CodeKind::Offer)?;
        let mut prepared = Prepared::new(opts).await?;
        if matches!(invite::code_format(invite_code), Ok(CodeFormat::Lz)) {
            prepared.style = CodeStyle::Lz;
        }
        prepared.solo.partner_fingerprint = sdp_fingerprint(&offer.sdp);
        // The waiting side of a pair to remember: its redial endpoint listens from now on, so
        // its addresses go to the partner with the bond (PROTOCOL.md §6.1).
        if let (Some(dir), Some(fp)) = (&prepared.kept, &prepared.solo.partner_fingerprint) {
            let redial = RedialEndpoint::start(dir, &prepared.transport, fp.clone()).await?;
            prepared.solo.own_endpoints = redial.endpoints.clone();
            prepared.redial = Some(redial);
        }
        let (sdp, link) = transport::accept_offer(&prepared.transport, &offer.sdp)
            .await
            .map_err(|e| match e {
                transport::TransportError::BadSdp(why) => {
                    Error::Invite(invite::InviteError::BadSdp(why))
                }
                other => transport_error(other),
            })?;
        Ok(PairAnswer {
            link,
            code: PairCode::new(CodeKind::Answer, &sdp, prepared.style),
            pair_id: pair_id(&offer.sdp),
            prepared,
        })
    }

    /// The session and file events, in one bounded stream (see [`Events`]). Taken once; a
    /// second call gets a stream that has already ended.
    pub fn events(&mut self) -> Events {
        self.events.take().unwrap_or_else(Events::ended)
    }

    /// This device's id.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// Turns both devices to `page` (zero-based).
    pub fn set_page(&self, page: u32) -> Result<(), Error> {
        self.node.command(Command::SetPage { page })
    }

    /// Shows `song_id` on both devices (page 0 of it).
    pub fn set_song(&self, song_id: impl Into<String>) -> Result<(), Error> {
        self.node.command(Command::SetSong {
            song_id: song_id.into(),
        })
    }

    /// Makes this device lead the layout with `parity`: it shows the shared page, its partner
    /// the next one (PROTOCOL.md §5, SET_LAYOUT_PARITY).
    pub fn set_parity(&self, parity: Parity) -> Result<(), Error> {
        self.node.command(Command::SetParity {
            leader: String::new(),
            parity,
        })
    }

    /// Replaces the set of files sent to the partner (type-checked and hashed first). Only the
    /// device paired with files to send ([`PairOptions::send`]) sends: the other one receives.
    pub async fn send_files(&self, paths: Vec<PathBuf>) -> Result<PublishedFiles, Error> {
        match (&self.files, self.sends) {
            (Some(files), true) => Ok(files.publish(ManifestKind::Pack, Some(paths)).await?),
            _ => Err(Error::InvalidArgument(
                "only the device paired with files to send (PairOptions::send) sends files".into(),
            )),
        }
    }

    /// Says goodbye: the partner is told this device left (LEAVE_SESSION, PROTOCOL.md §6.1),
    /// so it shows that at once instead of waiting for the heartbeat, and does not wait for a
    /// reconnection. Waits briefly for the message to leave, withdraws the pair's mDNS advert
    /// and stops the node. A remembered pair stays remembered: [`Pair::resume`] brings it back.
    pub async fn close(self) {
        if self.node.command(Command::Leave).is_ok() {
            self.node.flush().await;
            tokio::time::sleep(GOODBYE_GRACE).await;
        }
        self.stop().await;
    }

    /// Stops everything this pair runs, telling nobody.
    pub(super) async fn stop(mut self) {
        let mdns = self.mdns.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mdns) = mdns {
            mdns.stop().await;
        }
        if let Some(server) = self.redial.take() {
            server.shutdown().await;
        }
        self.node.shutdown().await;
    }
}

/// Both devices name the pair after the offer's DTLS fingerprint, which both of them know
/// (PROTOCOL.md §6.1).
pub fn pair_id(offer_sdp: &str) -> String {
    let line = offer_sdp
        .lines()
        .find(|l| l.starts_with("a=fingerprint:"))
        .unwrap_or_default();
    hex::encode(&Sha256::digest(line.trim().as_bytes())[..8])
}

fn transport_error(e: transport::TransportError) -> Error {
    match e {
        transport::TransportError::NoInterface => Error::NoNetwork,
        other => Error::Transport(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_of_a_compact_code_is_its_shell_safe_url_form_and_both_forms_decode() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
                   a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
                   a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\n\
                   a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\n\
                   a=candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host\r\n";
        let code = PairCode::new(CodeKind::Offer, sdp, CodeStyle::Compact);
        assert!(code.text().starts_with("LS."), "{}", code.text());
        assert!(code.qr().starts_with("LS:"), "{}", code.qr());
        assert!(
            code.text()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
            "{}",
            code.text()
        );
        let (a, b) = (
            invite::decode(code.text()).unwrap(),
            invite::decode(code.qr()).unwrap(),
        );
        assert_eq!(a, b);
        let lz = PairCode::new(CodeKind::Offer, sdp, CodeStyle::Lz);
        assert_eq!(lz.text(), lz.qr());
        assert_eq!(invite::decode(lz.text()).unwrap().kind, CodeKind::Offer);
    }
}
