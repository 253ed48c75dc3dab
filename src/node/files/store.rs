//! The participant side for one kind of set (pack, media or streamed score): the pure
//! [`Receiver`] plus the files it asks for. Bytes go to `<dir>/.lansync/<sha256>.part` (a private
//! directory, files opened without following links, see [`disk`](super::disk)) and are moved to
//! `<dir>/<name>` only once the whole file hashed right, so a name lansync gives out is always a
//! verified file. The accepted manifest is kept in `<dir>/.lansync/<kind>.json` and the files
//! lansync wrote in `<dir>/.lansync/written.json`, so a restarted participant rebuilds what it
//! holds from disk (re-hashing it, trusting nothing) and asks only for the rest; a file lansync
//! did not write is never replaced (PROTOCOL.md §11.5, "Storage").

use super::disk;
use crate::protocol::Message;
use crate::session::Time;
use crate::transfer::{
    Limits, Manifest, ManifestKind, Receiver, ReceiverConfig, ReceiverOutput, TransferError,
    MAX_CHUNK_PAYLOAD,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest state file read back (a manifest is at most 60 KiB; the record lists as many files).
const MAX_STATE_FILE: u64 = 1 << 20;

/// A file lansync put in the directory: under which name, with which content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Written {
    /// The file's name in the manifest.
    pub name: String,
    /// The name it has in the directory (another one when the manifest's was taken).
    pub path: String,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

/// Where a kind's files live, and its receiver.
pub(crate) struct Store {
    pub kind: ManifestKind,
    pub dir: PathBuf,
    pub receiver: Receiver,
    /// The only device whose sets this store accepts.
    pub host: String,
    limits: Limits,
    open: HashMap<u32, File>,
    /// Files lansync wrote, by manifest name.
    written: BTreeMap<String, Written>,
    /// Files whose bytes could not be kept safely, for the receiver to forget.
    failed: Vec<(u32, TransferError)>,
}

/// What the store did with one receiver output, for the actor to report.
pub(crate) enum Done {
    /// Nothing to report.
    Nothing,
    /// Send this control message.
    Send(Box<Message>),
    /// A file is verified at this path.
    Committed(PathBuf),
    /// Tell the app.
    Event(crate::transfer::TransferEvent),
}

fn kind_name(kind: ManifestKind) -> &'static str {
    match kind {
        ManifestKind::Pack => "pack",
        ManifestKind::Media => "media",
        ManifestKind::Stream => "stream",
    }
}

/// Room an offer needs, from the store's own view and the other stores' (for the quota).
pub(crate) struct Room {
    /// Bytes the session's other sets hold (their manifests' sizes).
    pub held_elsewhere: u64,
    /// The session's storage quota.
    pub quota: u64,
}

impl Store {
    /// A store accepting sets from `host_id`, rebuilt from what `dir` holds.
    pub fn open(kind: ManifestKind, dir: PathBuf, host_id: &str, limits: Limits) -> Store {
        let receiver = Receiver::new(ReceiverConfig {
            host_id: host_id.to_string(),
            limits,
        });
        let mut store = Store {
            kind,
            dir,
            receiver,
            host: host_id.to_string(),
            limits,
            open: HashMap::new(),
            written: BTreeMap::new(),
            failed: Vec::new(),
        };
        store.restore();
        store
    }

    fn work_dir(&self) -> PathBuf {
        self.dir.join(".lansync")
    }

    fn part_path(&self, sha256: &str) -> PathBuf {
        self.work_dir().join(format!("{sha256}.part"))
    }

    fn manifest_path(&self) -> PathBuf {
        self.work_dir()
            .join(format!("{}.json", kind_name(self.kind)))
    }

    fn written_path(&self) -> PathBuf {
        self.work_dir().join("written.json")
    }

    /// Checks an offer against the quota, the disk and the working directory, then hands it to
    /// the receiver (as from `host`, the identity the link was admitted with). A new manifest
    /// replaces the old one's files.
    pub fn offer(
        &mut self,
        now: Time,
        host: &str,
        msg: &Message,
        room: Room,
    ) -> Result<(), TransferError> {
        let Message::TransferOffer(offer) = msg else {
            return self.receiver.handle_control(now, host, msg);
        };
        let mut m = offer.manifest.clone();
        let checked = m
            .validate(&self.limits)
            .and_then(|()| self.check_room(&m, room))
            .and_then(|()| self.check_work_dir(&m));
        if let Err(e) = checked {
            self.receiver.refuse_offer(offer.transfer, e.clone());
            return Err(e);
        }
        let before = self.receiver.hash().to_string();
        self.receiver.handle_control(now, host, msg)?;
        if self.receiver.hash() != before {
            self.remove_unlisted(&m);
        }
        if self.kind != ManifestKind::Stream {
            self.save_manifest();
        }
        Ok(())
    }

    /// The session quota over everything held, and the free space for what is still missing.
    fn check_room(&self, m: &Manifest, room: Room) -> Result<(), TransferError> {
        let needed = room.held_elsewhere.saturating_add(m.total_bytes());
        if needed > room.quota {
            return Err(TransferError::QuotaExceeded {
                needed,
                quota: room.quota,
            });
        }
        let missing: u64 = m
            .files
            .iter()
            .filter(|f| {
                self.written
                    .get(&f.name)
                    .is_none_or(|w| w.sha256 != f.sha256)
            })
            .map(|f| f.size)
            .fold(0, u64::saturating_add);
        if let Some(available) = disk::free_space(&self.dir) {
            if missing > available {
                return Err(TransferError::InsufficientStorage {
                    needed: missing,
                    available,
                });
            }
        }
        Ok(())
    }

    /// The working directory is private and nothing but our own part files sit where the
    /// manifest's part files go.
    fn check_work_dir(&self, m: &Manifest) -> Result<(), TransferError> {
        // The download directory is the user's (left as it is); the working one is ours.
        disk::private_dir(&self.work_dir())?;
        for f in &m.files {
            let part = self.part_path(&f.sha256);
            if let Ok(meta) = std::fs::symlink_metadata(&part) {
                if !meta.file_type().is_file() {
                    return Err(TransferError::UnsafePath(format!(
                        "{}: not a regular file (a planted link?)",
                        part.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Removes what lansync wrote for an older manifest and the new one does not list (same
    /// name and content), and part files of no listed file. Files changed since are left.
    fn remove_unlisted(&mut self, m: &Manifest) {
        let listed: HashSet<(&str, &str)> = m
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.sha256.as_str()))
            .collect();
        let gone: Vec<Written> = self
            .written
            .values()
            .filter(|w| !listed.contains(&(w.name.as_str(), w.sha256.as_str())))
            .cloned()
            .collect();
        for w in &gone {
            let path = self.dir.join(&w.path);
            if disk::holds(&path, w.size, &w.sha256) {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(%e, path = %path.display(), "cannot remove an old file");
                }
            }
            self.written.remove(&w.name);
        }
        let shas: HashSet<&str> = m.files.iter().map(|f| f.sha256.as_str()).collect();
        if let Ok(entries) = std::fs::read_dir(self.work_dir()) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(sha) = name.strip_suffix(".part") {
                    if !shas.contains(sha) {
                        // Unlinks the name itself, never what a link points to.
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        if !gone.is_empty() {
            self.save_written();
        }
    }

    /// Saves the accepted manifest (temporary file + rename: a crash leaves the old or new one).
    pub fn save_manifest(&self) {
        let Some(m) = self.receiver.manifest() else {
            return;
        };
        let path = self.manifest_path();
        let result = disk::private_dir(&self.work_dir())
            .map_err(std::io::Error::other)
            .and_then(|()| disk::write_private(&path, m.canonical_json().as_bytes()));
        if let Err(e) = result {
            tracing::warn!(%e, path = %path.display(), "cannot save the manifest");
        }
    }

    fn save_written(&self) {
        let path = self.written_path();
        let list: Vec<&Written> = self.written.values().collect();
        let result = serde_json::to_vec(&list)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                disk::private_dir(&self.work_dir())
                    .map_err(std::io::Error::other)
                    .and_then(|()| disk::write_private(&path, &bytes))
            });
        if let Err(e) = result {
            tracing::warn!(%e, path = %path.display(), "cannot save the record of written files");
        }
    }

    /// Reads the saved manifest and feeds every held byte back through the receiver.
    fn restore(&mut self) {
        if disk::private_dir(&self.work_dir()).is_err() {
            return;
        }
        let record = disk::read_private(&self.written_path(), MAX_STATE_FILE);
        if let Some(list) = record
            .as_ref()
            .and_then(|b| serde_json::from_slice::<Vec<Written>>(b).ok())
        {
            self.written = list
                .into_iter()
                .filter(|w| crate::transfer::check_file_name(&w.path).is_ok())
                .map(|w| (w.name.clone(), w))
                .collect();
        }
        let Some(json) = disk::read_private(&self.manifest_path(), MAX_STATE_FILE) else {
            return;
        };
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&json) else {
            return;
        };
        if self.receiver.restore(manifest.clone()).is_err() {
            return;
        }
        if record.is_none() {
            // Kept by a version that recorded nothing: a file at its name with exactly the
            // verified content is the one lansync wrote.
            for f in &manifest.files {
                if disk::holds(&self.dir.join(&f.name), f.size, &f.sha256) {
                    self.record(&f.name, &f.name, &f.sha256, f.size);
                }
            }
        }
        for (i, f) in manifest.files.iter().enumerate() {
            let part = self.part_path(&f.sha256);
            let source = if let Ok(file) = disk::open_part(&part, false) {
                // Keep whole chunks only: a crash may have cut the last write short.
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = file.set_len(len - len % MAX_CHUNK_PAYLOAD as u64);
                part
            } else {
                match self.written.get(&f.name) {
                    Some(w) if w.sha256 == f.sha256 && w.size == f.size => self.dir.join(&w.path),
                    _ => continue,
                }
            };
            if let Err(e) = self.feed(i as u32, &source) {
                tracing::info!(%e, file = %f.name, "held bytes not reused");
            }
        }
        // Restoring only commits or discards; there is nobody to tell yet.
        while let Some(out) = self.receiver.poll_output() {
            self.apply(out);
        }
        for (file, e) in std::mem::take(&mut self.failed) {
            self.receiver.storage_failed(file, e);
        }
        while self.receiver.poll_output().is_some() {}
    }

    fn feed(&mut self, file: u32, path: &Path) -> Result<(), String> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * MAX_CHUNK_PAYLOAD];
        loop {
            let n = f.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(());
            }
            self.receiver
                .feed_existing(file, &buf[..n])
                .map_err(|e| e.to_string())?;
        }
    }

    /// Files whose bytes could not be kept safely since the last call.
    pub fn take_failures(&mut self) -> Vec<(u32, TransferError)> {
        std::mem::take(&mut self.failed)
    }

    /// Carries out one receiver output on disk.
    pub fn apply(&mut self, out: ReceiverOutput) -> Done {
        match out {
            ReceiverOutput::Control(m) => Done::Send(Box::new(m)),
            ReceiverOutput::Write {
                file,
                offset,
                bytes,
            } => {
                if self.failed.iter().any(|(f, _)| *f == file) {
                    return Done::Nothing;
                }
                if let Err(e) = self.write(file, offset, &bytes) {
                    tracing::warn!(%e, file, "cannot write a received chunk");
                    self.open.remove(&file);
                    self.failed.push((file, e));
                }
                Done::Nothing
            }
            ReceiverOutput::Commit { file, name, sha256 } => {
                if self.failed.iter().any(|(f, _)| *f == file) {
                    return Done::Nothing;
                }
                match self.commit(file, &name, &sha256) {
                    Ok(path) => Done::Committed(path),
                    Err(e) => {
                        tracing::warn!(%e, "cannot move a verified file into place");
                        self.failed.push((file, e));
                        Done::Nothing
                    }
                }
            }
            ReceiverOutput::Discard { file, sha256 } => {
                self.open.remove(&file);
                let _ = std::fs::remove_file(self.part_path(&sha256));
                Done::Nothing
            }
            ReceiverOutput::Event(e) => Done::Event(e),
        }
    }

    /// Moves a verified part file to its name — or, when a file lansync did not write holds
    /// that name, to the first free `name (n).ext` — and records it.
    fn commit(&mut self, file: u32, name: &str, sha256: &str) -> Result<PathBuf, TransferError> {
        let size = self
            .receiver
            .manifest()
            .and_then(|m| m.files.get(file as usize))
            .map_or(0, |f| f.size);
        let part = self.part_path(sha256);
        let open = self.open.remove(&file);
        if std::fs::symlink_metadata(&part).is_err() {
            // Verified from a file already in place (a restart).
            return match self.written.get(name) {
                Some(w) if w.sha256 == sha256 => Ok(self.dir.join(&w.path)),
                _ => Err(TransferError::UnsafePath(format!(
                    "{name}: its bytes are gone"
                ))),
            };
        }
        let ours = match &open {
            Some(f) => disk::same_file(f, &part),
            None => disk::open_part(&part, false).is_ok(),
        };
        if !ours {
            return Err(TransferError::UnsafePath(format!(
                "{}: the part file was replaced",
                part.display()
            )));
        }
        if let Some(f) = open {
            let _ = f.sync_data();
        }
        let unsafe_path = |e: std::io::Error| TransferError::UnsafePath(e.to_string());
        // Our own older file of this name is replaced; a file someone else put there stays.
        if let Some(w) = self.written.get(name).cloned() {
            let old = self.dir.join(&w.path);
            if disk::holds(&old, w.size, &w.sha256) {
                std::fs::rename(&part, &old).map_err(unsafe_path)?;
                self.record(name, &w.path, sha256, size);
                return Ok(old);
            }
        }
        for candidate in disk::alternative_names(name) {
            let dest = self.dir.join(&candidate);
            if disk::place_new(&part, &dest).map_err(unsafe_path)? {
                self.record(name, &candidate, sha256, size);
                return Ok(dest);
            }
        }
        Err(TransferError::UnsafePath(format!(
            "{name}: every alternative name is taken"
        )))
    }

    fn record(&mut self, name: &str, path: &str, sha256: &str, size: u64) {
        self.written.insert(
            name.to_string(),
            Written {
                name: name.to_string(),
                path: path.to_string(),
                sha256: sha256.to_string(),
                size,
            },
        );
        self.save_written();
    }

    fn write(&mut self, file: u32, offset: u64, bytes: &[u8]) -> Result<(), TransferError> {
        if !self.open.contains_key(&file) {
            let sha = self
                .receiver
                .manifest()
                .and_then(|m| m.files.get(file as usize))
                .map(|f| f.sha256.clone())
                .ok_or(TransferError::SessionMediaFileNotFound(file))?;
            disk::private_dir(&self.work_dir())?;
            let f = disk::open_part(&self.part_path(&sha), offset == 0)?;
            self.open.insert(file, f);
        }
        match self.open.get(&file) {
            Some(f) => f.write_all_at(bytes, offset).map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    TransferError::InsufficientStorage {
                        needed: bytes.len() as u64,
                        available: 0,
                    }
                } else {
                    TransferError::UnsafePath(e.to_string())
                }
            }),
            None => Ok(()),
        }
    }

    /// Deletes every file of this store (a streamed score when it is cleared).
    pub fn remove_all(&mut self) {
        self.open.clear();
        // Removes links themselves, never what they point to.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
