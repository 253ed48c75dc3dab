//! The DTLS certificate fingerprints an SDP names (`a=fingerprint:sha-256 AB:CD:…`), and the one
//! check every side makes of them (PROTOCOL.md §9.4, §6.1): a description is from the expected
//! device only when **every** fingerprint line names that device's certificate — a DTLS stack
//! may accept a certificate by any listed line, so one foreign line is enough to fail.

/// The value of the first `a=fingerprint` line of `sdp` (`"sha-256 AB:CD:…"`), as written.
pub fn sdp_fingerprint(sdp: &str) -> Option<String> {
    fingerprint_lines(sdp).next().map(|v| v.trim().to_string())
}

/// Whether `sdp` has at least one `a=fingerprint` line and every one names `expected`
/// (`"sha-256 AB:CD:…"`, or bare hex meaning SHA-256; letter case and colons ignored; another
/// hash function never matches a SHA-256 fingerprint).
pub fn sdp_names_fingerprint(sdp: &str, expected: &str) -> bool {
    let Some(want) = normalise(expected) else {
        return false;
    };
    let mut found = false;
    for value in fingerprint_lines(sdp) {
        if normalise(value).as_ref() != Some(&want) {
            return false;
        }
        found = true;
    }
    found
}

fn fingerprint_lines(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("a=fingerprint:"))
}

/// `("sha-256", "ABCD…")` from `"sha-256 AB:CD:…"`; bare hex is SHA-256.
fn normalise(text: &str) -> Option<(String, String)> {
    let mut parts = text.split_whitespace();
    let first = parts.next()?;
    let (alg, value) = match parts.next() {
        Some(value) => (first.to_ascii_lowercase(), value),
        None => ("sha-256".to_string(), first),
    };
    let hex: String = value
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (parts.next().is_none() && !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some((alg, hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fingerprint_line_must_name_the_expected_certificate() {
        let sdp = "v=0\r\na=fingerprint:sha-256 ab:cd:ef\r\nm=application\r\n";
        assert!(sdp_names_fingerprint(sdp, "sha-256 AB:CD:EF"));
        assert!(sdp_names_fingerprint(sdp, "abcdef"));
        assert!(!sdp_names_fingerprint(sdp, "sha-256 AB:CD:EE"));
        assert!(!sdp_names_fingerprint(sdp, "sha-1 AB:CD:EF"));
        assert!(!sdp_names_fingerprint(sdp, ""));
        assert!(!sdp_names_fingerprint("v=0\r\n", "sha-256 AB:CD:EF"));
        let two = "a=fingerprint:sha-256 AB:CD:EF\r\na=fingerprint:sha-256 00:11\r\n";
        assert!(!sdp_names_fingerprint(two, "sha-256 AB:CD:EF"));
        let other_hash = "a=fingerprint:sha-256 AB:CD:EF\r\na=fingerprint:sha-1 AB:CD:EF\r\n";
        assert!(!sdp_names_fingerprint(other_hash, "sha-256 AB:CD:EF"));
        assert_eq!(sdp_fingerprint(sdp).as_deref(), Some("sha-256 ab:cd:ef"));
        assert_eq!(sdp_fingerprint("v=0\r\n"), None);
    }
}
