//! Where each role keeps its state (identity, session record, port, downloads) when the user
//! gives no `--state-dir`: a per-user data directory, so running `lansync` from another folder
//! finds the same session instead of starting a new one in the current directory.

use crate::Error;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The default state directory of `role` (`host`, `join`, `pair`, …): the platform's per-user
/// data directory for lansync with a `role` subfolder — `$XDG_DATA_HOME/lansync/<role>` or
/// `~/.local/share/lansync/<role>` on Linux, `~/Library/Application Support/lansync/<role>` on
/// macOS, `%APPDATA%\lansync\data\<role>` on Windows. `None` when the platform has no home
/// directory to put it in (the caller then asks for `--state-dir`).
pub fn default_state_dir(role: &str) -> Option<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "lansync")?;
    Some(dirs.data_dir().join(role))
}

/// How many default state directories of one role a machine offers to programs running at once
/// (`join`, `join-2`, … `join-9`).
pub const MAX_DEFAULT_STATE_DIRS: usize = 9;

/// A state directory held by this process: one program per directory, since two would share a
/// device id and overwrite each other's records. Released when dropped, and by the system when
/// the process ends (however it ends).
#[derive(Debug)]
pub struct StateDirLock {
    _file: File,
    dir: PathBuf,
}

impl StateDirLock {
    /// The directory held.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Takes `dir` (created if missing) for this process; `Ok(None)` when another program holds it.
pub fn lock_state_dir(dir: &Path) -> Result<Option<StateDirLock>, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    if !try_lock(&file) {
        return Ok(None);
    }
    Ok(Some(StateDirLock {
        _file: file,
        dir: dir.to_path_buf(),
    }))
}

/// The default state directory of `role` that no other program holds, taken for this process:
/// `role` itself, else `role-2` … `role-9` (a second `lansync join` on the same machine is
/// another device, with its own id kept for its next run). `Ok(None)` when the platform has no
/// home directory for it, or all are held.
pub fn lock_default_state_dir(role: &str) -> Result<Option<StateDirLock>, Error> {
    let Some(first) = default_state_dir(role) else {
        return Ok(None);
    };
    for n in 1..=MAX_DEFAULT_STATE_DIRS {
        let dir = match n {
            1 => first.clone(),
            n => first.with_file_name(format!("{role}-{n}")),
        };
        if let Some(lock) = lock_state_dir(&dir)? {
            return Ok(Some(lock));
        }
    }
    Ok(None)
}

#[cfg(unix)]
fn try_lock(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this `File` owns; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> bool {
    true // no advisory locks here: one program per directory is the user's to keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_directory_is_held_by_one_holder_at_a_time() {
        let dir = std::env::temp_dir().join(format!("lansync-lock-{}", std::process::id()));
        let first = lock_state_dir(&dir).unwrap().expect("free at first");
        assert_eq!(first.dir(), dir);
        assert!(lock_state_dir(&dir).unwrap().is_none(), "held by the first");
        drop(first);
        assert!(
            lock_state_dir(&dir).unwrap().is_some(),
            "free again once dropped"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn each_role_has_its_own_folder_under_one_lansync_directory() {
        let (Some(host), Some(join)) = (default_state_dir("host"), default_state_dir("join"))
        else {
            return; // no home directory in this environment: nothing to compare
        };
        assert_eq!(host.file_name().unwrap(), "host");
        assert_eq!(host.parent(), join.parent());
        assert!(host.is_absolute(), "{}", host.display());
        assert!(
            host.parent().unwrap().to_string_lossy().contains("lansync"),
            "{}",
            host.display()
        );
    }
}
