//! What a master persists (PROTOCOL.md §6.2): enough to resume the same session after a crash.
//! Each part is owned by the concern it belongs to while the master runs; the driver puts the
//! record together whenever it persists.

use super::admission::{derive, MemberRecord};
use super::MasterConfig;
use crate::auth::hex;
use crate::protocol::{Control, PageState, Playback, SessionCode, SessionFiles, StreamInfo};
use crate::session::KeyStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a master persists: enough to resume the same session after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterRecord {
    /// Session id.
    pub session_id: String,
    /// Join token.
    pub token: String,
    /// Human session code.
    pub session_code: SessionCode,
    /// Session name.
    pub session_name: String,
    /// Password, if any.
    pub password: Option<String>,
    /// Current song and page.
    pub page: PageState,
    /// Current streamed score.
    pub stream: Option<StreamInfo>,
    /// Published pack and media metadata.
    #[serde(default)]
    pub files: SessionFiles,
    /// Whether the session has ended (then every join is refused).
    pub ended: bool,
    /// Shared playback/timer state, on the master's clock.
    #[serde(default)]
    pub playback: Option<Box<Playback>>,
    /// Control mode and editor.
    #[serde(default)]
    pub control: Control,
    /// Synced keys.
    #[serde(default)]
    pub keys: KeyStore,
    /// Every device admitted and not gone for good, by device id, with the secret it proves on
    /// a rejoin (PROTOCOL.md §6.2): kept across restarts so no other device can take its id.
    #[serde(default)]
    pub members: BTreeMap<String, MemberRecord>,
}

impl MasterRecord {
    /// A new session's record, its secrets derived from `entropy` (32 bytes from a secure random
    /// source).
    pub(super) fn fresh(cfg: &MasterConfig, entropy: &[u8; 32]) -> MasterRecord {
        MasterRecord {
            session_id: hex(&derive(entropy, "lansync session id")[..8]),
            token: hex(&derive(entropy, "lansync session token")[..16]),
            session_code: SessionCode::from_bytes(&derive(entropy, "lansync session code")),
            session_name: cfg.session_name.clone(),
            password: cfg.password.clone(),
            page: PageState::default(),
            stream: None,
            files: SessionFiles::default(),
            ended: false,
            playback: None,
            control: Control::default(),
            keys: KeyStore::default(),
            members: BTreeMap::new(),
        }
    }
}
