//! The crate's one error type for applications: every failure of the front door ([`Host`],
//! [`Join`], [`Pair`]) is an [`Error`], and [`Error::code`] gives its stable kebab-case code
//! (PROTOCOL.md §8), the same one `lansync --json` prints.
//!
//! [`Host`]: crate::Host
//! [`Join`]: crate::Join
//! [`Pair`]: crate::Pair

use crate::invite::InviteError;
use crate::protocol::RejectReason;
use crate::transfer::TransferError;

/// Why something an application asked for did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The session refused this device (wrong token or password, ended session, …): retrying
    /// the same request will not help.
    #[error("{}", refusal_sentence(*.0))]
    Rejected(RejectReason),
    /// A join by code reached a session that has a password, and none was given.
    #[error("this session needs a password: ask the master for it")]
    PasswordRequired,
    /// Nothing on the network advertises this session code (mDNS, PROTOCOL.md §10).
    #[error(
        "no session with code {code} was found on this network: scan the master's QR code, or \
         check that this device is on the same Wi-Fi as the master"
    )]
    SessionNotFound {
        /// The code looked for (`XXXX-XXXX`).
        code: String,
    },
    /// A rejoin was asked for, but the state directory holds no session.
    #[error(
        "no session is stored in {} to rejoin: give a join link or a session code",
        dir.display()
    )]
    NothingToRejoin {
        /// The state directory.
        dir: std::path::PathBuf,
    },
    /// The peer could not be reached at all (nothing listens there, or the network drops the
    /// packets).
    #[error("cannot reach {addr}: {detail}")]
    Unreachable {
        /// Where it was tried (an address, or a session code looked up with mDNS).
        addr: String,
        /// What went wrong.
        detail: String,
    },
    /// No network interface besides loopback: nothing on the LAN can be reached.
    #[error("no network interface besides loopback: connect to the Wi-Fi the other devices use")]
    NoNetwork,
    /// An invite or answer code cannot be used.
    #[error(transparent)]
    Invite(#[from] InviteError),
    /// A file or set of files cannot be published, sent or received.
    #[error(transparent)]
    Files(#[from] TransferError),
    /// The WebRTC link could not be made or did not open.
    #[error("the link could not be made: {0}")]
    Transport(String),
    /// mDNS discovery failed.
    #[cfg(feature = "native")]
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    /// A file of the state directory cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A value given by the application breaks a rule (PROTOCOL.md §3 limits).
    #[error("{0}")]
    InvalidArgument(String),
    /// The application sends commands far faster than the session acts on them; this one was
    /// not taken. Try again a moment later.
    #[error("the session is not keeping up with commands; try again in a moment")]
    Busy,
    /// The session has stopped (shut down, or every handle dropped): commands go nowhere.
    #[error("the session has stopped")]
    Stopped,
}

impl Error {
    /// The stable kebab-case code (PROTOCOL.md §8).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Rejected(reason) => reason.code(),
            Error::PasswordRequired => "invalid-password",
            Error::SessionNotFound { .. } => "session-not-found",
            Error::NothingToRejoin { .. } => "missing-session-code",
            Error::Unreachable { .. } | Error::NoNetwork => "network-unavailable",
            Error::Invite(e) => invite_code(e),
            Error::Files(e) => e.code(),
            Error::Transport(_) => "transport-unavailable",
            #[cfg(feature = "native")]
            Error::Discovery(e) => e.code(),
            Error::Io { .. } | Error::Stopped | Error::Busy => "internal",
            Error::InvalidArgument(_) => "bad-command",
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<std::path::PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The code of an invite error (PROTOCOL.md §7.4).
pub(crate) fn invite_code(e: &InviteError) -> &'static str {
    match e {
        InviteError::NotAnOffer => "not-an-offer",
        InviteError::NotAnAnswer => "not-an-answer",
        InviteError::BadChecksum => "bad-checksum",
        InviteError::Truncated => "truncated-code",
        InviteError::UnsupportedVersion(_) => "unsupported-code-version",
        _ => "invalid-code",
    }
}

/// One sentence for a person: what the refusal means and what to do.
fn refusal_sentence(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::InvalidToken => {
            "the join link is not this session's: scan the master's current QR code"
        }
        RejectReason::InvalidPassword => {
            "the password is wrong: ask the master for the session's password"
        }
        RejectReason::SessionEnded => "the session has ended: ask the master for a new one",
        RejectReason::VersionMismatch => {
            "the master runs another version of lansync: update both devices"
        }
        RejectReason::SessionFull => "the session is full: ask the master to make room",
        RejectReason::SessionNotFound => {
            "no session with this code here: check the code with the master"
        }
        RejectReason::DeviceIdTaken => {
            "another member of the session uses this device id: choose another one"
        }
        RejectReason::Unknown => "the master refused to let this device join",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_keeps_its_protocol_code_and_says_what_to_do() {
        let e = Error::Rejected(RejectReason::InvalidPassword);
        assert_eq!(e.code(), "invalid-password");
        assert!(e.to_string().contains("password"), "{e}");
        assert_eq!(Error::NoNetwork.code(), "network-unavailable");
        assert_eq!(Error::from(InviteError::BadChecksum).code(), "bad-checksum");
    }
}
