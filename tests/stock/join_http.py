"""The follower's side of the LAN join endpoint (PROTOCOL.md section 9): token and member joins
(HMAC-SHA256) and code joins (SPAKE2, from the `spake2` package), written from the
specification alone."""

import hashlib
import hmac
import http.client
import json
import urllib.parse

MAX_RESPONSE = 65536


class JoinRefused(Exception):
    """The master answered with an error (`reason`, HTTP `status`)."""

    def __init__(self, status, reason):
        super().__init__("%s (%s)" % (reason, status))
        self.status, self.reason = status, reason


def parse_join_link(link: str) -> dict:
    """Section 9.5: {"host", "port", "code", "token", "fingerprint"}."""
    link = link.strip()
    head, _, query = link.partition("?")
    if head.lower() != "lansync://join":
        raise ValueError("not a join link")
    query = query.split("#", 1)[0]
    keys = {}
    for part in query.split("&"):
        key, _, val = part.partition("=")
        if key in keys:
            raise ValueError("repeated key " + key)
        keys[key] = urllib.parse.unquote(val)
    for need in "hctf":
        if need not in keys:
            raise ValueError("missing key " + need)
    host, _, port = keys["h"].rpartition(":")
    host = host.strip("[]")
    token, fp = keys["t"].lower(), keys["f"].lower()
    if len(token) != 32 or len(fp) != 64:
        raise ValueError("malformed token or fingerprint")
    int(token, 16), int(fp, 16)
    return {"host": host, "port": int(port), "code": keys["c"], "token": token, "fingerprint": fp}


def token_key(token: str) -> bytes:
    return hashlib.sha256(b"lansync join token\0" + token.encode()).digest()


def member_key(device_id: str, secret: str) -> bytes:
    return hashlib.sha256(
        b"lansync join member\0" + device_id.encode() + b"\0" + secret.encode()
    ).digest()


def proof(key: bytes, nonce: bytes, device_id: str, offer: str) -> str:
    msg = b"lansync join v2\0" + nonce + device_id.encode() + b"\0" + offer.encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def answer_mac(key: bytes, nonce: bytes, answer: str) -> str:
    return hmac.new(key, b"lansync answer v2\0" + nonce + answer.encode(), hashlib.sha256).hexdigest()


def self_check():
    """The test vectors of section 9.2."""
    nonce = bytes(range(32))
    k = token_key("00112233445566778899aabbccddeeff")
    assert k.hex() == "c8f04fca5ce438421a0afbd5d86b97e6e2d913f94f88cef4a09a4c86da13b266"
    assert proof(k, nonce, "tablet-7", "v=0\r\n") == (
        "ecfd7ecf24d8dd2888da88cd0c98e709868638f10c3ccd9d041973ced9565579"
    )
    assert answer_mac(k, nonce, "v=0\r\n") == (
        "aa8fb33485a458fdb2813d5efdc78d1a142e9ebda71d3116059ff2ab687d5ee2"
    )
    k = member_key("tablet-7", "0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    assert k.hex() == "90a3adcf52d1279f0a4e5f44d8fc477d585ac4238cd49f20be60f3cf923e5d48"
    assert proof(k, nonce, "tablet-7", "v=0\r\n") == (
        "97ceb80bc6fd7cf0f5bdab90f88fe1ffb23c9924ad645e1ff98a2f4ec8ee1ba9"
    )


def _post(host, port, path, body, timeout=15):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = json.dumps(body).encode()
        conn.request("POST", path, data, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read(MAX_RESPONSE + 1)
        if len(raw) > MAX_RESPONSE:
            raise JoinRefused(resp.status, "response too large")
        try:
            obj = json.loads(raw)
        except ValueError:
            raise JoinRefused(resp.status, "not JSON")
        if resp.status != 200 or not isinstance(obj, dict):
            reason = obj.get("error", "join_rejected") if isinstance(obj, dict) else "join_rejected"
            raise JoinRefused(resp.status, reason)
        return obj
    finally:
        conn.close()


def normalise_code(code: str) -> str:
    """Section 6.2, in the form section 9.2 hashes: `XXXX-XXXX`, upper case."""
    bare = code.upper().replace(" ", "").replace("-", "")
    return bare[:4] + "-" + bare[4:]


def code_start(host, port, code, password, device_id):
    """`POST /v1/join/start` of a code join (section 9.2): (nonce, K)."""
    from spake2 import SPAKE2_A

    pw = normalise_code(code).encode() + b"\0" + password.encode()
    pake = SPAKE2_A(pw, idA=b"lansync follower", idB=b"lansync master")
    msg = pake.start()
    body = {"v": 2, "auth": "code", "session_code": code, "device_id": device_id,
            "pake": msg.hex()}
    obj = _post(host, port, "/v1/join/start", body)
    nonce = bytes.fromhex(obj["nonce"])
    theirs = bytes.fromhex(obj["pake"])
    if len(nonce) != 32 or len(theirs) != 33 or theirs[0] != 0x42:
        raise JoinRefused(200, "bad start answer")
    key = hashlib.sha256(b"lansync join code\0" + pake.finish(theirs)).digest()
    return nonce, key


def start(host, port, auth, device_id) -> bytes:
    """`POST /v1/join/start`: the nonce (32 raw bytes)."""
    obj = _post(host, port, "/v1/join/start", {"v": 2, "auth": auth, "device_id": device_id})
    nonce = bytes.fromhex(obj["nonce"])
    if len(nonce) != 32:
        raise JoinRefused(200, "bad nonce")
    return nonce


def join(host, port, key, nonce, device_id, device_name, offer, fingerprint=None) -> str:
    """`POST /v1/join`: the answer SDP, checked (MAC and fingerprint, section 9.4)."""
    body = {
        "v": 2,
        "nonce": nonce.hex(),
        "device_id": device_id,
        "device_name": device_name,
        "offer": offer,
        "proof": proof(key, nonce, device_id, offer),
    }
    obj = _post(host, port, "/v1/join", body)
    answer, mac = obj.get("answer"), obj.get("mac")
    if not isinstance(answer, str) or not isinstance(mac, str) or len(answer) > 16384:
        raise JoinRefused(200, "bad answer")
    if not hmac.compare_digest(mac.lower(), answer_mac(key, nonce, answer)):
        raise JoinRefused(200, "BadBinding: answer MAC")
    if fingerprint is not None:
        fps = [
            line.split(" ", 1)[1].replace(":", "").strip().lower()
            for line in answer.split("\n")
            if line.startswith("a=fingerprint:")
        ]
        if not fps or any(f != fingerprint for f in fps):
            raise JoinRefused(200, "BadBinding: fingerprint")
    return answer
