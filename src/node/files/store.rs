//! The participant side for one kind of set (pack, media or streamed score): the pure
//! [`Receiver`] plus the files it asks for. Bytes go to `<dir>/.lansync/<sha256>.part` and are
//! renamed to `<dir>/<name>` only once the whole file hashed right, so a name in `dir` is
//! always a verified file. The accepted manifest is kept in `<dir>/.lansync/<kind>.json`, so a
//! restarted participant rebuilds what it holds from disk (re-hashing it, trusting nothing) and
//! asks only for the rest.

use crate::transfer::{
    Limits, Manifest, ManifestKind, Receiver, ReceiverConfig, ReceiverOutput, MAX_CHUNK_PAYLOAD,
};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where a kind's files live, and its receiver.
pub(crate) struct Store {
    pub kind: ManifestKind,
    pub dir: PathBuf,
    pub receiver: Receiver,
    /// The only device whose sets this store accepts.
    pub host: String,
    open: HashMap<u32, File>,
}

/// What the store did with one receiver output, for the actor to report.
pub(crate) enum Done {
    /// Nothing to report.
    Nothing,
    /// Send this control message.
    Send(Box<crate::protocol::Message>),
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
            open: HashMap::new(),
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

    /// Saves the accepted manifest (temporary file + rename: a crash leaves the old or new one).
    pub fn save_manifest(&self) {
        let Some(m) = self.receiver.manifest() else {
            return;
        };
        let path = self.manifest_path();
        let tmp = path.with_extension("tmp");
        let result = std::fs::create_dir_all(self.work_dir())
            .and_then(|()| std::fs::write(&tmp, m.canonical_json()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            tracing::warn!(%e, path = %path.display(), "cannot save the manifest");
        }
    }

    /// Reads the saved manifest and feeds every held byte back through the receiver.
    fn restore(&mut self) {
        let Ok(json) = std::fs::read(self.manifest_path()) else {
            return;
        };
        let Ok(manifest) = serde_json::from_slice::<Manifest>(&json) else {
            return;
        };
        if self.receiver.restore(manifest.clone()).is_err() {
            return;
        }
        for (i, f) in manifest.files.iter().enumerate() {
            let part = self.part_path(&f.sha256);
            let whole = self.dir.join(&f.name);
            let source = if part.exists() {
                // Keep whole chunks only: a crash may have cut the last write short.
                if let Ok(file) = OpenOptions::new().write(true).open(&part) {
                    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                    let _ = file.set_len(len - len % MAX_CHUNK_PAYLOAD as u64);
                }
                part
            } else if whole.metadata().is_ok_and(|m| m.len() == f.size) {
                whole
            } else {
                continue;
            };
            if let Err(e) = self.feed(i as u32, &source) {
                tracing::info!(%e, file = %f.name, "held bytes not reused");
            }
        }
        // Restoring only commits or discards; there is nobody to tell yet.
        while let Some(out) = self.receiver.poll_output() {
            self.apply(out);
        }
    }

    fn feed(&mut self, file: u32, path: &Path) -> Result<(), String> {
        let mut f = File::open(path).map_err(|e| e.to_string())?;
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

    /// Carries out one receiver output on disk.
    pub fn apply(&mut self, out: ReceiverOutput) -> Done {
        match out {
            ReceiverOutput::Control(m) => Done::Send(Box::new(m)),
            ReceiverOutput::Write {
                file,
                offset,
                bytes,
            } => {
                if let Err(e) = self.write(file, offset, &bytes) {
                    // The hash check still guards the file: a lost write ends in a mismatch.
                    tracing::warn!(%e, file, "cannot write a received chunk");
                }
                Done::Nothing
            }
            ReceiverOutput::Commit { file, name, sha256 } => {
                let part = self.part_path(&sha256);
                let dest = self.dir.join(&name);
                if let Some(f) = self.open.remove(&file) {
                    let _ = f.sync_data();
                }
                if part.exists() {
                    if let Err(e) = std::fs::rename(&part, &dest) {
                        tracing::warn!(%e, "cannot move a verified file into place");
                        return Done::Nothing;
                    }
                }
                Done::Committed(dest)
            }
            ReceiverOutput::Discard { file, sha256 } => {
                self.open.remove(&file);
                let _ = std::fs::remove_file(self.part_path(&sha256));
                Done::Nothing
            }
            ReceiverOutput::Event(e) => Done::Event(e),
        }
    }

    fn write(&mut self, file: u32, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        if !self.open.contains_key(&file) {
            let sha = self
                .receiver
                .manifest()
                .and_then(|m| m.files.get(file as usize))
                .map(|f| f.sha256.clone())
                .ok_or_else(|| std::io::Error::other("no such file"))?;
            std::fs::create_dir_all(self.work_dir())?;
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(offset == 0)
                .open(self.part_path(&sha))?;
            self.open.insert(file, f);
        }
        match self.open.get(&file) {
            Some(f) => f.write_all_at(bytes, offset),
            None => Ok(()),
        }
    }

    /// Deletes every file of this store (a streamed score when it is cleared).
    pub fn remove_all(&mut self) {
        self.open.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
