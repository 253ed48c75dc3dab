//! Reading back the session record a node persists ([`Record`], written by the driver on
//! `Output::Persist`): with the rules of the wire (PROTOCOL.md §3), and a bad file moved aside,
//! never overwritten.

use crate::session::Record;

/// Largest record file read: a real record is a few KiB (its keys and names are capped).
const MAX_RECORD_FILE: u64 = 1024 * 1024;

/// A record file that could not be used: it was moved aside (never silently replaced) and the
/// program goes on as with no record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// The record file.
    pub path: std::path::PathBuf,
    /// What is wrong with it.
    pub problem: String,
    /// Where it was moved (`<name>.bad-<unix-seconds>`); `None` if it could not be moved.
    pub moved_to: Option<std::path::PathBuf>,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the state record {} is unusable ({}); ",
            self.path.display(),
            self.problem
        )?;
        match &self.moved_to {
            Some(to) => write!(f, "it was moved to {}", to.display())?,
            None => write!(f, "it could not be moved aside")?,
        }
        write!(f, " and the program goes on without it")
    }
}

impl std::error::Error for BadRecord {}

/// Reads a record written by a node: `Ok(None)` when there is none, `Err` when the file exists
/// but does not parse or breaks a rule of the wire (PROTOCOL.md §3). A bad file is moved aside
/// to `<name>.bad-<unix-seconds>`, bytes unchanged, so nothing overwrites it.
pub fn load_record(path: &std::path::Path) -> Result<Option<Record>, BadRecord> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(set_aside(path, format!("cannot read it: {e}"))),
    };
    let mut bytes = Vec::new();
    if let Err(e) = file.take(MAX_RECORD_FILE + 1).read_to_end(&mut bytes) {
        return Err(set_aside(path, format!("cannot read it: {e}")));
    }
    if bytes.len() as u64 > MAX_RECORD_FILE {
        return Err(set_aside(path, "larger than 1 MiB".to_string()));
    }
    let mut record: Record = serde_json::from_slice(&bytes)
        .map_err(|e| set_aside(path, format!("not a record: {e}")))?;
    let checked = match &mut record {
        Record::Master(r) => r.validate(),
        Record::Follower(r) => r.validate(),
        Record::Solo(r) => r.validate(),
        Record::Cleared => Ok(()),
    };
    checked.map_err(|e| set_aside(path, e.to_string()))?;
    Ok(Some(record))
}

/// Moves a bad record out of the way (a rename: the bytes stay as they were).
pub(crate) fn set_aside(path: &std::path::Path, problem: String) -> BadRecord {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".bad-{secs}"));
    let to = path.with_file_name(name);
    let moved_to = match std::fs::rename(path, &to) {
        Ok(()) => Some(to),
        Err(e) => {
            tracing::warn!(%e, path = %path.display(), "cannot move a bad record aside");
            None
        }
    };
    let bad = BadRecord {
        path: path.to_path_buf(),
        problem,
        moved_to,
    };
    tracing::warn!("{bad}");
    bad
}
