//! The DTLS identity a link presents: a self-signed ECDSA P-256 certificate with its key, kept
//! across restarts by a master (its fingerprint is in every invite) or made once per process.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rtc::crypto::SignatureScheme;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use sha2::{Digest, Sha256};

use super::TransportError;

/// A persistent DTLS identity (certificate + private key), so a master's fingerprint stays the
/// same across restarts. ECDSA P-256, self-signed.
#[derive(Clone)]
pub struct Identity {
    pub(super) cert: RTCCertificate,
}

impl fmt::Debug for Identity {
    // Never print the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

fn crypto_provider() -> Result<Arc<dyn rtc::crypto::RTCCryptoProvider>, TransportError> {
    rtc::crypto::default_provider().map_err(|e| TransportError::Identity(e.to_string()))
}

impl Identity {
    /// Generates a new identity.
    pub fn generate() -> Result<Self, TransportError> {
        let provider = crypto_provider()?;
        let params = CertificateParams::new(vec!["lansync".to_owned()])
            .map_err(|e| TransportError::Identity(e.to_string()))?;
        let cert =
            RTCCertificate::generate(provider.crypto(), SignatureScheme::EcdsaP256Sha256, params)
                .map_err(|e| TransportError::Identity(e.to_string()))?;
        Ok(Self { cert })
    }

    /// Serializes certificate and private key as PEM text (keep it secret: it holds the key).
    pub fn to_pem(&self) -> String {
        // Only keys held outside the process (HSM) fail to serialize; ours never are.
        self.cert.serialize_pem().unwrap_or_default()
    }

    /// Reads an identity written by [`to_pem`](Self::to_pem).
    pub fn from_pem(s: &str) -> Result<Self, TransportError> {
        // The engine's parser indexes the EXPIRES block without a length check; check it first
        // so damaged files give an error instead of a panic.
        if !expires_block_ok(s) {
            return Err(TransportError::Identity(
                "missing or malformed EXPIRES block".into(),
            ));
        }
        let provider = crypto_provider()?;
        let cert = RTCCertificate::from_pem(s, provider.crypto())
            .map_err(|e| TransportError::Identity(e.to_string()))?;
        Ok(Self { cert })
    }

    /// The certificate fingerprint as written in SDP: `"sha-256 AB:CD:…"`.
    pub fn fingerprint(&self) -> String {
        let fp = crypto_provider()
            .ok()
            .and_then(|p| self.cert.get_fingerprints(p.crypto()).ok())
            .and_then(|v| v.into_iter().next());
        match fp {
            Some(fp) => format!("{} {}", fp.algorithm, fp.value.to_uppercase()),
            None => String::new(),
        }
    }

    /// SHA-256 of the certificate (the `a=fingerprint:sha-256` value, raw).
    pub(super) fn fingerprint_bytes(&self) -> [u8; 32] {
        let der = self.cert.dtls_certificate.certificate.first();
        der.map(|d| Sha256::digest(d.as_ref()).into())
            .unwrap_or_default()
    }

    /// The identity used when [`TransportConfig::certificate`] is `None`: generated once per
    /// process, because key generation would otherwise dominate link setup.
    pub(super) fn process_default() -> Result<Self, TransportError> {
        static DEFAULT: OnceLock<Identity> = OnceLock::new();
        if let Some(id) = DEFAULT.get() {
            return Ok(id.clone());
        }
        let id = Self::generate()?;
        Ok(DEFAULT.get_or_init(|| id).clone())
    }
}

/// True when `s` starts with a PEM block tagged EXPIRES whose body decodes to ≥ 8 bytes.
fn expires_block_ok(s: &str) -> bool {
    let first = s.trim_start().split("\n\n").next().unwrap_or("");
    let mut lines = first.lines().map(str::trim);
    if lines.next() != Some("-----BEGIN EXPIRES-----") {
        return false;
    }
    let mut body = String::new();
    for line in lines {
        if line == "-----END EXPIRES-----" {
            let padding = body.chars().rev().take_while(|&c| c == '=').count();
            let valid = body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=');
            return valid && body.len() % 4 == 0 && body.len() / 4 * 3 >= 8 + padding.min(2);
        }
        body.push_str(line);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_pem_round_trip() {
        let id = Identity::generate().unwrap();
        let pem = id.to_pem();
        let back = Identity::from_pem(&pem).unwrap();
        assert_eq!(id.fingerprint(), back.fingerprint());
        assert!(id.fingerprint().starts_with("sha-256 "));
    }

    #[test]
    fn identity_bad_pem_is_an_error() {
        for s in [
            "",
            "junk",
            "-----BEGIN EXPIRES-----\nAA==\n-----END EXPIRES-----\n\n",
            "-----BEGIN EXPIRES-----\n-----END EXPIRES-----\n",
        ] {
            assert!(Identity::from_pem(s).is_err(), "{s:?}");
        }
    }
}
