//! `lansync::transfer::Manifest::decode` on arbitrary bytes: must never panic, whatever it
//! accepts must survive its canonical JSON unchanged (same manifest, same pack hash), and every
//! name it accepts must be safe on every OS (PROTOCOL.md §11.1).

#![no_main]

use lansync::transfer::{Limits, Manifest, ManifestKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [ManifestKind::Pack, ManifestKind::Media] {
        if let Ok(m) = Manifest::decode(data, kind, &Limits::default()) {
            let json = m.canonical_json();
            let back = Manifest::decode(json.as_bytes(), kind, &Limits::default())
                .expect("canonical JSON of a valid manifest decodes");
            assert_eq!(back, m);
            assert_eq!(back.hash(), m.hash());
            let _ = (m.pack_meta(), m.media_meta(), m.chunk_bases());
            let mut seen = std::collections::HashSet::new();
            // Names equal ignoring case collide (the rule also normalises to NFC first).
            for f in &m.files {
                let n = &f.name;
                assert!(
                    !n.contains(['<', '>', ':', '"', '/', '\\', '|', '?', '*']),
                    "{n:?}"
                );
                assert!(!n.ends_with('.') && n.trim() == n, "{n:?}");
                assert!(!n
                    .chars()
                    .any(|c| c.is_control() || ('\u{202A}'..='\u{202E}').contains(&c)));
                let stem = n.split('.').next().unwrap_or("").to_ascii_uppercase();
                assert!(!["CON", "PRN", "AUX", "NUL", "COM1", "LPT1"].contains(&stem.trim_end()));
                assert!(seen.insert(n.to_lowercase()), "names collide: {n:?}");
            }
        }
    }
});
