//! Disk operations a peer's bytes can reach, made so a planted link or a pre-made directory
//! cannot redirect them (PROTOCOL.md §11.5, "Storage"): private working directories (mode 0700,
//! owned by this user, never a symbolic link), files opened with `O_NOFOLLOW`, new ones with
//! `O_EXCL`, final names taken without replacing anything.

use crate::transfer::TransferError;
use sha2::{Digest, Sha256};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn unsafe_path(path: &Path, why: &str) -> TransferError {
    TransferError::UnsafePath(format!("{}: {why}", path.display()))
}

/// Makes `dir` (its parents as needed) and checks it is a private directory of this user:
/// not a symbolic link, owned by this user, no access for others (tightened when it is ours).
pub(crate) fn private_dir(dir: &Path) -> Result<(), TransferError> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| unsafe_path(parent, &e.to_string()))?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(unsafe_path(dir, &e.to_string())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| unsafe_path(dir, &e.to_string()))?;
    if !meta.file_type().is_dir() {
        return Err(unsafe_path(dir, "not a directory (a symbolic link?)"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if meta.uid() != unsafe { libc::geteuid() } {
        return Err(unsafe_path(dir, "owned by another user"));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| unsafe_path(dir, &e.to_string()))?;
    }
    Ok(())
}

/// A new private directory with a random name under the system's temporary directory, created
/// exclusively (a name someone made in advance is never reused).
pub(crate) fn random_temp_dir(prefix: &str) -> PathBuf {
    let tmp = std::env::temp_dir();
    for _ in 0..16 {
        let mut bytes = [0u8; 12];
        if getrandom::fill(&mut bytes).is_err() {
            break;
        }
        let suffix = crate::auth::hex(&bytes);
        let dir = tmp.join(format!("{prefix}-{suffix}"));
        if DirBuilder::new().mode(0o700).create(&dir).is_ok() {
            return dir;
        }
    }
    // No randomness or no room: a path that does not exist, so every use fails safely.
    tmp.join(format!("{prefix}-unavailable/none"))
}

/// Whether `path` is a regular file of ours with exactly one name (a hard link planted at a
/// part file's path would make writes land in another file).
fn is_private_file(meta: &std::fs::Metadata) -> bool {
    // SAFETY: as above.
    meta.file_type().is_file() && meta.nlink() == 1 && meta.uid() == unsafe { libc::geteuid() }
}

/// Opens a part file for writing without following links: `fresh` replaces whatever regular
/// file is there with a new one (`O_EXCL`); otherwise the file must already be a private
/// regular file. Anything else at the path (a symbolic link, a FIFO, a shared file) is refused.
pub(crate) fn open_part(path: &Path, fresh: bool) -> Result<File, TransferError> {
    let existing = std::fs::symlink_metadata(path).ok();
    if let Some(meta) = &existing {
        if !is_private_file(meta) {
            return Err(unsafe_path(
                path,
                "not a private regular file (a planted link?)",
            ));
        }
    }
    let mut opts = OpenOptions::new();
    opts.write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    if fresh {
        if existing.is_some() {
            std::fs::remove_file(path).map_err(|e| unsafe_path(path, &e.to_string()))?;
        }
        opts.create_new(true);
    }
    let file = opts
        .open(path)
        .map_err(|e| unsafe_path(path, &e.to_string()))?;
    // Checked again on the open file: the path may have changed between the two looks.
    let meta = file
        .metadata()
        .map_err(|e| unsafe_path(path, &e.to_string()))?;
    if !is_private_file(&meta) {
        return Err(unsafe_path(path, "not a private regular file"));
    }
    Ok(file)
}

/// Whether the open `file` is still the one at `path` (nobody swapped the name).
pub(crate) fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino() && is_private_file(&b),
        _ => false,
    }
}

/// Whether `path` is a regular file (not followed) of `size` bytes hashing to `sha256`.
pub(crate) fn holds(path: &Path, size: u64, sha256: &str) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    if !meta.file_type().is_file() || meta.len() != size {
        return false;
    }
    let Ok(mut f) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    else {
        return false;
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    crate::auth::hex(&hasher.finalize()) == sha256
}

/// Writes a small file of ours (a manifest, the record of written files) through a new
/// temporary name and a rename, never following a link at either name.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    // rename replaces a link at `path` itself, never its target.
    std::fs::rename(&tmp, path)
}

/// Reads a small file of ours without following a link.
pub(crate) fn read_private(path: &Path, max: u64) -> Option<Vec<u8>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.file_type().is_file() || meta.len() > max {
        return None;
    }
    let mut bytes = Vec::new();
    f.take(max).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// `name`, then `stem (2).ext`, `stem (3).ext`, …: the names a verified file may land under
/// when the one it has is taken by a file lansync did not write.
pub(crate) fn alternative_names(name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    std::iter::once(name.to_string()).chain((2..=999).map(move |n| format!("{stem} ({n}){ext}")))
}

/// Moves the verified part file to `dest` only if nothing is there (atomically where the file
/// system has hard links). `Ok(false)`: the name is taken.
pub(crate) fn place_new(part: &Path, dest: &Path) -> std::io::Result<bool> {
    match std::fs::hard_link(part, dest) {
        Ok(()) => {
            std::fs::remove_file(part)?;
            Ok(true)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(_) => {
            // No hard links here (FAT, some Android storage): look, then rename.
            if std::fs::symlink_metadata(dest).is_ok() {
                return Ok(false);
            }
            std::fs::rename(part, dest)?;
            Ok(true)
        }
    }
}

/// Bytes this user may still write on the file system holding `dir` (or its nearest existing
/// ancestor); `None` when it cannot be told.
pub(crate) fn free_space(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let mut at = dir;
    while std::fs::metadata(at).is_err() {
        at = at.parent()?;
    }
    let c = std::ffi::CString::new(at.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}
