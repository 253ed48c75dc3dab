//! `SdpEssentials::from_description` on arbitrary text: the reader of every remote description
//! (an offer or answer from a peer, through the join endpoint or a pasted code). Must never panic;
//! whatever it accepts must write back to an SDP that reads back the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use lansync::invite::compact::SdpEssentials;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(essentials) = SdpEssentials::from_description(&text) {
        let again = SdpEssentials::from_description(&essentials.to_sdp())
            .expect("what we write from accepted essentials reads back");
        assert_eq!(again, essentials);
    }
});
