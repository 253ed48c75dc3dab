//! Keys and MACs of the LAN join (PROTOCOL.md §9.2): what a follower proves and how it knows the
//! answer comes from the real master. Pure: no IO, randomness comes in as bytes, so a web page
//! can run the same code.
//!
//! Every join proves a key `K` over a transcript that names a fresh server nonce, the device id
//! and the offer, so a captured request is worth nothing once its nonce is used. `K` comes from
//! the session token (QR link), from the member secret the master gave this device (rejoin), or,
//! for a join by session code, from a SPAKE2 exchange keyed by the code and password: a sniffed
//! code join gives nothing to test password guesses against, and an impostor learns whether one
//! guess was right per handshake it answers.

mod fingerprint;
pub use fingerprint::{sdp_fingerprint, sdp_names_fingerprint};

use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};

use crate::protocol::SessionCode;

/// A join key (32 bytes).
pub type Key = [u8; 32];

/// Length of the server's nonce, in bytes.
pub const NONCE_LEN: usize = 32;
/// Length of a proof or answer MAC, in bytes.
pub const MAC_LEN: usize = 32;
/// Length of a SPAKE2 message (side byte + Ed25519 point), in bytes.
pub const PAKE_MSG_LEN: usize = 33;

const TOKEN_KEY_LABEL: &[u8] = b"lansync join token\0";
const MEMBER_KEY_LABEL: &[u8] = b"lansync join member\0";
const CODE_KEY_LABEL: &[u8] = b"lansync join code\0";
const PROOF_LABEL: &[u8] = b"lansync join v2\0";
const ANSWER_LABEL: &[u8] = b"lansync answer v2\0";
/// SPAKE2 identities: the follower is side A, the master side B.
const FOLLOWER_ID: &[u8] = b"lansync follower";
const MASTER_ID: &[u8] = b"lansync master";

type HmacSha256 = Hmac<Sha256>;

/// `K = SHA-256("lansync join token\0" || token)`.
pub fn token_key(token: &str) -> Key {
    let mut h = Sha256::new();
    h.update(TOKEN_KEY_LABEL);
    h.update(token.as_bytes());
    h.finalize().into()
}

/// `K = SHA-256("lansync join member\0" || device_id || "\0" || member_secret)`.
pub fn member_key(device_id: &str, member_secret: &str) -> Key {
    let mut h = Sha256::new();
    h.update(MEMBER_KEY_LABEL);
    h.update(device_id.as_bytes());
    h.update(b"\0");
    h.update(member_secret.as_bytes());
    h.finalize().into()
}

/// The SPAKE2 password of a code join: `normalised_code || "\0" || password`. `None` when
/// `code` is not a session code.
fn code_password(code: &str, password: &str) -> Option<Password> {
    let code = SessionCode::parse(code)?;
    let mut bytes = code.as_str().as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(password.as_bytes());
    Some(Password::new(bytes))
}

/// `K = SHA-256("lansync join code\0" || spake2_key)`.
fn code_key(spake2_key: &[u8]) -> Key {
    let mut h = Sha256::new();
    h.update(CODE_KEY_LABEL);
    h.update(spake2_key);
    h.finalize().into()
}

/// The follower's half of a code join's PAKE, waiting for the master's message.
pub struct PakeFollower(Spake2<Ed25519Group>);

impl std::fmt::Debug for PakeFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PakeFollower")
    }
}

impl PakeFollower {
    /// Starts the exchange for `code` (any spelling) and `password` (`""` when none).
    /// `entropy` must be fresh random bytes. Returns the state and the message to send (the
    /// start request's `pake`), or `None` when `code` is not a session code.
    pub fn start(code: &str, password: &str, entropy: [u8; 32]) -> Option<(PakeFollower, Vec<u8>)> {
        let pw = code_password(code, password)?;
        let (state, msg) = Spake2::<Ed25519Group>::start_a_with_rng(
            &pw,
            &Identity::new(FOLLOWER_ID),
            &Identity::new(MASTER_ID),
            SeedRng::new(entropy),
        );
        Some((PakeFollower(state), msg))
    }

    /// The join key from the master's message; `None` when the message is malformed. A master
    /// that used another password yields a different key: its answer MAC will not verify.
    pub fn finish(self, master_msg: &[u8]) -> Option<Key> {
        self.0.finish(master_msg).ok().map(|k| code_key(&k))
    }
}

/// The master's half of a code join's PAKE: from the follower's message, the join key and the
/// message to answer with. `None` when `code` is not a session code or the message is malformed.
pub fn pake_master(
    code: &str,
    password: &str,
    follower_msg: &[u8],
    entropy: [u8; 32],
) -> Option<(Key, Vec<u8>)> {
    let pw = code_password(code, password)?;
    let (state, msg) = Spake2::<Ed25519Group>::start_b_with_rng(
        &pw,
        &Identity::new(FOLLOWER_ID),
        &Identity::new(MASTER_ID),
        SeedRng::new(entropy),
    );
    let key = state.finish(follower_msg).ok()?;
    Some((code_key(&key), msg))
}

/// `HMAC-SHA256(K, "lansync join v2\0" || nonce || device_id || "\0" || offer)`.
pub fn proof(key: &Key, nonce: &[u8], device_id: &str, offer: &str) -> [u8; MAC_LEN] {
    proof_mac(key, nonce, device_id, offer)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `given` is the proof for this transcript, compared in constant time
/// (`Mac::verify_slice` compares with the `subtle` crate; PROTOCOL.md §9.3).
pub fn verify_proof(key: &Key, nonce: &[u8], device_id: &str, offer: &str, given: &[u8]) -> bool {
    proof_mac(key, nonce, device_id, offer)
        .verify_slice(given)
        .is_ok()
}

/// `HMAC-SHA256(K, "lansync answer v2\0" || nonce || answer)`.
pub fn answer_mac(key: &Key, nonce: &[u8], answer: &str) -> [u8; MAC_LEN] {
    answer_hmac(key, nonce, answer)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `given` is the answer MAC for this transcript, compared in constant time
/// (`Mac::verify_slice`, as for [`verify_proof`]; PROTOCOL.md §9.4).
pub fn verify_answer(key: &Key, nonce: &[u8], answer: &str, given: &[u8]) -> bool {
    answer_hmac(key, nonce, answer).verify_slice(given).is_ok()
}

fn proof_mac(key: &Key, nonce: &[u8], device_id: &str, offer: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(PROOF_LABEL);
    mac.update(nonce);
    mac.update(device_id.as_bytes());
    mac.update(b"\0");
    mac.update(offer.as_bytes());
    mac
}

fn answer_hmac(key: &Key, nonce: &[u8], answer: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(ANSWER_LABEL);
    mac.update(nonce);
    mac.update(answer.as_bytes());
    mac
}

/// Lower-case hex, as keys, nonces and MACs travel in JSON (PROTOCOL.md §9.1).
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Bytes from hex digits (either case); `None` for an odd length or a non-hex character.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

/// A stream of bytes expanded from caller-given entropy (SHA-256 in counter mode), so the PAKE
/// draws its secret scalar without this module reading a random source itself.
struct SeedRng {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl SeedRng {
    fn new(seed: [u8; 32]) -> SeedRng {
        SeedRng {
            seed,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl RngCore for SeedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.used == self.block.len() {
                let mut h = Sha256::new();
                h.update(self.seed);
                h.update(self.counter.to_le_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// The seed is fresh entropy from the caller's secure random source.
impl CryptoRng for SeedRng {}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n";

    #[test]
    fn keys_follow_the_documented_derivation() {
        let mut h = Sha256::new();
        h.update(b"lansync join token\0abc");
        assert_eq!(token_key("abc").to_vec(), h.finalize().to_vec());
        let mut h = Sha256::new();
        h.update(b"lansync join member\0tablet-7\0s3cret");
        assert_eq!(
            member_key("tablet-7", "s3cret").to_vec(),
            h.finalize().to_vec()
        );
        // Another device cannot reuse a member's secret.
        assert_ne!(member_key("tablet-7", "s"), member_key("tablet-8", "s"));
    }

    #[test]
    fn documented_vectors() {
        // PROTOCOL.md §9.2: nonce = 32 bytes 00 01 … 1f, device id `tablet-7`, offer `v=0\r\n`.
        let nonce: Vec<u8> = (0..32).collect();
        let key = token_key("00112233445566778899aabbccddeeff");
        assert_eq!(
            hex(&key),
            "c8f04fca5ce438421a0afbd5d86b97e6e2d913f94f88cef4a09a4c86da13b266"
        );
        assert_eq!(
            hex(&proof(&key, &nonce, "tablet-7", OFFER)),
            "ecfd7ecf24d8dd2888da88cd0c98e709868638f10c3ccd9d041973ced9565579"
        );
        assert_eq!(
            hex(&answer_mac(&key, &nonce, OFFER)),
            "aa8fb33485a458fdb2813d5efdc78d1a142e9ebda71d3116059ff2ab687d5ee2"
        );
        let key = member_key("tablet-7", "0f1e2d3c4b5a69788796a5b4c3d2e1f0");
        assert_eq!(
            hex(&key),
            "90a3adcf52d1279f0a4e5f44d8fc477d585ac4238cd49f20be60f3cf923e5d48"
        );
        assert_eq!(
            hex(&proof(&key, &nonce, "tablet-7", OFFER)),
            "97ceb80bc6fd7cf0f5bdab90f88fe1ffb23c9924ad645e1ff98a2f4ec8ee1ba9"
        );
        assert_eq!(
            hex(&answer_mac(&key, &nonce, OFFER)),
            "8a227a28d82e63aa4e9c4a87920ea26b200c966a03b9036f8f1c7731ddd37772"
        );
    }

    #[test]
    fn proofs_bind_nonce_device_and_offer() {
        let key = token_key("t");
        let p = proof(&key, &[1; 32], "d1", OFFER);
        assert!(verify_proof(&key, &[1; 32], "d1", OFFER, &p));
        assert!(!verify_proof(&key, &[2; 32], "d1", OFFER, &p));
        assert!(!verify_proof(&key, &[1; 32], "d2", OFFER, &p));
        assert!(!verify_proof(&key, &[1; 32], "d1", "v=1\r\n", &p));
        assert!(!verify_proof(&token_key("u"), &[1; 32], "d1", OFFER, &p));
        assert!(!verify_proof(&key, &[1; 32], "d1", OFFER, &p[..31]));
        // "d1" + "\0" + "x…" cannot be read as another split of id and offer.
        assert_ne!(
            proof(&key, &[1; 32], "d", "1x"),
            proof(&key, &[1; 32], "d1", "x")
        );
        let m = answer_mac(&key, &[1; 32], OFFER);
        assert!(verify_answer(&key, &[1; 32], OFFER, &m));
        assert!(!verify_answer(&key, &[3; 32], OFFER, &m));
        // A proof is never a valid answer MAC for the same bytes.
        assert_ne!(m, proof(&key, &[1; 32], "", OFFER));
    }

    #[test]
    fn pake_agrees_only_on_the_same_code_and_password() {
        let run = |f_code: &str, f_pw: &str, m_code: &str, m_pw: &str| {
            let (f, msg) = PakeFollower::start(f_code, f_pw, [1; 32]).unwrap();
            assert_eq!(msg.len(), PAKE_MSG_LEN);
            let (mk, reply) = pake_master(m_code, m_pw, &msg, [2; 32]).unwrap();
            assert_eq!(reply.len(), PAKE_MSG_LEN);
            (f.finish(&reply).unwrap(), mk)
        };
        let (a, b) = run("abcd-efgh", "sopranos", "ABCD-EFGH", "sopranos");
        assert_eq!(a, b, "same code (any spelling) and password");
        let (a, b) = run("ABCD-EFGH", "", "ABCD-EFGH", "");
        assert_eq!(a, b, "open session: the PAKE still runs");
        let (a, b) = run("ABCD-EFGH", "altos", "ABCD-EFGH", "sopranos");
        assert_ne!(a, b);
        let (a, b) = run("ABCD-EFGH", "sopranos", "ABCD-EFGH", "");
        assert_ne!(a, b);
        // Fresh entropy, fresh key: nothing about the password is fixed in the key.
        let (f1, m1) = PakeFollower::start("ABCD-EFGH", "", [5; 32]).unwrap();
        let (k1, r1) = pake_master("ABCD-EFGH", "", &m1, [6; 32]).unwrap();
        assert_eq!(f1.finish(&r1), Some(k1));
        assert_ne!(k1, a);
    }

    #[test]
    fn pake_refuses_junk() {
        assert!(PakeFollower::start("nope", "", [1; 32]).is_none());
        assert!(pake_master("ABCD-EFGH", "", &[0x41; 10], [2; 32]).is_none());
        assert!(pake_master("ABCD-EFGH", "", &[0xff; PAKE_MSG_LEN], [2; 32]).is_none());
        let (f, msg) = PakeFollower::start("ABCD-EFGH", "", [1; 32]).unwrap();
        // The follower's own message reflected back is the wrong side.
        assert!(f.finish(&msg).is_none());
        assert!(pake_master("ABCD-EFGH", "", &[], [2; 32]).is_none());
    }

    #[test]
    fn hex_round_trip_and_junk() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex("ABcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
