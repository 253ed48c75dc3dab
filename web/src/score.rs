//! Which received file shows the current page (PROTOCOL.md §9.7): the streamed score of the
//! current song when it is verified, else a pack file named after the song — one image per
//! page (`<song>-<page>.png`, pages from 1) or one document for the song (`<song>.pdf`).

use crate::files::FileView;
use lansync::protocol::{PageState, StreamInfo};
use serde::Serialize;

/// The file to draw and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Score {
    /// SHA-256 of the file (what the page takes its bytes by).
    pub sha256: String,
    /// Its MIME type.
    pub mime: String,
    /// Its name.
    pub name: String,
    /// The 1-based page to open inside a document (`#page=N`); 1 for an image per page.
    pub page: u32,
}

/// The name without its extension, lower case.
fn stem(name: &str) -> String {
    let base = name.rsplit_once('.').map_or(name, |(s, _)| s);
    base.to_ascii_lowercase()
}

fn shown(f: &FileView) -> bool {
    f.verified && (f.mime.starts_with("image/") || f.mime == "application/pdf")
}

/// The file that shows `view`, if one is held and verified.
pub fn pick(files: &[FileView], stream: Option<&StreamInfo>, view: &PageState) -> Option<Score> {
    let page = view.page_index.saturating_add(1);
    let score = |f: &FileView, page: u32| Score {
        sha256: f.sha256.clone(),
        mime: f.mime.clone(),
        name: f.name.clone(),
        page,
    };
    if let Some(s) = stream.filter(|s| s.song_epoch == view.song_epoch) {
        if let Some(f) = files.iter().find(|f| f.sha256 == s.sha256 && shown(f)) {
            return Some(score(f, page));
        }
    }
    let song = view.song_id.as_deref()?.to_ascii_lowercase();
    let per_page = format!("{song}-{page}");
    if let Some(f) = files.iter().find(|f| shown(f) && stem(&f.name) == per_page) {
        return Some(score(f, 1));
    }
    files
        .iter()
        .find(|f| shown(f) && stem(&f.name) == song)
        .map(|f| score(f, if f.mime == "application/pdf" { page } else { 1 }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lansync::transfer::ManifestKind;

    fn file(name: &str, mime: &str, sha: char, verified: bool) -> FileView {
        FileView {
            kind: ManifestKind::Pack,
            name: name.into(),
            size: 10,
            mime: mime.into(),
            sha256: sha.to_string().repeat(64),
            verified,
        }
    }

    fn view(song: &str, page: u32) -> PageState {
        PageState {
            song_id: Some(song.into()),
            page_index: page,
            ..PageState::default()
        }
    }

    #[test]
    fn an_image_per_page_wins_over_the_songs_document() {
        let files = [
            file("Ave-Maria.pdf", "application/pdf", 'a', true),
            file("ave-maria-2.png", "image/png", 'b', true),
        ];
        let s = pick(&files, None, &view("ave-maria", 1)).unwrap();
        assert_eq!((s.name.as_str(), s.page), ("ave-maria-2.png", 1));
        let s = pick(&files, None, &view("ave-maria", 4)).unwrap();
        assert_eq!((s.name.as_str(), s.page), ("Ave-Maria.pdf", 5));
        assert_eq!(pick(&files, None, &view("gloria", 0)), None);
    }

    #[test]
    fn only_verified_pictures_and_documents_are_shown() {
        let files = [
            file("gloria.pdf", "application/pdf", 'a', false),
            file("gloria.mp3", "audio/mpeg", 'b', true),
        ];
        assert_eq!(pick(&files, None, &view("gloria", 0)), None);
    }

    #[test]
    fn the_streamed_score_of_this_song_comes_first() {
        let files = [
            file("gloria.pdf", "application/pdf", 'a', true),
            file("stream.pdf", "application/pdf", 'c', true),
        ];
        let mut stream = StreamInfo {
            stream_id: "s1".into(),
            song_epoch: 0,
            name: "stream.pdf".into(),
            mime: "application/pdf".into(),
            size: 10,
            sha256: "c".repeat(64),
        };
        let s = pick(&files, Some(&stream), &view("gloria", 2)).unwrap();
        assert_eq!((s.name.as_str(), s.page), ("stream.pdf", 3));
        stream.song_epoch = 7;
        let s = pick(&files, Some(&stream), &view("gloria", 2)).unwrap();
        assert_eq!(s.name, "gloria.pdf");
    }
}
