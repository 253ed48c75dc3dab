//! The compact code's binary form (PROTOCOL.md §7.1.1): [`SdpEssentials::to_bytes`] and
//! [`SdpEssentials::from_bytes`], with the bounds-checked reader that decodes hostile input.

use super::*;

impl SdpEssentials {
    /// Checks the invariants the binary form relies on.
    fn validate(&self, kind: CodeKind) -> Result<(), InviteError> {
        check_ice_chars(&self.ufrag, "the ICE ufrag", MIN_UFRAG, MAX_UFRAG)?;
        check_ice_chars(&self.pwd, "the ICE pwd", MIN_PWD, MAX_PWD)?;
        if self.candidates.is_empty() {
            return Err(InviteError::NoCandidates);
        }
        if self.candidates.len() > MAX_CANDIDATES {
            return Err(bad_sdp(format!(
                "it has {} candidates; a compact code carries at most {MAX_CANDIDATES}",
                self.candidates.len()
            )));
        }
        if kind == CodeKind::Answer && self.setup == SetupRole::ActPass {
            // RFC 8842 §5.3: an answer picks a role.
            return Err(bad_sdp(
                "an answer must say a=setup:active or a=setup:passive",
            ));
        }
        Ok(())
    }

    /// The binary form, checksum included (PROTOCOL.md §7.1.1).
    pub fn to_bytes(&self, kind: CodeKind) -> Result<Vec<u8>, InviteError> {
        self.validate(kind)?;
        let mut out = Vec::with_capacity(80);
        let kind_bit = match kind {
            CodeKind::Offer => 0,
            CodeKind::Answer => 1,
        };
        let flags = if self.max_message_size.is_some() {
            FLAG_MAX_MESSAGE_SIZE
        } else {
            0
        };
        out.push(VERSION << 4 | kind_bit << 3 | self.setup.bits() << 1 | flags);
        // validate() bounds both lengths and the count, so these casts are exact.
        out.push(((self.candidates.len() - 1) as u8) << 5 | (self.ufrag.len() - MIN_UFRAG) as u8);
        out.push(self.pwd.len() as u8);
        // ufrag then pwd as one stream of 6-bit values, MSB first, zero-padded to a byte.
        let mut acc: u32 = 0;
        let mut nbits = 0;
        for b in self.ufrag.bytes().chain(self.pwd.bytes()) {
            acc = (acc << 6 | u32::from(ice_char_value(b).unwrap_or(0))) & 0xFFFF;
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                out.push((acc >> nbits) as u8);
            }
        }
        if nbits > 0 {
            out.push((acc << (8 - nbits)) as u8);
        }
        if let Some(n) = self.max_message_size {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&self.fingerprint);
        for c in &self.candidates {
            let type_bits = match c.kind {
                CandidateType::Host => 0,
                CandidateType::ServerReflexive => 1,
            };
            match c.addr.ip() {
                IpAddr::V4(ip) => {
                    out.push(type_bits << 5);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(0x80 | type_bits << 5);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&c.addr.port().to_be_bytes());
        }
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum[..CHECKSUM_LEN]);
        Ok(out)
    }

    /// Parses the binary form, checking the checksum, version and every field.
    pub fn from_bytes(bytes: &[u8]) -> Result<(CodeKind, Self), InviteError> {
        if bytes.len() < 3 + CHECKSUM_LEN {
            return Err(InviteError::Truncated);
        }
        let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let version = bytes[0] >> 4;
        if Sha256::digest(body)[..CHECKSUM_LEN] != *sum {
            // A code cut short fails its checksum too; tell the user which it is when the
            // header shows that bytes are missing.
            if version == VERSION && expected_len(bytes).is_some_and(|n| n > bytes.len()) {
                return Err(InviteError::Truncated);
            }
            return Err(InviteError::BadChecksum);
        }
        if version != VERSION {
            return Err(InviteError::UnsupportedVersion(version));
        }
        parse_body(body)
    }
}

/// Total length (checksum included) that a version-1 header promises, if the header is there.
fn expected_len(bytes: &[u8]) -> Option<usize> {
    let count = usize::from(bytes.get(1)? >> 5) + 1;
    let ufrag = usize::from(bytes[1] & 31) + MIN_UFRAG;
    let pwd = usize::from(*bytes.get(2)?);
    let mut n = 3 + ((ufrag + pwd) * 6).div_ceil(8) + 32;
    if bytes[0] & FLAG_MAX_MESSAGE_SIZE != 0 {
        n += 4;
    }
    for _ in 0..count {
        // Past the available bytes the families are unknown; count IPv4 (the shortest).
        n += match bytes.get(n) {
            Some(b) if b & 0x80 != 0 => 19,
            _ => 7,
        };
    }
    Some(n + CHECKSUM_LEN)
}

/// Reads the body of a checksummed version-1 code.
fn parse_body(body: &[u8]) -> Result<(CodeKind, SdpEssentials), InviteError> {
    let mut r = Reader { bytes: body, at: 0 };
    let b0 = r.u8()?;
    let kind = if b0 & 0x08 == 0 {
        CodeKind::Offer
    } else {
        CodeKind::Answer
    };
    let setup = match (b0 >> 1) & 3 {
        0 => SetupRole::ActPass,
        1 => SetupRole::Active,
        2 => SetupRole::Passive,
        _ => return Err(corrupt("it names an unknown DTLS role")),
    };
    let b1 = r.u8()?;
    let count = usize::from(b1 >> 5) + 1;
    let ufrag_len = usize::from(b1 & 31) + MIN_UFRAG;
    let pwd_len = usize::from(r.u8()?);
    if pwd_len < MIN_PWD {
        return Err(corrupt("its ICE password is shorter than 22 characters"));
    }
    let total = ufrag_len + pwd_len;
    let packed = r.take((total * 6).div_ceil(8))?;
    let mut chars = String::with_capacity(total);
    let mut acc: u32 = 0;
    let mut nbits = 0;
    for &b in packed {
        acc = (acc << 8 | u32::from(b)) & 0xFFFF;
        nbits += 8;
        while nbits >= 6 && chars.len() < total {
            nbits -= 6;
            chars.push(ice_char((acc >> nbits) as u8));
        }
    }
    if acc & ((1 << nbits) - 1) != 0 {
        return Err(corrupt("it has stray bits after the ICE credentials"));
    }
    let pwd = chars.split_off(ufrag_len);
    let ufrag = chars;
    let max_message_size = if b0 & FLAG_MAX_MESSAGE_SIZE != 0 {
        let b = r.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    } else {
        None
    };
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(r.take(32)?);
    let mut candidates = Vec::with_capacity(count);
    for _ in 0..count {
        let h = r.u8()?;
        if h & 0x1F != 0 {
            return Err(corrupt("reserved candidate bits are set"));
        }
        let kind = match (h >> 5) & 3 {
            0 => CandidateType::Host,
            1 => CandidateType::ServerReflexive,
            _ => return Err(corrupt("it names an unknown candidate type")),
        };
        let ip = if h & 0x80 == 0 {
            let b = r.take(4)?;
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        } else {
            let mut a = [0u8; 16];
            a.copy_from_slice(r.take(16)?);
            IpAddr::V6(Ipv6Addr::from(a))
        };
        let p = r.take(2)?;
        let port = u16::from_be_bytes([p[0], p[1]]);
        candidates.push(Candidate {
            addr: SocketAddr::new(ip, port),
            kind,
        });
    }
    if r.at != body.len() {
        return Err(corrupt("it has extra bytes after the last candidate"));
    }
    let e = SdpEssentials {
        ufrag,
        pwd,
        fingerprint,
        setup,
        max_message_size,
        candidates,
    };
    e.validate(kind).map_err(|err| match err {
        InviteError::BadSdp(m) => InviteError::Corrupt(m),
        other => other,
    })?;
    Ok((kind, e))
}

/// A bounds-checked cursor: running off the end means the code was cut short.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], InviteError> {
        let end = self.at.checked_add(n).ok_or(InviteError::Truncated)?;
        let s = self.bytes.get(self.at..end).ok_or(InviteError::Truncated)?;
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, InviteError> {
        Ok(self.take(1)?[0])
    }
}
