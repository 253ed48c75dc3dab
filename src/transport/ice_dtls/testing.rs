//! Settings for two ends wired back to back in tests.

use super::*;
use crate::transport::Identity;

pub(crate) fn host(addr: SocketAddr) -> IceCandidate {
    IceCandidate {
        addr,
        kind: CandidateType::Host,
        base: addr,
        priority: 126 << 24 | 65535 << 8 | 255,
    }
}

pub(crate) fn fingerprint(id: &Identity) -> [u8; 32] {
    let der = &id.cert.dtls_certificate.certificate[0];
    Sha256::digest(der.as_ref()).into()
}

pub(crate) fn config(
    me: &Identity,
    peer: &Identity,
    local: SocketAddr,
    remote: SocketAddr,
    offerer: bool,
) -> IceDtlsConfig {
    let (mine, theirs) = if offerer {
        ("aaaa", "bbbb")
    } else {
        ("bbbb", "aaaa")
    };
    IceDtlsConfig {
        local_ufrag: mine.into(),
        local_pwd: format!("{mine}pwdpwdpwdpwdpwdpwdpwd"),
        remote_ufrag: theirs.into(),
        remote_pwd: format!("{theirs}pwdpwdpwdpwdpwdpwdpwd"),
        local_candidates: vec![host(local)],
        remote_candidates: vec![host(remote)],
        controlling: offerer,
        dtls_client: !offerer,
        certificate: me.cert.dtls_certificate.clone(),
        remote_fingerprint: fingerprint(peer),
        check_interval: Duration::from_millis(20),
        max_binding_requests: 100,
        failed_timeout: Duration::from_secs(30),
    }
}
