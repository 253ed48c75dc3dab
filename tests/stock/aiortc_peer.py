#!/usr/bin/env python3
"""A stock WebRTC peer for lansync, on aiortc with default settings, written from PROTOCOL.md
alone (not from lansync's sources), to prove a third party can interoperate.

    aiortc_peer.py pair-answer CODE [--id ID] [--loopback]
        answers `lansync pair offer`'s invite code (section 7.1) and plays the solo role (6.1)
    aiortc_peer.py pair-offer [--id ID] [--loopback]
        prints an invite code for `lansync pair answer`, takes its answer code on stdin
    aiortc_peer.py join LINK --download DIR [--id ID] [--name NAME] [--loopback]
    aiortc_peer.py join --code CODE --endpoint HOST:PORT [--password P] --download DIR ...
        joins `lansync host` by its QR link (section 9, token) or by its session code (SPAKE2;
        the endpoint given, as mDNS would find it), follows it (6.3) and receives its files
        (section 11), rejoining with its member secret after a lost link

stdout: one JSON event per line (`invite`, `answer`, `link`, `hello`, `joined`, `page`, `offer`,
`files_progress`, `file_received`, `files_done`, `files_failed`, `rejected`, `session_ended`,
`error`); stdin: JSON commands per line (`answer`, `set_page`, `quit`).
`--loopback` makes aiortc gather its candidate on 127.0.0.1 only (aioice leaves loopback out
otherwise), the counterpart of lansync's own `--loopback`; nothing else is tuned.
"""

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import invite_codes  # noqa: E402
import join_http  # noqa: E402
import pack_receiver  # noqa: E402

try:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
except ImportError as e:  # the test reads this exit code
    print("aiortc is not importable: %s" % e, file=sys.stderr)
    sys.exit(77)

MAX_CONTROL = 65536
READY = '{"lansync":"ready"}'
STATE_TYPES = {"SET_SONG", "SET_PAGE", "STATE_SNAPSHOT"}
UNORDERED = {"PING", "PONG"}
SILENT_DEAD = 10.0
OPEN_DEADLINE = 10.0


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def now_ms():
    return int(time.time() * 1000)


def now_us():
    return int(time.time() * 1_000_000)


def is_u64(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 64


class Link:
    """One peer connection with the two negotiated channels of section 1."""

    def __init__(self, me, offering):
        self.me, self.offering = me, offering
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.control = self.binary = None
        self.session_id = ""
        self.seq = 0
        self.xfer_seq = 0
        self.highest = -1
        self.highest_xfer = -1
        self.last_sent = time.monotonic()
        self.last_heard = time.monotonic()
        self.open = asyncio.get_event_loop().create_future()
        self.closed = asyncio.Event()
        self.inbox = asyncio.Queue()
        self.channels_open = 0

    def make_channels(self):
        self.control = self.pc.createDataChannel("control", negotiated=True, id=0)
        self.binary = self.pc.createDataChannel("binary", negotiated=True, id=1)
        for ch in (self.control, self.binary):
            ch.on("open", self._channel_open)
            ch.on("close", self._lost)
        self.control.on("message", self._on_control)
        self.binary.on("message", self._on_binary)

        @self.pc.on("connectionstatechange")
        def _state():
            if self.pc.connectionState in ("failed", "closed"):
                self._lost()

    def _channel_open(self):
        self.channels_open += 1
        if self.channels_open == 2 and not self.offering:
            # Section 1: the answering side says it can hear, then the link is open.
            self.control.send(READY)
            self.last_sent = time.monotonic()
            if not self.open.done():
                self.open.set_result(True)

    def _lost(self):
        self.closed.set()

    def _on_control(self, msg):
        self.last_heard = time.monotonic()
        if not isinstance(msg, str) or len(msg.encode()) > MAX_CONTROL:
            emit({"event": "error", "message": "oversize or binary control message"})
            self.closed.set()
            return
        if msg == READY:
            if self.offering and not self.open.done():
                self.open.set_result(True)
            return
        env = decode_envelope(msg)
        if env is None:
            return
        if env["type"].startswith("TRANSFER_"):
            if env["seq"] <= self.highest_xfer:
                return
            self.highest_xfer = env["seq"]
        elif env["type"] not in STATE_TYPES and env["type"] not in UNORDERED:
            if env["seq"] <= self.highest:
                return
            self.highest = env["seq"]
        if env["session_id"] and not self.session_id:
            self.session_id = env["session_id"]
        self.inbox.put_nowait(("msg", env))

    def _on_binary(self, msg):
        self.last_heard = time.monotonic()
        if not isinstance(msg, bytes) or len(msg) > pack_receiver.MAX_BINARY:
            emit({"event": "error", "message": "oversize or text binary message"})
            self.closed.set()
            return
        self.inbox.put_nowait(("chunk", msg))

    def send(self, typ, payload, ts=None):
        if typ.startswith("TRANSFER_"):
            self.xfer_seq += 1
            seq = self.xfer_seq
        else:
            self.seq += 1
            seq = self.seq
        env = {
            "v": 1,
            "session_id": self.session_id,
            "sender_id": self.me,
            "type": typ,
            "ts": now_ms() if ts is None else ts,
            "seq": seq,
            "payload": payload,
        }
        if self.control.readyState == "open":
            self.control.send(json.dumps(env, separators=(",", ":"), ensure_ascii=False))
            self.last_sent = time.monotonic()

    async def heartbeat(self):
        """Section 6.4: a PING after 1 s without sending; a link silent for 10 s is dead."""
        ping = 0
        while not self.closed.is_set():
            await asyncio.sleep(0.2)
            if time.monotonic() - self.last_heard > SILENT_DEAD:
                emit({"event": "link", "state": "dead"})
                self.closed.set()
                return
            if time.monotonic() - self.last_sent >= 1.0:
                ping += 1
                self.send("PING", {"id": ping, "t0": now_us()})

    def answer_ping(self, env):
        p = env["payload"]
        if is_u64(p.get("id")) and is_u64(p.get("t0")):
            t1 = now_us()
            self.send("PONG", {"id": p["id"], "t0": p["t0"], "t1": t1, "t2": now_us()})

    async def close(self):
        self.closed.set()
        await self.pc.close()


def decode_envelope(text):
    """Section 2 and 3, first phase: None when the envelope must be dropped."""
    try:
        env = json.loads(text)
    except ValueError:
        return None
    if not isinstance(env, dict) or env.get("v") != 1:
        return None
    sid, sender, typ = env.get("session_id"), env.get("sender_id"), env.get("type")
    if not isinstance(sid, str) or not isinstance(sender, str) or not isinstance(typ, str):
        return None
    if len(sid) > 64 or not 1 <= len(sender) <= 64:
        return None
    if not is_u64(env.get("seq")) or not is_u64(env.get("ts")):
        return None
    payload = env.get("payload", {})
    if not isinstance(payload, dict):
        return None
    env["payload"] = payload
    return env


def page_state(p):
    """A PageState (section 5), or None when malformed."""
    if not isinstance(p, dict):
        return None
    song = p.get("song_id")
    if song is not None and (not isinstance(song, str) or len(song.encode()) > 256):
        return None
    page = p.get("page_index")
    if not isinstance(page, int) or isinstance(page, bool) or not 0 <= page <= 99999:
        return None
    epoch, rev = p.get("song_epoch", 0), p.get("page_revision", 0)
    if not is_u64(epoch) or not is_u64(rev):
        return None
    return {"song_id": song, "song_epoch": epoch, "page_revision": rev, "page_index": page}


def start_stdin(loop, queue):
    def pump():
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, daemon=True).start()


async def read_commands(commands):
    """The JSON commands of stdin's lines until end of input or `quit`; a line that is not JSON
    is reported as `bad-command`."""
    while True:
        line = await commands.get()
        if line is None:
            return
        try:
            cmd = json.loads(line)
        except ValueError:
            emit({"event": "error", "code": "bad-command"})
            continue
        if cmd.get("cmd") == "quit":
            return
        yield cmd


async def wait_until_open(link):
    opened = asyncio.ensure_future(link.open)
    closed = asyncio.ensure_future(link.closed.wait())
    done, _ = await asyncio.wait({opened, closed}, timeout=OPEN_DEADLINE,
                                 return_when=asyncio.FIRST_COMPLETED)
    closed.cancel()
    return opened in done and opened.done() and not link.closed.is_set()


# ------------------------------------------------------------------------------------ solo


async def pair(args, commands):
    """Solo pairing from codes (section 7): answers an invite, or makes one and takes the answer
    code from a command `{"cmd":"answer","code":...}`."""
    if args.mode == "pair-answer":
        kind, offer_sdp = invite_codes.decode_compact(args.code)
        if kind != "offer":
            emit({"event": "error", "code": "not-an-offer"})
            return 2
        link = Link(args.id, offering=False)
        await link.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        link.make_channels()
        await link.pc.setLocalDescription(await link.pc.createAnswer())
        emit({"event": "answer",
              "code": invite_codes.encode_compact(link.pc.localDescription.sdp, "answer")})
    else:
        link = Link(args.id, offering=True)
        link.make_channels()
        await link.pc.setLocalDescription(await link.pc.createOffer())
        emit({"event": "invite",
              "code": invite_codes.encode_compact(link.pc.localDescription.sdp, "offer")})
        while True:
            line = await commands.get()
            if line is None:
                return 1
            cmd = json.loads(line)
            if cmd.get("cmd") != "answer":
                continue
            kind, answer_sdp = invite_codes.decode_compact(cmd["code"])
            if kind == "answer":
                break
            emit({"event": "error", "code": "not-an-answer"})
        await link.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
    if not await wait_until_open(link):
        emit({"event": "error", "message": "link did not open"})
        return 1
    emit({"event": "link", "state": "connected"})
    # Section 6.1: the page with the stamp of its last change; the layout likewise.
    state = {"page": {"song_id": None, "song_epoch": 0, "page_revision": 0, "page_index": 0},
             "stamp": (0, args.id), "top_ts": 0}
    layout = {"leader_device_id": "", "parity": "odd"}

    def snapshot():
        ts, sender = state["stamp"]
        link.send("STATE_SNAPSHOT", {"kind": "solo", "page": state["page"],
                                     "last_page_change": {"ts": ts, "sender_id": sender},
                                     "layout": layout})

    link.send("HELLO", {"mode": "solo", "device_name": args.name, "capabilities": []})
    snapshot()

    def adopt(page, stamp):
        state["top_ts"] = max(state["top_ts"], stamp[0])
        if stamp > state["stamp"]:
            changed = page["page_index"] != state["page"]["page_index"] or \
                page["song_id"] != state["page"]["song_id"]
            state["page"], state["stamp"] = page, stamp
            if changed:
                emit({"event": "page", "page": page["page_index"], "song_id": page["song_id"],
                      "origin": "remote"})

    async def on_link():
        while True:
            what, env = await link.inbox.get()
            if what != "msg":
                continue
            typ, p = env["type"], env["payload"]
            if typ == "PING":
                link.answer_ping(env)
            elif typ == "HELLO":
                emit({"event": "hello", "mode": p.get("mode"), "peer": env["sender_id"],
                      "session_id": env["session_id"]})
            elif typ in ("SET_PAGE", "SET_SONG"):
                page = page_state(p)
                if page:
                    adopt(page, (env["ts"], env["sender_id"]))
            elif typ == "STATE_SNAPSHOT" and p.get("kind") == "solo":
                page, st = page_state(p.get("page")), p.get("last_page_change")
                if page and isinstance(st, dict) and is_u64(st.get("ts")) \
                        and isinstance(st.get("sender_id"), str):
                    adopt(page, (st["ts"], st["sender_id"]))

    async def every_5s():
        while True:
            await asyncio.sleep(5)
            snapshot()

    async def on_commands():
        async for cmd in read_commands(commands):
            if cmd.get("cmd") == "set_page":
                ts = max(now_ms(), state["top_ts"] + 1)
                state["top_ts"] = ts
                page = dict(state["page"], page_index=int(cmd["page"]))
                state["page"], state["stamp"] = page, (ts, args.id)
                # `"send": false` keeps the change local, as if its SET_PAGE were lost: only
                # the periodic snapshot (section 6.1) can then carry it.
                if cmd.get("send", True):
                    link.send("SET_PAGE", page, ts=ts)
                emit({"event": "page", "page": page["page_index"], "song_id": page["song_id"],
                      "origin": "local"})

    tasks = [asyncio.ensure_future(c) for c in (on_link(), every_5s(), link.heartbeat())]
    cmd_task = asyncio.ensure_future(on_commands())
    closed = asyncio.ensure_future(link.closed.wait())
    await asyncio.wait({cmd_task, closed}, return_when=asyncio.FIRST_COMPLETED)
    for t in tasks + [cmd_task, closed]:
        t.cancel()
    lost = link.closed.is_set()
    await link.close()
    if lost:
        emit({"event": "link", "state": "ended"})
    return 0


# ------------------------------------------------------------------------------------ choir


class Follower:
    def __init__(self, args):
        self.args = args
        if args.link:
            self.target = join_http.parse_join_link(args.link)
        else:
            host, _, port = args.endpoint.rpartition(":")
            # Joining by code: the master's fingerprint is learnt from its first verified
            # answer and checked on every rejoin (section 9.4).
            self.target = {"host": host.strip("[]"), "port": int(port), "code": args.code,
                           "token": None, "fingerprint": None}
        self.member_secret = None
        self.master_id = None
        self.state = None  # the master's PageState
        self.receiver = pack_receiver.Receiver(args.download)
        self.quit = False

    def show(self, page):
        emit({"event": "page", "page": page["page_index"], "song_id": page["song_id"],
              "song_epoch": page["song_epoch"], "page_revision": page["page_revision"]})

    def take_state(self, page, replace=False):
        """Section 6.3: ordered by (song_epoch, page_revision); follow mode."""
        if page is None:
            return
        old = self.state
        key = (page["song_epoch"], page["page_revision"])
        if not replace and old is not None and key < (old["song_epoch"], old["page_revision"]):
            return
        self.state = page
        if old is None or (old["page_index"], old["song_id"], old["song_epoch"]) != (
                page["page_index"], page["song_id"], page["song_epoch"]):
            self.show(page)

    async def dial(self):
        """Sections 9.1–9.4: start, offer with proof, verified answer. A Link, not yet open."""
        t = self.target
        me = self.args.id
        if self.member_secret:
            key = join_http.member_key(me, self.member_secret)
            nonce = await asyncio.to_thread(join_http.start, t["host"], t["port"], "member", me)
        elif t["token"]:
            key = join_http.token_key(t["token"])
            nonce = await asyncio.to_thread(join_http.start, t["host"], t["port"], "token", me)
        else:
            nonce, key = await asyncio.to_thread(join_http.code_start, t["host"], t["port"],
                                                 t["code"], self.args.password, me)
        link = Link(me, offering=True)
        link.make_channels()
        await link.pc.setLocalDescription(await link.pc.createOffer())
        offer = link.pc.localDescription.sdp
        try:
            answer = await asyncio.to_thread(join_http.join, t["host"], t["port"], key, nonce, me,
                                             self.args.name, offer, t["fingerprint"])
        except BaseException:
            await link.close()
            raise
        if t["fingerprint"] is None:
            fps = [line.split(" ", 1)[1].replace(":", "").strip().lower()
                   for line in answer.split("\n") if line.startswith("a=fingerprint:sha-256 ")]
            t["fingerprint"] = fps[0] if fps else None
        await link.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        return link

    async def run(self, commands):
        attempt = 0
        cmd_task = asyncio.ensure_future(self.on_commands(commands))
        while not self.quit:
            try:
                link = await self.dial()
            except join_http.JoinRefused as e:
                if e.reason in ("rate_limited", "busy", "stale_nonce") or e.status >= 500 \
                        and e.reason not in ("session_full",):
                    await asyncio.sleep(1)
                    continue
                emit({"event": "rejected", "reason": e.reason, "status": e.status})
                return 3
            except OSError as e:
                attempt += 1
                emit({"event": "error", "message": "join endpoint: %s" % e})
                await asyncio.sleep(min(30, 2 ** attempt) * random.uniform(0.8, 1.2))
                continue
            if not await wait_until_open(link):
                pc = link.pc
                emit({"event": "link", "state": "did-not-open", "ice": pc.iceConnectionState,
                      "connection": pc.connectionState, "channels_open": link.channels_open})
                await link.close()
                continue
            emit({"event": "link", "state": "connected"})
            attempt = 0
            result = await self.session(link, cmd_task)
            await link.close()
            self.receiver.link_lost()
            if result is not None:
                return result
            emit({"event": "link", "state": "reconnecting"})
            await asyncio.sleep(random.uniform(0.8, 1.2))
        return 0

    async def on_commands(self, commands):
        async for _ in read_commands(commands):
            pass
        self.quit = True

    async def session(self, link, cmd_task):
        """Runs one link: None when it was lost (rejoin), an exit code when done."""
        link.send("HELLO", {"mode": "choir_follower", "device_name": self.args.name,
                            "capabilities": []})
        joined = asyncio.Event()

        def join_request():
            p = {"device_name": self.args.name, "follow_mode": "follow"}
            if self.member_secret:
                p["member_secret"] = self.member_secret
            elif self.target["token"]:
                p["token"] = self.target["token"]
            else:
                p["session_code"] = self.target["code"]
                if self.args.password:
                    p["password"] = self.args.password
            link.send("JOIN_REQUEST", p)

        async def until_answered():
            while not joined.is_set():
                join_request()
                try:
                    await asyncio.wait_for(joined.wait(), 2)
                except asyncio.TimeoutError:
                    pass

        result = {}

        async def on_link():
            while True:
                what, env = await link.inbox.get()
                if what == "chunk":
                    msgs, events = self.receiver.on_chunk(env)
                    for typ, p in msgs:
                        link.send(typ, p)
                    for e in events:
                        emit(e)
                    continue
                typ, p = env["type"], env["payload"]
                if typ == "PING":
                    link.answer_ping(env)
                elif typ == "JOIN_ACCEPT":
                    secret = p.get("member_secret")
                    if not isinstance(secret, str) or len(secret) > 128:
                        continue
                    rejoin = self.member_secret is not None
                    self.member_secret, self.master_id = secret, env["sender_id"]
                    snap = p.get("snapshot") if isinstance(p.get("snapshot"), dict) else {}
                    if not joined.is_set():
                        joined.set()
                        emit({"event": "joined", "rejoin": rejoin, "master": env["sender_id"],
                              "session_id": env["session_id"]})
                    self.take_state(page_state(snap.get("page")), replace=True)
                elif typ == "JOIN_REJECT":
                    emit({"event": "rejected", "reason": str(p.get("reason"))[:48]})
                    result["code"] = 3
                    return
                elif typ == "SESSION_END":
                    emit({"event": "session_ended"})
                    result["code"] = 0
                    return
                elif not joined.is_set():
                    continue
                elif typ in ("SET_SONG", "SET_PAGE"):
                    self.take_state(page_state(p))
                elif typ == "STATE_SNAPSHOT" and p.get("kind") == "choir":
                    self.take_state(page_state(p.get("page")))
                elif typ == "PRESENCE":
                    emit({"event": "presence", "count": p.get("count")})
                elif typ == "TRANSFER_OFFER":
                    msgs, events = self.receiver.on_offer(p, self.master_id)
                    for t, q in msgs:
                        link.send(t, q)
                    for e in events:
                        emit(e)
                elif typ == "TRANSFER_ABORT":
                    emit({"event": "files_failed", "code": str(p.get("code"))[:64],
                          "by": "host"})
                    self.receiver.link_lost()

        tasks = [asyncio.ensure_future(c) for c in (on_link(), until_answered(),
                                                     link.heartbeat())]
        closed = asyncio.ensure_future(link.closed.wait())
        await asyncio.wait({tasks[0], closed, cmd_task}, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks + [closed]:
            t.cancel()
        if "code" in result:
            return result["code"]
        if cmd_task.done():
            link.send("LEAVE_SESSION", {})
            await asyncio.sleep(0.2)
            return 0
        return None


async def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    pa = sub.add_parser("pair-answer")
    pa.add_argument("code")
    po = sub.add_parser("pair-offer")
    jo = sub.add_parser("join")
    jo.add_argument("link", nargs="?")
    jo.add_argument("--code")
    jo.add_argument("--endpoint")
    jo.add_argument("--password", default="")
    jo.add_argument("--download", required=True)
    for p in (pa, po, jo):
        p.add_argument("--id", default="aiortc-%08x" % random.getrandbits(32))
        p.add_argument("--name", default="aiortc peer")
        p.add_argument("--loopback", action="store_true")
    args = ap.parse_args()
    if args.mode == "join" and not args.link and not (args.code and args.endpoint):
        ap.error("join needs a LINK, or --code and --endpoint")
    logging.basicConfig(level=os.environ.get("STOCK_LOG", "WARNING"), stream=sys.stderr,
                        format="%(relativeCreated)d %(name)s %(message)s")
    join_http.self_check()
    if args.loopback:
        import aioice.ice

        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    commands = asyncio.Queue()
    start_stdin(asyncio.get_event_loop(), commands)
    if args.mode in ("pair-answer", "pair-offer"):
        return await pair(args, commands)
    return await Follower(args).run(commands)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
