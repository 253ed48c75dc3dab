//! `lansync::invite::decode` on arbitrary text: must never panic, hang or allocate without bound.
//! Invalid UTF-8 is read lossily, as a pasted code would be.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(invite) = lansync::invite::decode(&text) {
        // Whatever decodes must be a usable SDP of the kind it says.
        assert!(invite.sdp.starts_with("v=0"));
        assert!(lansync::invite::expect_kind(&invite, invite.kind).is_ok());
    }
    // The lz-string decoder alone, with its own cap.
    let _ = lansync::invite::lz::decompress_from_encoded_uri_component(&text);
});
