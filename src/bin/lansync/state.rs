//! Which state directory a command keeps its device in, held for the whole run: two programs on
//! one directory would share a device id and overwrite each other's records.

use lansync::node::{lock_default_state_dir, lock_state_dir, StateDirLock};
use lansync::Error;
use std::path::PathBuf;

/// The state directory of `role`: `--state-dir` when given (an error when another program holds
/// it), else the first of this user's directories of the role that no other program holds — a
/// second `lansync join` on one machine is a second device, kept in `join-2`.
pub fn claim(explicit: Option<&PathBuf>, role: &str) -> Result<StateDirLock, Error> {
    match explicit {
        Some(dir) => lock_state_dir(dir)?.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "another lansync is using {}: stop it, or give this one another --state-dir",
                dir.display()
            ))
        }),
        None => lock_default_state_dir(role)?.ok_or_else(|| {
            Error::InvalidArgument(
                "no free folder to keep this device's state in (no home directory, or nine \
                 others running): pass --state-dir DIR"
                    .into(),
            )
        }),
    }
}
