//! `lansync::transfer::Manifest::decode` on arbitrary bytes: must never panic, and whatever it
//! accepts must survive its canonical JSON unchanged (same manifest, same pack hash).

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
        }
    }
});
