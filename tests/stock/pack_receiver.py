"""A participant's side of file transfer (PROTOCOL.md section 11), written from the
specification alone: manifest checks, pack hash, ordered chunks, SHA-256 per file, resume.

Messages to send are returned as (type, payload) pairs; events to report as dicts."""

import hashlib
import os
import re
import struct
import unicodedata

CHUNK = 16376
HEADER = 8
MAX_BINARY = 16384
HEX64 = re.compile(r"^[0-9a-f]{64}$")
IDENT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
BAD_CHARS = set('<>:"/\\|?*')
DEVICE_NAMES = {"CON", "PRN", "AUX", "NUL"} | {
    p + s for p in ("COM", "LPT") for s in list("123456789") + ["¹", "²", "³"]
}


def canonical(manifest: dict) -> str:
    """Section 11.1: the canonical JSON the pack hash is taken over."""

    def s(v):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    files = []
    for f in manifest["files"]:
        refs = ",".join(s(r) for r in f.get("mediaRefs", []))
        files.append(
            '{"id":%s,"name":%s,"size":%d,"mime":%s,"sha256":%s,"mediaRefs":[%s]}'
            % (s(f["id"]), s(f["name"]), f["size"], s(f["mime"]), s(f["sha256"]), refs)
        )
    return '{"schemaVersion":%d,"kind":%s,"files":[%s],"updatedAt":%d,"uploadedBy":%s}' % (
        manifest["schemaVersion"],
        s(manifest["kind"]),
        ",".join(files),
        manifest["updatedAt"],
        s(manifest["uploadedBy"]),
    )


def pack_hash(manifest: dict) -> str:
    return hashlib.sha256(canonical(manifest).encode()).hexdigest()


def safe_name(name) -> bool:
    if not isinstance(name, str) or not 1 <= len(name.encode()) <= 255:
        return False
    if any(c in BAD_CHARS for c in name) or ".." in name:
        return False
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in name):
        return False
    if name != name.strip() or name.endswith("."):
        return False
    return name.split(".", 1)[0].rstrip(" ").upper() not in DEVICE_NAMES


def manifest_error(m, host_id):
    """None, or the ABORT code the manifest earns."""
    if not isinstance(m, dict):
        return "invalid-session-pack"
    bad = "invalid-session-pack" if m.get("kind") == "pack" else "invalid-session-media"
    if m.get("schemaVersion") != 1 or m.get("kind") not in ("pack", "media", "stream"):
        return bad
    files = m.get("files")
    if not isinstance(files, list) or not 1 <= len(files) <= 1024:
        return bad
    if not isinstance(m.get("updatedAt"), int) or not isinstance(m.get("uploadedBy"), str):
        return bad
    ids, names = set(), set()
    for f in files:
        if not isinstance(f, dict) or not isinstance(f.get("id"), str) or not IDENT.match(f["id"]):
            return bad
        if not safe_name(f.get("name")) or not isinstance(f.get("mime"), str):
            return bad
        size = f.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            return bad
        if not isinstance(f.get("sha256"), str) or not HEX64.match(f["sha256"]):
            return bad
        refs = f.get("mediaRefs", [])
        if not isinstance(refs, list) or len(refs) > 64:
            return bad
        if not all(isinstance(r, str) and IDENT.match(r) for r in refs):
            return bad
        folded = unicodedata.normalize("NFC", f["name"]).lower()
        if f["id"] in ids or folded in names:
            return bad
        ids.add(f["id"])
        names.add(folded)
    if m["uploadedBy"] != host_id:
        return "forbidden-not-host"
    return None


class PartFile:
    """One file being received: bytes held so far and their running hash."""

    def __init__(self, path, size):
        self.path, self.size = path, size
        self.hash = hashlib.sha256()
        self.held = 0
        if os.path.exists(path):
            # Resume: keep whole chunks only, and rebuild the hash from what is kept.
            held = os.path.getsize(path)
            held = min(held - held % CHUNK, size - 1 - (size - 1) % CHUNK)
            with open(path, "r+b") as fh:
                fh.truncate(held)
                while fh.tell() < held:
                    self.hash.update(fh.read(min(1 << 20, held - fh.tell())))
            self.held = held
        self.fh = open(path, "ab")

    def write(self, data):
        self.fh.write(data)
        self.hash.update(data)
        self.held += len(data)

    def close(self):
        self.fh.close()


class Receiver:
    def __init__(self, directory):
        self.dir = directory
        self.work = os.path.join(directory, ".stock-peer")
        os.makedirs(self.work, mode=0o700, exist_ok=True)
        self.verified = {}  # (name, sha256) -> path on disk
        self.round = None
        self.bytes_in = 0  # payload bytes received, over every round

    def _base_dir(self, kind):
        d = self.dir if kind == "pack" else os.path.join(self.dir, kind)
        os.makedirs(d, exist_ok=True)
        return d

    def link_lost(self):
        self._end_round()

    def _end_round(self):
        if self.round and self.round.get("part"):
            self.round["part"].close()
        self.round = None

    def on_offer(self, payload, host_id):
        """TRANSFER_OFFER -> (messages, events)."""
        transfer, m = payload.get("transfer"), payload.get("manifest")
        if not isinstance(transfer, int) or transfer < 0 or transfer > 0xFFFFFFFF:
            return [], []
        err = manifest_error(m, host_id)
        if err:
            return [("TRANSFER_ABORT", {"transfer": transfer, "code": err})], [
                {"event": "files_failed", "code": err}
            ]
        self._end_round()
        h = pack_hash(m)
        want = []
        bases, base = [], 0
        for i, f in enumerate(m["files"]):
            bases.append(base)
            base += -(-f["size"] // CHUNK)
            if (f["name"], f["sha256"]) in self.verified:
                continue
            part = os.path.join(self.work, f["sha256"] + ".part")
            held = 0
            if os.path.exists(part):
                held = os.path.getsize(part)
                held = min(held - held % CHUNK, f["size"] - 1 - (f["size"] - 1) % CHUNK)
            want.append((i, held))
        if not want:
            done = ("TRANSFER_DONE", {"transfer": transfer, "hash": h})
            return [done], [{"event": "files_done", "kind": m["kind"], "hash": h}]
        self.round = {
            "transfer": transfer,
            "manifest": m,
            "hash": h,
            "bases": bases,
            "total": base,
            "want": want,
            "at": 0,
            "part": None,
        }
        self._open_current()
        req = {"transfer": transfer, "hash": h, "want": [{"file": i, "from": b} for i, b in want]}
        return [("TRANSFER_REQUEST", req)], [
            {"event": "offer", "kind": m["kind"], "files": len(m["files"]), "want": req["want"]}
        ]

    def _open_current(self):
        r = self.round
        i, _ = r["want"][r["at"]]
        f = r["manifest"]["files"][i]
        part = PartFile(os.path.join(self.work, f["sha256"] + ".part"), f["size"])
        r["part"] = part
        r["next"] = r["bases"][i] + part.held // CHUNK

    def _abort(self, code):
        t = self.round["transfer"]
        self._end_round()
        return [("TRANSFER_ABORT", {"transfer": t, "code": code})], [
            {"event": "files_failed", "code": code}
        ]

    def on_chunk(self, data: bytes):
        """A binary message -> (messages, events)."""
        if len(data) < HEADER or self.round is None:
            return [], []
        r = self.round
        transfer, index = struct.unpack_from("<II", data)
        if transfer != r["transfer"]:
            return [], []  # stale
        if index >= r["total"]:
            return self._abort("chunk-out-of-range")
        if index < r["next"]:
            return [], []  # duplicate
        if index > r["next"]:
            return self._abort("missing-chunk")
        i, _ = r["want"][r["at"]]
        f = r["manifest"]["files"][i]
        part = r["part"]
        expect = min(CHUNK, f["size"] - part.held)
        payload = data[HEADER:]
        if len(payload) < expect:
            return self._abort("truncated-chunk")
        if len(payload) > expect:
            return self._abort("oversize-chunk")
        part.write(payload)
        r["next"] += 1
        before, self.bytes_in = self.bytes_in, self.bytes_in + len(payload)
        progress = []
        if before >> 20 != self.bytes_in >> 20:
            progress.append({"event": "files_progress", "bytes_received": self.bytes_in})
        if part.held < f["size"]:
            return [], progress
        part.close()
        r["part"] = None
        events = progress
        if part.hash.hexdigest() != f["sha256"]:
            os.unlink(part.path)
            return self._abort("hash-mismatch")
        path = self._commit(part.path, f["name"], r["manifest"]["kind"])
        self.verified[(f["name"], f["sha256"])] = path
        events.append({"event": "file_received", "kind": r["manifest"]["kind"], "name": f["name"],
                       "path": path, "size": f["size"], "sha256": f["sha256"]})
        r["at"] += 1
        if r["at"] < len(r["want"]):
            self._open_current()
            return [], events
        t, h, kind = r["transfer"], r["hash"], r["manifest"]["kind"]
        self.round = None
        events.append({"event": "files_done", "kind": kind, "hash": h})
        return [("TRANSFER_DONE", {"transfer": t, "hash": h})], events

    def _commit(self, part_path, name, kind):
        d = self._base_dir(kind)
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        candidate, n = os.path.join(d, name), 2
        while os.path.lexists(candidate):
            candidate = os.path.join(d, "%s (%d)%s%s" % (stem, n, dot, ext))
            n += 1
        os.link(part_path, candidate)  # never replaces an existing file
        os.unlink(part_path)
        return candidate
