//! mDNS discovery of choir sessions on the LAN (feature `native`).
//!
//! A master advertises its signaling endpoint as a DNS-SD service of type [`SERVICE_TYPE`]
//! (`_lansync._tcp.local.`) whose TXT record carries the session code, name, protocol version and
//! a hash of the master's DTLS fingerprint (PROTOCOL.md §10). Followers browse, list sessions, and
//! see them go when the master leaves: at once on a goodbye (the advert dropped), or when the
//! records expire (SRV TTL 120 s) after a crash.
//!
//! [`Discovery`] is a cloneable handle to a small actor: one `mdns-sd` daemon thread plus one
//! tokio task that owns the table of sessions seen and fans events out to every subscriber. Joining
//! by QR link never needs it; [`Discovery::find`] answers from the table at once when the session
//! is already known.
//!
//! Everything read from the network is validated: an advert with a malformed code, version,
//! fingerprint hash or port is ignored; the session name is clamped like every display string.
//!
//! What lives where: `txt.rs`, the TXT record codec and instance name rules (pure, with their
//! unit tests); `actor.rs`, the `mdns-sd` daemon, the actor and the [`Advertisement`];
//! `error.rs`, [`DiscoveryError`].

mod actor;
mod error;
mod txt;

pub use actor::{Advertisement, Discovery, DiscoveryEvent, FIND_ALL_SETTLE};
pub use error::DiscoveryError;
pub use txt::{
    fingerprint_hash, DiscoveredSession, SessionAdvert, FINGERPRINT_HASH_LEN, SERVICE_TYPE,
    TXT_CODE, TXT_FINGERPRINT, TXT_NAME, TXT_PORT, TXT_VERSION,
};
