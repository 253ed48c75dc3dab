//! `lansync::sctp::packet::Packet::decode` on arbitrary bytes: must never panic; whatever it
//! accepts must encode to bytes that decode to the same packet. The input is tried as it is
//! (almost always a checksum failure) and with its checksum made right, so the fuzzer reaches
//! the chunk parsers.

#![no_main]

use bytes::Bytes;
use lansync::sctp::packet::{self, Packet};
use libfuzzer_sys::fuzz_target;

fn check(wire: Bytes) {
    if let Ok(p) = Packet::decode(&wire) {
        let again = p.encode();
        assert_eq!(again.len(), p.encoded_len());
        assert_eq!(Packet::decode(&Bytes::from(again)).expect("re-decode"), p);
    }
}

fuzz_target!(|data: &[u8]| {
    check(Bytes::copy_from_slice(data));
    let mut fixed = data.to_vec();
    packet::finish(&mut fixed);
    check(Bytes::from(fixed));
});
