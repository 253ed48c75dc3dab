//! What a device keeps in its state directory between runs: its device id, its DTLS identity
//! (so the fingerprint in QR links and remembered by partners stays valid) and the port of its
//! join endpoint (so a printed link keeps working after a restart). Session records are written
//! by the node itself ([`super::NodeOptions::record_path`]).

use crate::transport::Identity;
use crate::Error;
use std::path::{Path, PathBuf};

/// An opened (created if missing) state directory.
pub(crate) struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens `dir`, creating it (and its parents) if needed.
    pub(crate) fn open(dir: &Path) -> Result<StateDir, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    /// A file of the directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// This device's stable id (`PREFIX-<12 hex digits>`), made and kept on first use. A kept
    /// id that breaks the id rules (PROTOCOL.md §3) is replaced, not used.
    pub(crate) fn device_id(&self, prefix: &str) -> Result<String, Error> {
        let path = self.path("device-id");
        if let Ok(id) = std::fs::read_to_string(&path) {
            let id = id.trim().to_string();
            if crate::protocol::check_id("device-id", &id, false).is_ok() {
                return Ok(id);
            }
            tracing::warn!(path = %path.display(), "the kept device id is invalid; making a new one");
        }
        let id = random_device_id(prefix);
        std::fs::write(&path, &id).map_err(|e| Error::io(&path, e))?;
        Ok(id)
    }

    /// This device's DTLS identity, made and kept on first use. A kept identity that cannot be
    /// read is an error, never silently replaced: partners and printed links rely on it.
    pub(crate) fn identity(&self) -> Result<Identity, Error> {
        let path = self.path("identity.pem");
        match std::fs::read_to_string(&path) {
            Ok(pem) => Identity::from_pem(&pem).map_err(|e| Error::Io {
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity::generate().map_err(|e| Error::Transport(e.to_string()))?;
                std::fs::write(&path, id.to_pem()).map_err(|e| Error::io(&path, e))?;
                Ok(id)
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// The port used last time, or 0 (any).
    pub(crate) fn port(&self) -> u16 {
        std::fs::read_to_string(self.path("port"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Keeps the port for next time (best effort: a new port only makes old links stale).
    pub(crate) fn save_port(&self, port: u16) {
        if let Err(e) = std::fs::write(self.path("port"), port.to_string()) {
            tracing::warn!(%e, "cannot keep the join endpoint's port");
        }
    }
}

/// Opens the state directory, if there is one, and fills an empty `device_id` (the options'
/// default) with the one kept there, else a new random one: one rule for every role.
pub(crate) fn open_with_id(
    dir: Option<&Path>,
    device_id: &mut String,
    prefix: &str,
) -> Result<Option<StateDir>, Error> {
    let kept = dir.map(StateDir::open).transpose()?;
    if device_id.is_empty() {
        *device_id = match &kept {
            Some(dir) => dir.device_id(prefix)?,
            None => random_device_id(prefix),
        };
    }
    Ok(kept)
}

/// A seed for a machine's randomness (backoff jitter), from the system's random source.
pub(crate) fn random_seed() -> Result<u64, Error> {
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| Error::Transport(format!("no random source: {e}")))?;
    Ok(u64::from_le_bytes(seed))
}

/// A new random device id, `PREFIX-<12 hex digits>`.
fn random_device_id(prefix: &str) -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    format!("{prefix}-{}", hex::encode(b))
}
