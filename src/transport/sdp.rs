//! Our descriptions and the peer's: data-channel-only SDP written and read with the compact
//! invite code's [`SdpEssentials`] (PROTOCOL.md §7.1.5 is exactly what we write), so every SDP
//! lansync produces is also one a compact code can carry.

use std::net::SocketAddr;

use crate::invite::compact::{CandidateType, SdpEssentials, SetupRole};

use super::ice_dtls::IceCandidate;
use super::TransportError;

/// The ICE priority of the candidate at `index` in our description (PROTOCOL.md §7.1.5: type
/// preference, then the order of the list).
pub(crate) fn candidate_priority(kind: CandidateType, index: usize) -> u32 {
    let type_pref: u32 = match kind {
        CandidateType::Host => 126,
        CandidateType::ServerReflexive => 100,
    };
    let local_pref = 65535u32.saturating_sub(u32::try_from(index).unwrap_or(u32::MAX));
    type_pref << 24 | local_pref << 8 | 255
}

/// Our candidates in preference order, with their priorities: host candidates as bound, then
/// the server-reflexive (base, mapped) pairs.
pub(crate) fn local_candidates(
    hosts: &[SocketAddr],
    srflx: &[(SocketAddr, SocketAddr)],
) -> Vec<IceCandidate> {
    let hosts = hosts.iter().map(|&a| (CandidateType::Host, a, a));
    let mapped = srflx
        .iter()
        .map(|&(base, m)| (CandidateType::ServerReflexive, m, base));
    hosts
        .chain(mapped)
        .enumerate()
        .map(|(i, (kind, addr, base))| IceCandidate {
            addr,
            kind,
            base,
            priority: candidate_priority(kind, i),
        })
        .collect()
}

/// Said by lansync in its descriptions (PROTOCOL.md §1): "a DTLS record too large for me is
/// dropped like a lost packet, never fatal, so you may probe the path with a padded packet".
/// Some stacks (Chromium) fail the whole connection on one oversized record instead.
const MTU_PROBE_ATTRIBUTE: &str = "a=lansync-mtu-probe";

/// Writes our description: `a=setup` as given, `a=max-message-size:65536` and
/// `a=lansync-mtu-probe` (PROTOCOL.md §1).
pub(crate) fn write(
    ufrag: &str,
    pwd: &str,
    fingerprint: [u8; 32],
    setup: SetupRole,
    candidates: &[IceCandidate],
) -> String {
    SdpEssentials {
        ufrag: ufrag.to_owned(),
        pwd: pwd.to_owned(),
        fingerprint,
        setup,
        max_message_size: None,
        candidates: candidates
            .iter()
            .map(|c| crate::invite::compact::Candidate {
                addr: c.addr,
                kind: c.kind,
            })
            .collect(),
    }
    .to_sdp()
    .replacen(
        "a=max-message-size:65536\r\n",
        &format!("a=max-message-size:65536\r\n{MTU_PROBE_ATTRIBUTE}\r\n"),
        1,
    )
}

/// What we use of the peer's description.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    /// ICE username fragment.
    pub(crate) ufrag: String,
    /// ICE password.
    pub(crate) pwd: String,
    /// SHA-256 fingerprint of the certificate it will present.
    pub(crate) fingerprint: [u8; 32],
    /// Its DTLS role.
    pub(crate) setup: SetupRole,
    /// Largest message it accepts.
    pub(crate) max_message_size: usize,
    /// Its UDP candidates (host and server-reflexive), best first; may be empty.
    pub(crate) candidates: Vec<IceCandidate>,
    /// It may be sent a path MTU probe (`a=lansync-mtu-probe`).
    pub(crate) mtu_probe: bool,
}

/// Reads the peer's description (untrusted text: every field is checked by
/// [`SdpEssentials::from_description`]).
pub(crate) fn read(sdp: &str) -> Result<Remote, TransportError> {
    let e =
        SdpEssentials::from_description(sdp).map_err(|e| TransportError::BadSdp(e.to_string()))?;
    let candidates = e
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| IceCandidate {
            addr: c.addr,
            kind: c.kind,
            base: c.addr,
            priority: candidate_priority(c.kind, i),
        })
        .collect();
    // RFC 8841: 0 means "any size".
    let max_message_size = match e.max_message_size {
        None => crate::invite::compact::DEFAULT_MAX_MESSAGE_SIZE as usize,
        Some(0) => usize::MAX,
        Some(n) => n as usize,
    };
    Ok(Remote {
        ufrag: e.ufrag,
        pwd: e.pwd,
        fingerprint: e.fingerprint,
        setup: e.setup,
        max_message_size,
        candidates,
        mtu_probe: sdp.lines().any(|l| l.trim_end() == MTU_PROBE_ATTRIBUTE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn what_we_write_reads_back() {
        let cands = local_candidates(
            &[addr("192.168.1.5:4000"), addr("[fd00::5]:4001")],
            &[(addr("192.168.1.5:4000"), addr("203.0.113.9:5000"))],
        );
        let sdp = write(
            "abcd",
            "0123456789abcdefghijkl",
            [9; 32],
            SetupRole::ActPass,
            &cands,
        );
        assert!(sdp.contains("a=max-message-size:65536\r\n"), "{sdp}");
        let r = read(&sdp).unwrap();
        assert_eq!((r.ufrag.as_str(), r.pwd.len()), ("abcd", 22));
        assert_eq!(r.fingerprint, [9; 32]);
        assert_eq!(r.setup, SetupRole::ActPass);
        assert_eq!(r.max_message_size, 65536);
        assert!(r.mtu_probe);
        let got: Vec<_> = r.candidates.iter().map(|c| (c.addr, c.priority)).collect();
        let want: Vec<_> = cands.iter().map(|c| (c.addr, c.priority)).collect();
        assert_eq!(got, want);
        assert!(cands[0].priority > cands[1].priority && cands[1].priority > cands[2].priority);
    }

    #[test]
    fn an_sdp_with_only_mdns_candidates_is_read_with_none() {
        let sdp = write(
            "abcd",
            "0123456789abcdefghijkl",
            [1; 32],
            SetupRole::Active,
            &[],
        )
        .replace(
            "a=end-of-candidates",
            "a=candidate:1 1 udp 2122260223 0b3c1f4e.local 54321 typ host\r\na=end-of-candidates",
        );
        let r = read(&sdp).unwrap();
        assert!(r.candidates.is_empty());
        assert!(r.mtu_probe);
        let plain = sdp.replace("a=lansync-mtu-probe\r\n", "");
        assert!(
            !read(&plain).unwrap().mtu_probe,
            "only an explicit attribute allows probing"
        );
        assert_eq!(r.setup, SetupRole::Active);
    }

    #[test]
    fn junk_is_bad_sdp() {
        assert!(matches!(read("not an sdp"), Err(TransportError::BadSdp(_))));
        assert!(matches!(read(""), Err(TransportError::BadSdp(_))));
    }
}
