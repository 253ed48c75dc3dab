"""Compact invite codes (PROTOCOL.md section 7.1), written from the specification alone.

decode_compact(text) -> (kind, sdp): kind is "offer" or "answer", sdp the rebuilt description
(section 7.1.5). encode_compact(sdp, kind) -> "LS:..." (section 7.1.3, text form).
"""

import base64
import hashlib
import ipaddress

B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
ICE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
SETUPS = ["actpass", "active", "passive"]
DEFAULT_MMS = 65536


class CodeError(ValueError):
    pass


def b45_encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        c, n = n % 45, n // 45
        d, e = n % 45, n // 45
        out += [B45[c], B45[d], B45[e]]
    if len(data) % 2:
        n = data[-1]
        out += [B45[n % 45], B45[n // 45]]
    return "".join(out)


def b45_decode(text: str) -> bytes:
    try:
        vals = [B45.index(ch) for ch in text]
    except ValueError:
        raise CodeError("character outside base45")
    out = bytearray()
    i = 0
    while i + 3 <= len(vals):
        n = vals[i] + 45 * vals[i + 1] + 45 * 45 * vals[i + 2]
        if n > 0xFFFF:
            raise CodeError("corrupt base45 group")
        out += bytes([n >> 8, n & 0xFF])
        i += 3
    rest = len(vals) - i
    if rest == 1:
        raise CodeError("truncated")
    if rest == 2:
        n = vals[i] + 45 * vals[i + 1]
        if n > 255:
            raise CodeError("truncated")
        out.append(n)
    return bytes(out)


def _unpack_chars(data: bytes, count: int) -> str:
    bits = int.from_bytes(data, "big")
    total = len(data) * 8
    chars = []
    for k in range(count):
        shift = total - 6 * (k + 1)
        chars.append(ICE[(bits >> shift) & 63])
    if bits & ((1 << (total - 6 * count)) - 1):
        raise CodeError("non-zero padding bits")
    return "".join(chars)


def _pack_chars(text: str) -> bytes:
    nbits = 6 * len(text)
    nbytes = (nbits + 7) // 8
    bits = 0
    for ch in text:
        bits = (bits << 6) | ICE.index(ch)
    bits <<= nbytes * 8 - nbits
    return bits.to_bytes(nbytes, "big")


def decode_compact(text: str):
    text = "".join(text.split("\n")).replace("\t", "").replace("\r", "").strip()
    prefix, body = text[:3].upper(), text[3:]
    if prefix == "LS:":
        data = b45_decode(body.upper())
    elif prefix == "LS.":
        data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    else:
        raise CodeError("not a compact code")
    if len(data) < 5:
        raise CodeError("truncated")
    if hashlib.sha256(data[:-2]).digest()[:2] != data[-2:]:
        raise CodeError("bad checksum")
    data = data[:-2]
    head = data[0]
    if head >> 4 != 1:
        raise CodeError("unsupported version %d" % (head >> 4))
    kind = "answer" if head & 0x08 else "offer"
    setup_n = (head >> 1) & 3
    if setup_n == 3:
        raise CodeError("setup 3")
    setup = SETUPS[setup_n]
    if kind == "answer" and setup == "actpass":
        raise CodeError("answer with actpass")
    ncand = (data[1] >> 5) + 1
    ulen = (data[1] & 31) + 4
    plen = data[2]
    if plen < 22:
        raise CodeError("pwd too short")
    p = (6 * (ulen + plen) + 7) // 8
    pos = 3
    creds = _unpack_chars(data[pos : pos + p], ulen + plen)
    if len(data[pos : pos + p]) != p:
        raise CodeError("truncated")
    pos += p
    ufrag, pwd = creds[:ulen], creds[ulen:]
    mms = DEFAULT_MMS
    if head & 1:
        mms = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
    fp = data[pos : pos + 32]
    if len(fp) != 32:
        raise CodeError("truncated")
    pos += 32
    cands = []
    for _ in range(ncand):
        if pos >= len(data):
            raise CodeError("truncated")
        ch = data[pos]
        if ch & 0x1F or (ch >> 5) & 3 > 1:
            raise CodeError("bad candidate header")
        alen = 16 if ch & 0x80 else 4
        raw = data[pos + 1 : pos + 1 + alen]
        port_b = data[pos + 1 + alen : pos + 3 + alen]
        if len(raw) != alen or len(port_b) != 2:
            raise CodeError("truncated")
        addr = str(ipaddress.ip_address(raw))
        cands.append((addr, int.from_bytes(port_b, "big"), "srflx" if (ch >> 5) & 3 else "host"))
        pos += 3 + alen
    if pos != len(data):
        raise CodeError("bytes left over")
    return kind, _rebuild(setup, ufrag, pwd, mms, fp, cands)


def _rebuild(setup, ufrag, pwd, mms, fp, cands) -> str:
    f = ":".join("%02X" % b for b in fp)
    sess = int.from_bytes(fp[:8], "big") >> 1
    lines = [
        "v=0",
        "o=- %d 1 IN IP4 0.0.0.0" % sess,
        "s=-",
        "t=0 0",
        "a=fingerprint:sha-256 " + f,
        "a=group:BUNDLE 0",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=setup:" + setup,
        "a=mid:0",
        "a=sendrecv",
        "a=sctp-port:5000",
        "a=max-message-size:%d" % mms,
        "a=ice-ufrag:" + ufrag,
        "a=ice-pwd:" + pwd,
        "a=fingerprint:sha-256 " + f,
    ]
    for i, (addr, port, typ) in enumerate(cands):
        pref = 126 if typ == "host" else 100
        prio = pref * (1 << 24) + (65535 - i) * (1 << 8) + 255
        line = "a=candidate:%d 1 udp %d %s %d typ %s" % (i + 1, prio, addr, port, typ)
        if typ == "srflx":
            line += " raddr 0.0.0.0 rport 0"
        lines.append(line)
    lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"


def encode_compact(sdp: str, kind: str) -> str:
    attrs = {}
    cands = []
    for line in sdp.split("\n"):
        line = line.rstrip("\r")
        if line.startswith("a=candidate:"):
            cands.append(line[len("a=candidate:") :].split())
        elif line.startswith("a=") and ":" in line:
            key, _, val = line[2:].partition(":")
            attrs.setdefault(key, []).append(val)
    setup = attrs["setup"][0]
    ufrag, pwd = attrs["ice-ufrag"][0], attrs["ice-pwd"][0]
    fp_hex = None
    for val in attrs["fingerprint"]:
        algo, _, hexs = val.partition(" ")
        if algo.lower() == "sha-256":
            fp_hex = hexs.replace(":", "")
    if fp_hex is None:
        raise CodeError("no sha-256 fingerprint")
    mms = int(attrs.get("max-message-size", [str(DEFAULT_MMS)])[0])
    kept, seen = [], set()
    for f in cands:
        # foundation component transport priority address port "typ" type ...
        if len(f) < 8 or f[1] != "1" or f[2].lower() != "udp" or f[7] not in ("host", "srflx"):
            continue
        try:
            addr = ipaddress.ip_address(f[4])
        except ValueError:
            continue  # an mDNS name
        port = int(f[5])
        if addr.is_unspecified or port == 0 or (f[4], port) in seen:
            continue
        seen.add((f[4], port))
        kept.append((int(f[3]), addr, port, f[7]))
    kept.sort(key=lambda c: -c[0])
    kept = kept[:8]
    if not kept:
        raise CodeError("no candidates")
    head = 0x10 | (0x08 if kind == "answer" else 0) | (SETUPS.index(setup) << 1)
    head |= 1 if mms != DEFAULT_MMS else 0
    out = bytearray([head, ((len(kept) - 1) << 5) | (len(ufrag) - 4), len(pwd)])
    out += _pack_chars(ufrag + pwd)
    if mms != DEFAULT_MMS:
        out += mms.to_bytes(4, "big")
    out += bytes.fromhex(fp_hex)
    for _, addr, port, typ in kept:
        ch = (0x80 if addr.version == 6 else 0) | ((1 if typ == "srflx" else 0) << 5)
        out += bytes([ch]) + addr.packed + port.to_bytes(2, "big")
    out += hashlib.sha256(out).digest()[:2]
    return "LS:" + b45_encode(bytes(out))
