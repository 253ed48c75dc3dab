//! The join's PAKE and hex reading (`lansync::auth`, PROTOCOL.md §9.2) on arbitrary bytes, as a
//! peer sends them: must never panic; a malformed message fails the exchange, and a key is only
//! ever agreed when both sides ran it.

#![no_main]

use lansync::auth::{pake_master, unhex, PakeFollower};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = unhex(&text);
    // The master's side, fed a follower message.
    let master = pake_master("ABCD-EFGH", "pw", data, [1; 32]);
    // The follower's side, fed a master message.
    let (follower, msg) = PakeFollower::start("ABCD-EFGH", "pw", [2; 32]).expect("a valid code");
    let key = follower.finish(data);
    // Reflecting the follower's own message never completes the exchange.
    if data == msg.as_slice() {
        assert!(key.is_none());
    }
    if let Some((_, reply)) = master {
        assert_eq!(reply.len(), lansync::auth::PAKE_MSG_LEN);
    }
    // Arbitrary text as a session code and password.
    let _ = PakeFollower::start(&text, &text, [3; 32]);
});
