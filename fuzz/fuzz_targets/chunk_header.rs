//! `lansync::transfer::decode_chunk` on arbitrary bytes: must never panic; whatever it accepts
//! must encode back to the same bytes; and a receiver fed it as a chunk must not panic either.

#![no_main]

use lansync::protocol::{Message, TransferOffer};
use lansync::session::Time;
use lansync::transfer::{
    decode_chunk, encode_chunk, sha256_hex, FileEntry, Manifest, ManifestKind, Receiver,
    ReceiverConfig,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = decode_chunk(data) {
        let again = encode_chunk(c.transfer, c.index, c.payload).expect("decoded chunk encodes");
        assert_eq!(again, data);
    }
    // A receiver expecting transfer 0 of one 40 000-byte PDF (3 chunks).
    let content = b"%PDF-1.7 fuzz";
    let manifest = Manifest {
        schema_version: 1,
        kind: ManifestKind::Pack,
        files: vec![FileEntry {
            id: "f".into(),
            name: "score.pdf".into(),
            size: 40_000,
            mime: "application/pdf".into(),
            sha256: sha256_hex(content),
            media_refs: vec![],
        }],
        updated_at: 1,
        uploaded_by: "host".into(),
    };
    let mut r = Receiver::new(ReceiverConfig::new("host"));
    let offer = Message::TransferOffer(TransferOffer {
        transfer: 0,
        manifest,
    });
    r.handle_control(Time(0), "host", &offer)
        .expect("offer accepted");
    let _ = r.handle_chunk(Time(0), data);
    while r.poll_output().is_some() {}
});
