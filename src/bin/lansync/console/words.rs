//! Events in plain words for people. `--json` keeps the raw state names, ids and 0-based pages;
//! here pages count from 1 and people are named.

use super::Role;
use lansync::protocol::{FollowMode, Parity, PresenceStatus};
use lansync::session::{Event, RoleState};

/// A page index as people count it (the first page is page 1).
fn page_number(index: u32) -> u64 {
    u64::from(index) + 1
}

/// An event in words, or `None` when people need not see it (link details, which the state
/// events already say in words).
pub fn describe(ev: &Event, role: Role) -> Option<String> {
    Some(match ev {
        Event::Page { page, song_id, .. } => match song_id {
            Some(song) if !song.is_empty() => format!("Page {} — {song}", page_number(*page)),
            _ => format!("Page {}", page_number(*page)),
        },
        Event::Link { .. } | Event::Hosting { .. } => return None,
        Event::State { state, .. } => state_words(state).to_string(),
        Event::Layout(l) => format!(
            "Layout: {} shows the {} pages, its partner the pages after them",
            if l.leader_device_id.is_empty() {
                "the device with the higher id"
            } else {
                &l.leader_device_id
            },
            match l.parity {
                Parity::Odd => "odd",
                Parity::Even => "even",
            }
        ),
        Event::Error { code, message } => format!("Error: {message} ({code})"),
        Event::ParticipantJoined(p) => match p.role {
            lansync::protocol::Role::Master => format!("{} is hosting", who(p)),
            _ => format!(
                "{} joined ({})",
                who(p),
                match p.follow_mode {
                    FollowMode::Follow => "following",
                    FollowMode::Free => "browsing freely",
                }
            ),
        },
        Event::ParticipantLeft(p) => match p.status {
            PresenceStatus::Left => format!("{} left", who(p)),
            _ => format!("{} lost — they rejoin by themselves", who(p)),
        },
        Event::Presence { count } => match count {
            1 => "Nobody else here yet".to_string(),
            n => format!("{n} here, the master included"),
        },
        Event::Joined {
            session_name,
            session_code,
            rejoin,
            ..
        } => format!(
            "{} \"{session_name}\" ({session_code})",
            if *rejoin { "Rejoined" } else { "Joined" }
        ),
        Event::Rejected { reason } => {
            format!("The master refused: {}", reason.code().replace('-', " "))
        }
        Event::SessionEnded => match role {
            Role::Master => "Session ended for everyone".to_string(),
            _ => "The master ended the session".to_string(),
        },
        Event::FollowMode { mode } => match mode {
            FollowMode::Follow => "Following the master".to_string(),
            FollowMode::Free => "Browsing on your own (f: follow the master again)".to_string(),
        },
        Event::StreamPrepared(s) => format!("Streamed score available: {}", s.name),
        Event::StreamCleared => "Streamed score cleared".into(),
        Event::SessionFiles(f) => match (&f.pack, &f.media) {
            (None, None) => "The master publishes no files".into(),
            (p, m) => format!(
                "The master publishes a pack of {} and {} media file(s)",
                bytes(p.as_ref().map_or(0, |p| p.size)),
                m.as_ref().map_or(0, |m| m.files_count)
            ),
        },
        Event::GaveUp { attempts } => {
            format!("Gave up reconnecting after {attempts} attempts (r: try again)")
        }
        Event::PairRemembered { .. } => {
            "Pair remembered: the two devices find each other again by themselves".into()
        }
        Event::Playback(p) => format!(
            "{} {} at {}",
            if p.media_id == lansync::session::TIMER_MEDIA_ID {
                "Timer"
            } else {
                &p.media_id
            },
            if p.running { "running" } else { "paused" },
            clock(p.position_us)
        ),
        Event::Control(c) => format!(
            "Control: {}{}",
            serde_json::to_value(c.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            c.editor
                .as_ref()
                .map(|e| format!(", editor {e}"))
                .unwrap_or_default()
        ),
        Event::Key { key, value, .. } => format!("{key} = {value}"),
        Event::SyncGroups { groups } => format!("Applying {}", groups.join(", ")),
    })
}

/// A role's state (PROTOCOL.md §6) in words.
fn state_words(state: &RoleState) -> &'static str {
    use lansync::session::{FollowerState as F, MasterState as M, SoloState as S};
    match state {
        RoleState::Solo(S::LocalOnly) => "Not paired — pages turn on this device only",
        RoleState::Solo(S::PairedConnected) => "Paired — pages turn on both devices",
        RoleState::Solo(S::PairedDegraded) => "Partner not answering — waiting…",
        RoleState::Solo(S::PairedReconnecting) => "Partner lost — reconnecting…",
        RoleState::Follower(F::Joining) => "Joining…",
        RoleState::Follower(F::Rejoining) => "Rejoining…",
        RoleState::Follower(F::ConnectedFollow) => "Connected — following the master",
        RoleState::Follower(F::ConnectedFree) => "Connected — browsing on your own",
        RoleState::Follower(F::DisconnectedLocal) => {
            "Master lost — you keep your page; reconnecting…"
        }
        RoleState::Follower(F::IdleLocal) => "Not in a session",
        RoleState::Master(M::Idle) => "No session yet",
        RoleState::Master(M::SessionActive) => "Session open",
        RoleState::Master(M::ReconnectingLinks) => {
            "A follower was lost — waiting for them to rejoin"
        }
        RoleState::Master(M::SessionEnded) => "Session ended",
    }
}

/// A participant's name, or its id when it gave none.
fn who(p: &lansync::protocol::Participant) -> &str {
    if p.name.is_empty() {
        &p.id
    } else {
        &p.name
    }
}

/// `m:ss` (or `h:mm:ss`) of a position in microseconds.
fn clock(us: u64) -> String {
    let s = us / 1_000_000;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

/// A size for people: `812 B`, `4.2 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use lansync::session::Origin;

    #[test]
    fn pages_count_from_one_and_raw_states_become_words() {
        let page = Event::Page {
            song_id: Some("ave-maria".into()),
            song_epoch: 1,
            page: 2,
            origin: Origin::Remote,
        };
        assert_eq!(
            describe(&page, Role::Follower).as_deref(),
            Some("Page 3 — ave-maria")
        );
        let state = Event::State {
            state: RoleState::Solo(lansync::session::SoloState::PairedReconnecting),
            reason: "link lost".into(),
        };
        let words = describe(&state, Role::Solo).unwrap();
        assert!(!words.contains("SOLO_"), "{words}");
    }

    #[test]
    fn sizes_and_clocks_read_plainly() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(4_200_000), "4.2 MB");
        assert_eq!(clock(90_000_000), "1:30");
        assert_eq!(clock(3_723_000_000), "1:02:03");
    }
}
