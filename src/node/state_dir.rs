//! Where each role keeps its state (identity, session record, port, downloads) when the user
//! gives no `--state-dir`: a per-user data directory, so running `lansync` from another folder
//! finds the same session instead of starting a new one in the current directory.

use std::path::PathBuf;

/// The default state directory of `role` (`host`, `join`, `pair`, …): the platform's per-user
/// data directory for lansync with a `role` subfolder — `$XDG_DATA_HOME/lansync/<role>` or
/// `~/.local/share/lansync/<role>` on Linux, `~/Library/Application Support/lansync/<role>` on
/// macOS, `%APPDATA%\lansync\data\<role>` on Windows. `None` when the platform has no home
/// directory to put it in (the caller then asks for `--state-dir`).
pub fn default_state_dir(role: &str) -> Option<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "lansync")?;
    Some(dirs.data_dir().join(role))
}

#[cfg(test)]
mod tests {
    use super::*;

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
