//! The song and page every device shows (PROTOCOL.md §6.2), turned at once or at a time of the
//! master's clock (§12.3), and what goes with the song: its streamed score and the published
//! files.

use crate::protocol::{
    truncate, PageState, SessionFiles, StreamInfo, MAX_PAGE, MAX_SCHEDULE_AHEAD_MS, MAX_SONG_ID_LEN,
};
use crate::time::Time;

/// The current song and page, the streamed score and the published files.
#[derive(Debug)]
pub(super) struct Pages {
    /// Current song and page.
    pub(super) page: PageState,
    /// Current streamed score.
    pub(super) stream: Option<StreamInfo>,
    /// Published pack and media metadata.
    pub(super) files: SessionFiles,
    /// When a timed page turn happens here (the master shows it at `at` too).
    due: Option<Time>,
}

impl Pages {
    /// Pages as persisted.
    pub(super) fn new(page: PageState, stream: Option<StreamInfo>, files: SessionFiles) -> Pages {
        Pages {
            // A timed turn still pending at a crash happens when due (at once if overdue).
            due: page.at.map(Time::from_millis),
            page,
            stream,
            files,
        }
    }

    /// Shows page `page` of the song, at `at` if that is a time ahead.
    pub(super) fn set_page(&mut self, now: Time, page: u32, at: Option<u64>) {
        let page = page.min(MAX_PAGE);
        self.page.page_index = page;
        self.page.page_revision += 1;
        self.page.at = schedule(now, at);
    }

    /// Changes song, at `at` if that is a time ahead.
    pub(super) fn set_song(&mut self, now: Time, song_id: &str, at: Option<u64>) {
        self.page = PageState {
            song_id: Some(truncate(song_id, MAX_SONG_ID_LEN).into()),
            song_epoch: self.page.song_epoch + 1,
            page_revision: 0,
            page_index: 0,
            at: schedule(now, at),
        };
        // A streamed score belongs to its song.
        if self.stream.is_some() {
            self.stream = None;
        }
    }

    /// The page just set, to announce; a timed turn shows here at `at`, as on every follower,
    /// so it is due then.
    pub(super) fn announce(&mut self) -> PageState {
        let page = self.page.clone();
        self.due = page.at.map(Time::from_millis);
        page
    }

    /// Whether a turn waits for its time.
    pub(super) fn waiting(&self) -> bool {
        self.due.is_some()
    }

    /// When the timed turn happens.
    pub(super) fn due(&self) -> Option<Time> {
        self.due
    }

    /// Whether the timed turn is due at `now`.
    pub(super) fn turn_due(&self, now: Time) -> bool {
        self.due.is_some_and(|t| now >= t)
    }

    /// The timed turn's time has come: the page is shown now.
    pub(super) fn turned(&mut self) {
        self.due = None;
        self.page.at = None;
    }

    /// A streamed score for the current song; the announcement to send.
    pub(super) fn prepare_stream(&mut self, mut info: StreamInfo) -> StreamInfo {
        info.song_epoch = self.page.song_epoch;
        self.stream = Some(info.clone());
        info
    }

    /// Clears the streamed score; the one cleared, if any.
    pub(super) fn clear_stream(&mut self) -> Option<StreamInfo> {
        self.stream.take()
    }

    /// Sets the published files; whether they changed.
    pub(super) fn set_files(&mut self, files: &SessionFiles) -> bool {
        if self.files == *files {
            return false;
        }
        self.files = files.clone();
        true
    }
}

/// The `at` to send for a change asked for at `at`: none when it is already past or absurdly
/// far ahead (then the change happens at once).
fn schedule(now: Time, at: Option<u64>) -> Option<u64> {
    let now_ms = now.as_millis();
    at.filter(|&at| at > now_ms && at <= now_ms.saturating_add(MAX_SCHEDULE_AHEAD_MS))
}
