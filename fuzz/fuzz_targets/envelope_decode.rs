//! `lansync::protocol::Envelope::decode` on arbitrary bytes: must never panic, and whatever it
//! accepts must encode again and decode to the same message (validation is idempotent).

#![no_main]

use lansync::protocol::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode(data) {
        let text = env.encode().expect("a decoded message must encode");
        assert_eq!(Envelope::decode(text.as_bytes()).expect("re-decode"), env);
    }
});
