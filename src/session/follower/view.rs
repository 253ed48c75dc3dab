//! What the master shows and what this device shows (PROTOCOL.md §6.3, §12.3).
//!
//! The master's latest state is ordered by song epoch then page revision, so stale and duplicate
//! updates fall away; a timed state waits until it is due on this clock (`page_due`). In follow
//! mode the device shows the master's state; in free mode only song changes reach it. Local
//! navigation is never blocked.

use crate::protocol::{FollowMode, PageState, SessionFiles, StreamInfo, MAX_SCHEDULE_AHEAD_MS};
use crate::session::clock::shift;
use crate::session::{Event, Origin, Outbox};
use crate::time::Time;

/// The master's state and the follower's view of it.
#[derive(Debug)]
pub(super) struct View {
    /// Follow or free.
    pub follow_mode: FollowMode,
    /// The master's latest known state.
    pub master: Option<PageState>,
    /// What the device shows.
    pub shown: PageState,
    /// When the master's latest (timed) page state is due on this clock.
    page_due: Option<Time>,
    /// The streamed score shown, if any.
    pub stream: Option<StreamInfo>,
    /// What files the host has published.
    files: SessionFiles,
}

impl View {
    /// Nothing shown yet, in `follow_mode`.
    pub fn new(follow_mode: FollowMode) -> View {
        View {
            follow_mode,
            master: None,
            shown: PageState::default(),
            page_due: None,
            stream: None,
            files: SessionFiles::default(),
        }
    }

    /// Shows `view`, announced as coming from `origin`, unless it is what is shown.
    pub fn show(&mut self, view: PageState, origin: Origin, out: &mut Outbox) {
        if view.song_id == self.shown.song_id
            && view.song_epoch == self.shown.song_epoch
            && view.page_index == self.shown.page_index
        {
            return;
        }
        self.shown = PageState { at: None, ..view };
        out.event(Event::page(&self.shown, origin));
    }

    /// Local navigation to `page` (never blocked: PROTOCOL.md §6.3).
    pub fn turn(&mut self, page: u32, out: &mut Outbox) {
        let view = PageState {
            page_index: page.min(crate::protocol::MAX_PAGE),
            ..self.shown.clone()
        };
        self.show(view, Origin::Local, out);
    }

    /// Applies a state from the master. `authoritative` (a JOIN_ACCEPT) replaces whatever was
    /// known; otherwise only strictly newer `(song_epoch, page_revision)` is taken. `offset_us`
    /// is the master's clock minus this one.
    pub fn apply_master(
        &mut self,
        now: Time,
        offset_us: i64,
        state: PageState,
        authoritative: bool,
        out: &mut Outbox,
    ) {
        let known = self.master.as_ref().map(PageState::version);
        if !authoritative && known.is_some_and(|v| state.version() <= v) {
            // Stale or duplicate (§6.3). The same version still pulls a follow-mode
            // view back: local navigation while following is only a glance.
            let waiting = self.page_due.is_some();
            if known == Some(state.version()) && self.follow_mode == FollowMode::Follow && !waiting
            {
                self.show(state, Origin::Remote, out);
            }
            return;
        }
        if self
            .stream
            .as_ref()
            .is_some_and(|s| s.song_epoch < state.song_epoch)
        {
            self.stream = None;
            out.event(Event::StreamCleared);
        }
        self.page_due = due(now, offset_us, &state);
        self.master = Some(state);
        if self.page_due.is_none() {
            self.show_master(out);
        }
    }

    /// Shows the master's state as the mode says: all of it when following, only a song change
    /// when free.
    fn show_master(&mut self, out: &mut Outbox) {
        let Some(state) = self.master.clone() else {
            return;
        };
        let song_changed = state.song_epoch != self.shown.song_epoch;
        if self.follow_mode == FollowMode::Follow || song_changed {
            self.show(state, Origin::Remote, out);
        }
    }

    /// Switches to `mode` (announced); `false` if it already was.
    pub fn set_mode(&mut self, mode: FollowMode, out: &mut Outbox) -> bool {
        if mode == self.follow_mode {
            return false;
        }
        self.follow_mode = mode;
        out.event(Event::FollowMode { mode });
        true
    }

    /// After a switch of mode: free → follow resyncs at once to the last known master state
    /// (§6.3). A timed turn still pending shows when due.
    pub fn resync(&mut self, out: &mut Outbox) {
        if self.follow_mode == FollowMode::Follow && self.page_due.is_none() {
            self.show_master(out);
        }
    }

    /// Shows the master's timed state if it is due at `now`.
    pub fn on_timeout(&mut self, now: Time, out: &mut Outbox) {
        if self.page_due.is_some_and(|t| now >= t) {
            self.page_due = None;
            self.show_master(out);
        }
    }

    /// When the master's timed state is due.
    pub fn deadline(&self) -> Option<Time> {
        self.page_due
    }

    /// Takes a streamed score announced for the current song (or a later one).
    pub fn set_stream(&mut self, info: StreamInfo, out: &mut Outbox) {
        let current = self.master.as_ref().map_or(0, |m| m.song_epoch);
        if info.song_epoch < current || self.stream.as_ref() == Some(&info) {
            return;
        }
        self.stream = Some(info.clone());
        out.event(Event::StreamPrepared(info));
    }

    /// Drops the streamed score, if any (announced).
    pub fn clear_stream(&mut self, out: &mut Outbox) {
        if self.stream.take().is_some() {
            out.event(Event::StreamCleared);
        }
    }

    /// Whether a STREAM_CLEAR for `stream_id` applies (empty: whatever is shown).
    pub fn clears(&self, stream_id: &str) -> bool {
        stream_id.is_empty()
            || self
                .stream
                .as_ref()
                .is_some_and(|s| s.stream_id == stream_id)
    }

    /// Takes the files the host publishes, announced when they changed.
    pub fn set_files(&mut self, files: SessionFiles, out: &mut Outbox) {
        if files != self.files {
            self.files = files;
            out.event(Event::SessionFiles(self.files.clone()));
        }
    }

    /// Out of the session: no master state, nothing pending, no streamed score (what is shown
    /// stays).
    pub fn leave(&mut self, out: &mut Outbox) {
        self.master = None;
        self.page_due = None;
        self.clear_stream(out);
    }
}

/// When a timed state is due on this clock (`offset_us`: master − this device); `None` for at
/// once (no `at`, already past, or absurdly far ahead).
fn due(now: Time, offset_us: i64, state: &PageState) -> Option<Time> {
    let at_ms = state.at?;
    let master_now_ms = shift(now, offset_us).as_millis();
    if at_ms <= master_now_ms || at_ms > master_now_ms.saturating_add(MAX_SCHEDULE_AHEAD_MS) {
        return None;
    }
    Some(shift(Time::from_millis(at_ms), -offset_us))
}
