#!/usr/bin/env bash
# LAN test rig: a choir on a real (virtual) LAN.
#
# Builds a Linux bridge with one network namespace per device (a master and N followers, veth
# pairs, 10.214.X.0/24), runs `lansync host` / `lansync join` with `--json` inside them and checks
# from their events that the choir stays in step: joins by mDNS session code and by QR link, page
# turns, follower links cut and restored (`ip link set … down/up`), a master killed with SIGKILL
# and restarted from its state directory, the session pack (on joining, and a bigger one published
# mid-session whose download a cut interrupts and a resume completes), and the end of the session.
#
# Usage:  sudo bash tests/lan/rig.sh [path/to/lansync]      (or LANSYNC_BIN=…)
# Env:    LANRIG_FOLLOWERS=N (even, >= 6; default 6)   LANRIG_KEEP=1 (keep logs in the work dir)
# Exit:   0 when every check held (or SKIP: not root / no `ip` / no namespaces), 1 otherwise.
#
# Nothing here touches the machine's own interfaces: the bridge and the root-namespace veth ends
# have no address (and no IPv6), every lansync process runs inside a namespace, so mDNS and all
# traffic stay on the bridge. Everything the rig made is removed on exit, failure included.
set -euo pipefail

BIN=${1:-${LANSYNC_BIN:-}}
NF=${LANRIG_FOLLOWERS:-6}
RIG_START=$EPOCHREALTIME

skip() {
    echo "SKIP: $*"
    exit 0
}

# ---------------------------------------------------------------------------------------------
# Preconditions.

if [[ -z $BIN ]]; then
    echo "usage: $0 path/to/lansync   (or LANSYNC_BIN=path/to/lansync $0)" >&2
    exit 2
fi
if [[ ! -x $BIN ]]; then
    echo "FAIL: $BIN is not an executable (cargo build --release first)" >&2
    exit 1
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
if ((NF < 6 || NF % 2 != 0 || NF > 40)); then
    echo "LANRIG_FOLLOWERS must be even, 6..40 (got $NF)" >&2
    exit 2
fi
[[ $(id -u) == 0 ]] || skip "the LAN rig needs root (network namespaces, a bridge)"
command -v ip >/dev/null 2>&1 || skip "iproute2 (\`ip\`) is not installed"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"

# ---------------------------------------------------------------------------------------------
# State, and the cleanup that always runs.

TAG=$$
SUBNET=$((1 + (TAG * 7) % 250))
BR="lrb$TAG"
NS=()         # NS[i]: namespace of device i (0 = master, 1..NF = followers, NF+1 = free follower)
ADDR=()       # ADDR[i]: its address
HVETH=()      # HVETH[i]: root-namespace end of its veth pair (a bridge port)
MADE_NS=()    # what was actually created, for cleanup
MADE_LINKS=()
declare -A PID=()
WORK=""
FIFO_OPEN=0

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    exec 2>/dev/null # no "Killed" job notices; every step below ignores its errors anyway
    local p ns
    for p in "${PID[@]}"; do
        kill -KILL "$p" 2>/dev/null
    done
    for ns in "${MADE_NS[@]}"; do
        # Anything still running in a namespace this rig made is the rig's.
        for p in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$p" 2>/dev/null
        done
    done
    wait 2>/dev/null
    ((FIFO_OPEN)) && exec 7>&-
    for ns in "${MADE_NS[@]}"; do
        ip netns del "$ns" 2>/dev/null # takes its veth end, and with it the pair
    done
    for p in "${MADE_LINKS[@]}"; do
        ip link del "$p" 2>/dev/null
    done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${LANRIG_KEEP:-0} == 1 ]]; then
            echo "logs kept in $WORK"
        else
            rm -rf -- "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lansync-lanrig.$TAG.XXXXXX")

# ---------------------------------------------------------------------------------------------
# Checks and the summary.

CHECKS=()   # "PASS|FAIL|KNOWN-FAIL<TAB>name<TAB>detail"
TIMINGS=()
FAILED=0

pass() { CHECKS+=("PASS	$1	$2"); echo "  ok   $1: $2"; }
fail() {
    CHECKS+=("FAIL	$1	$2")
    FAILED=1
    echo "  FAIL $1: $2"
}
# A check that fails because of a known product bug: reported, but does not fail the run.
known_fail() { CHECKS+=("KNOWN-FAIL	$1	$2"); echo "  KNOWN-FAIL $1: $2"; }
timing() { TIMINGS+=("$1: $2"); }

summary() {
    local c
    echo
    echo "=== LAN rig summary (master + $NF followers + 1 free, bridge $BR, 10.214.$SUBNET.0/24) ==="
    for c in "${CHECKS[@]}"; do
        IFS=$'\t' read -r st name detail <<<"$c"
        printf '%-10s %-36s %s\n' "$st" "$name" "$detail"
    done
    echo "--- timings ---"
    for c in "${TIMINGS[@]}"; do
        echo "$c"
    done
    printf 'total run: %.1f s\n' "$(bc_sub "$EPOCHREALTIME" "$RIG_START")"
}
bc_sub() { python3 -c "import sys; print(float(sys.argv[1]) - float(sys.argv[2]))" "$1" "$2"; }

# Stops at the first failed check: later steps need the state the failed one should have made.
abort_if_failed() {
    if ((FAILED)); then
        summary
        echo "RESULT: FAIL"
        exit 1
    fi
}

# ---------------------------------------------------------------------------------------------
# The JSON-line waiter: polls the processes' log files (one JSON event per line) until a line
# after a given byte offset matches a Python condition on `e` (the event), in every file, or the
# deadline passes. Prints the time each file took from T0 (min/median/max and per file).

cat >"$WORK/waitjson.py" <<'PY'
import json, os, sys, time, statistics

def usage():
    sys.exit("waitjson.py (wait DEADLINE_S T0 COND | absent COND | first COND) LABEL=FILE@OFFSET[#PID]...")

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

class Src:
    def __init__(self, spec):
        self.label, rest = spec.split("=", 1)
        self.pid = None
        if "#" in rest:
            rest, pid = rest.rsplit("#", 1)
            self.pid = int(pid)
        self.path, off = rest.rsplit("@", 1)
        self.pos = int(off)
        self.buf = b""
        self.seen = []   # events read so far
        self.hit = None  # (elapsed_ms, event)

    def read(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return []
        self.pos += len(data)
        self.buf += data
        out = []
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            stamp, _, line = line.partition(b"\t")
            try:
                ev = json.loads(line)
                t = float(stamp)
            except ValueError:
                continue
            if isinstance(ev, dict):
                out.append((t, ev))
        self.seen += [e for _, e in out]
        return out

def tail(s, n=8):
    return " | ".join(json.dumps(e, separators=(",", ":"))[:160] for e in s.seen[-n:]) or "(no events)"

mode = sys.argv[1] if len(sys.argv) > 1 else usage()
if mode == "wait":
    deadline, t0, cond = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    srcs = [Src(a) for a in sys.argv[5:]]
else:
    deadline, t0, cond = 0.0, time.time(), sys.argv[2]
    srcs = [Src(a) for a in sys.argv[3:]]
code = compile(cond, "cond", "eval")
match = lambda e: bool(eval(code, {}, {"e": e}))

if mode == "absent":
    bad = [s for s in srcs if any(match(e) for _, e in s.read())]
    for s in bad:
        print(f"{s.label}: unexpected {[e for e in s.seen if match(e)][0]}")
    sys.exit(1 if bad else 0)

end = time.time() + deadline
errors = []
while True:
    pending = [s for s in srcs if s.hit is None]
    for s in pending:
        was_alive = s.pid is None or alive(s.pid)
        for t, e in s.read():
            if e.get("event") == "error":
                errors.append(f"{s.label}: {e.get('code')}")
            if match(e):
                s.hit = ((t - t0) * 1000.0, e)
                break
        if s.hit is None and not was_alive:
            s.hit = "exited"
    pending = [s for s in srcs if s.hit is None]
    if not pending or time.time() > end:
        break
    time.sleep(0.02)

missing = [s for s in srcs if not isinstance(s.hit, tuple)]
if mode == "first":
    if missing:
        print(f"no match in {srcs[0].label} (events: {tail(srcs[0])})")
        sys.exit(1)
    print(json.dumps(srcs[0].hit[1]))
    sys.exit(0)
if missing:
    for s in missing:
        why = "process exited" if s.hit == "exited" else f"nothing within {deadline:.0f} s"
        print(f"{s.label}: {why}; last events: {tail(s)}")
    sys.exit(1)
ms = sorted(s.hit[0] for s in srcs)
each = ", ".join(f"{s.label} {s.hit[0]:.0f}" for s in srcs)
extra = f"; error events seen: {', '.join(errors)}" if errors else ""
print(f"min {ms[0]:.0f} / median {statistics.median(ms):.0f} / max {ms[-1]:.0f} ms ({each}){extra}")
PY
WAITJSON=(python3 "$WORK/waitjson.py")

now() { echo "$EPOCHREALTIME"; }
size() { stat -c %s "$1" 2>/dev/null || echo 0; }

# MARK[name] = the byte offset of name's log now (events before it are ignored by later waits).
declare -A MARK=()
mark() {
    local n
    for n in "$@"; do MARK[$n]=$(size "$WORK/$n.log"); done
}
spec() { # spec NAME -> LABEL=FILE@OFFSET#PID
    echo "$1=$WORK/$1.log@${MARK[$1]:-0}#${PID[$1]:-0}"
}

# check_wait NAME DEADLINE T0 COND PROC... : one check that COND shows up in every PROC's events.
# Sets LAST_OUT to the waiter's output.
LAST_OUT=""
check_wait() {
    local name=$1 deadline=$2 t0=$3 cond=$4
    shift 4
    local specs=() p
    for p in "$@"; do specs+=("$(spec "$p")"); done
    if LAST_OUT=$("${WAITJSON[@]}" wait "$deadline" "$t0" "$cond" "${specs[@]}"); then
        pass "$name" "$LAST_OUT"
        return 0
    fi
    fail "$name" "$LAST_OUT"
    return 1
}
field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1]); print(v.get(sys.argv[2], ""))' "$1" "$2"; }

# ---------------------------------------------------------------------------------------------
# The LAN.

# Fails only when this machine cannot build it (e.g. a container without CAP_NET_ADMIN): SKIP.
lan_step() {
    local out
    if ! out=$("$@" 2>&1); then
        echo "SKIP: cannot build the LAN: \`$*\`: $out"
        exit 0 # cleanup runs
    fi
}

build_lan() {
    local i ns h p
    lan_step ip link add "$BR" type bridge
    MADE_LINKS+=("$BR")
    # Bridged frames must not go through the host's iptables (br_netfilter); best effort.
    ip link set "$BR" type bridge nf_call_iptables 0 nf_call_ip6tables 0 2>/dev/null || true
    sysctl -qw "net.ipv6.conf.$BR.disable_ipv6=1" 2>/dev/null || true
    lan_step ip link set "$BR" up
    for ((i = 0; i <= NF + 1; i++)); do
        if ((i == 0)); then
            ns="lanrig$TAG-master"
        elif ((i == NF + 1)); then
            ns="lanrig$TAG-free"
        else
            ns="lanrig$TAG-f$i"
        fi
        h="lrh${TAG}x$i"
        p="lrn${TAG}x$i"
        lan_step ip netns add "$ns"
        MADE_NS+=("$ns")
        lan_step ip link add "$h" type veth peer name "$p"
        MADE_LINKS+=("$h")
        lan_step ip link set "$p" netns "$ns"
        sysctl -qw "net.ipv6.conf.$h.disable_ipv6=1" 2>/dev/null || true
        lan_step ip link set "$h" master "$BR"
        lan_step ip link set "$h" up
        lan_step ip -n "$ns" link set lo up
        lan_step ip -n "$ns" addr add "10.214.$SUBNET.$((10 + i))/24" dev "$p"
        lan_step ip -n "$ns" link set "$p" up
        NS[i]=$ns
        ADDR[i]=10.214.$SUBNET.$((10 + i))
        HVETH[i]=$h
    done
}

# ---------------------------------------------------------------------------------------------
# Processes: `start NAME NS_INDEX STDIN lansync-args…` (stdout → NAME.log, stderr → NAME.err).

# Each stdout line is stamped with its arrival time (EPOCHREALTIME, a tab, the line) by a small
# reader in this shell, so timings do not depend on when the waiter looks.
start() {
    local name=$1 i=$2 in=$3
    shift 3
    local out=$WORK/$name.out
    : >"$WORK/$name.log"
    MARK[$name]=0
    rm -f -- "$out"
    mkfifo "$out"
    while IFS= read -r line; do
        printf '%s\t%s\n' "$EPOCHREALTIME" "$line"
    done <"$out" >>"$WORK/$name.log" 7>&- &
    PID[$name.stamp]=$!
    LANSYNC_LOG=${LANSYNC_LOG:-info} ip netns exec "${NS[i]}" "$BIN" "$@" \
        <"$in" >"$out" 2>>"$WORK/$name.err" 7>&- &
    PID[$name]=$! # `ip netns exec` execs lansync: this is its pid
}
send() { # a JSON command to the master
    printf '%s\n' "$1" >&7
}

FOLLOWERS=()
for ((i = 1; i <= NF; i++)); do FOLLOWERS+=("f$i"); done
HALF=$((NF / 2))
LINK_JOINERS=("${FOLLOWERS[@]:0:HALF}")
CODE_JOINERS=("${FOLLOWERS[@]:HALF}")
CUT=("f1" "f$((HALF + 1))") # one QR-link follower, one code follower
FREE=free                   # one more follower, in free mode (joins by QR link)
ALL=("${FOLLOWERS[@]}" "$FREE")

page_cond() { # page_cond PAGE SONG
    echo "e.get('event')=='page' and e.get('page')==$1 and e.get('song_id')=='$2'"
}
JOINED_NEW="e.get('event')=='joined' and e.get('rejoin') is False"
JOINED_AGAIN="e.get('event')=='joined' and e.get('rejoin') is True"

echo "LAN rig: master + $NF followers on bridge $BR (10.214.$SUBNET.0/24), work dir $WORK"
T=$(now)
build_lan
pass "lan built" "$((NF + 2)) namespaces on $BR in $(printf '%.0f' "$(python3 -c "import sys;print((float(sys.argv[1])-float(sys.argv[2]))*1000)" "$(now)" "$T")") ms"
# The machine's side of the LAN has no address (so nothing of ours leaves, nothing of its gets in).
LEAK=$(ip -o addr show dev "$BR" 2>/dev/null; for h in "${HVETH[@]}"; do ip -o addr show dev "$h" 2>/dev/null; done)
if [[ -z $LEAK ]]; then
    pass "bridge side has no address" "$BR and ${#HVETH[@]} host-side veths: no IPv4/IPv6 address"
else
    fail "bridge side has no address" "$LEAK"
fi

# ---------------------------------------------------------------------------------------------
# 1. The master.

mkfifo "$WORK/master.in"
exec 7<>"$WORK/master.in" # held open read-write: the master never sees end of input
FIFO_OPEN=1
HOSTDIR=$WORK/master-state
# make_pack DIR SCALE: a score PDF, an audio track and a video with their real magic bytes.
make_pack() {
    python3 - "$1" "$2" <<'PY'
import os, sys
d, k = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
for name, head, n in [("score.pdf", b"%PDF-1.7\n", 300_000), ("tutti.ogg", b"OggS", 200_000),
                      ("warm-up.mp4", b"\0\0\0\x20ftypisom", 500_000)]:
    with open(os.path.join(d, name), "wb") as f:
        f.write(head + os.urandom(n * k))
PY
}
make_pack "$WORK/pack" 1
T_MASTER=$(now)
start master 0 "$WORK/master.in" host --json --state-dir "$HOSTDIR" --name Master --session-name "LAN rig" --pack "$WORK/pack"
check_wait "master hosting" 20 "$T_MASTER" "e.get('event')=='hosting_link'" master || abort_if_failed
HOSTING=$("${WAITJSON[@]}" first "e.get('event')=='hosting_link'" "$(spec master)")
LINK=$(field "$HOSTING" link)
CODE=$(field "$HOSTING" session_code)
PORT=$(field "$HOSTING" port)
timing "master start to join link" "$(echo "$LAST_OUT" | sed 's/ (.*//')"
if [[ $LINK == "lansync://join?h=${ADDR[0]}:$PORT&"* ]]; then
    pass "link names the master's veth" "h=${ADDR[0]}:$PORT, code $CODE"
else
    fail "link names the master's veth" "expected h=${ADDR[0]}:$PORT in $LINK"
fi
abort_if_failed

# mDNS, seen from a follower's namespace (runs while the followers join).
T_BROWSE=$(now)
start browse "$NF" /dev/null sessions --json --timeout 4

# ---------------------------------------------------------------------------------------------
# 2. Followers join: half by QR link, half by session code (mDNS).

T_JOIN=$(now)
for f in "${LINK_JOINERS[@]}"; do
    start "$f" "${f#f}" /dev/null join "$LINK" --json --state-dir "$WORK/$f-state" --name "$f"
done
for f in "${CODE_JOINERS[@]}"; do
    start "$f" "${f#f}" /dev/null join --code "$CODE" --json --state-dir "$WORK/$f-state" --name "$f" --mdns-timeout 20
done
start "$FREE" $((NF + 1)) /dev/null join "$LINK" --free --json --state-dir "$WORK/$FREE-state" --name "$FREE"
if check_wait "join by QR link (${#LINK_JOINERS[@]})" 30 "$T_JOIN" "$JOINED_NEW" "${LINK_JOINERS[@]}"; then
    timing "join by QR link (start to joined)" "$LAST_OUT"
fi
if check_wait "join by code via mDNS (${#CODE_JOINERS[@]})" 40 "$T_JOIN" "$JOINED_NEW" "${CODE_JOINERS[@]}"; then
    timing "join by code (start to joined, incl. mDNS)" "$LAST_OUT"
fi
check_wait "free follower joins" 30 "$T_JOIN" "$JOINED_NEW" "$FREE" || true
check_wait "master sees everyone" 20 "$T_JOIN" "e.get('event')=='presence' and e.get('count')==$((NF + 2))" master || true
abort_if_failed

if check_wait "every follower holds the pack (initial sync)" 30 "$T_JOIN" \
    "e.get('event')=='files_done' and e.get('kind')=='pack'" "${ALL[@]}"; then
    timing "start to pack verified (1 MB, 3 files)" "$LAST_OUT"
fi
check_wait "start gate opens" 30 "$T_JOIN" "e.get('event')=='start_gate' and e.get('open') is True" "${ALL[@]}" || true
abort_if_failed

check_wait "mDNS lists the session" 15 "$T_BROWSE" \
    "e.get('event')=='session_found' and e.get('session_code')=='$CODE' and e.get('port')==$PORT and (e.get('addrs') or [''])[0]=='${ADDR[0]}'" browse ||
    true
abort_if_failed

# ---------------------------------------------------------------------------------------------
# 3. A song and page turns.

mark "${ALL[@]}"
T=$(now)
send '{"cmd":"set_song","song_id":"ave-verum"}'
send '{"cmd":"set_page","page":2}'
send '{"cmd":"set_page","page":3}'
if check_wait "song + pages converge" 20 "$T" "$(page_cond 3 ave-verum)" "${FOLLOWERS[@]}"; then
    timing "song + 2 page turns to all followers" "$LAST_OUT"
fi
# Free mode: the song change reaches the view, the page turns do not (the follow-mode ones have
# all shown page 3 by now, so the master has sent them).
check_wait "free follower gets the song" 20 "$T" "e.get('event')=='page' and e.get('song_id')=='ave-verum'" "$FREE" || true
if out=$("${WAITJSON[@]}" absent "e.get('event')=='page' and e.get('page') in (2, 3)" "$(spec "$FREE")"); then
    pass "free follower keeps its page" "no page 2/3 reached $FREE"
else
    fail "free follower keeps its page" "$out"
fi
abort_if_failed

# ---------------------------------------------------------------------------------------------
# 4. Cut two followers' links; the master turns pages meanwhile; restore; they converge.

UNCUT=()
for f in "${FOLLOWERS[@]}"; do
    [[ " ${CUT[*]} " == *" $f "* ]] || UNCUT+=("$f")
done
# A bigger pack is published mid-session; the cut falls while the cut followers download it.
# Big enough (120 MB to each follower) that the cut lands mid-download even at full speed.
make_pack "$WORK/pack2" 120
PACK2_BYTES=$(du -cb "$WORK"/pack2/* | tail -1 | cut -f1)
mark "${FOLLOWERS[@]}" master
T_PUB=$(now)
send "{\"cmd\":\"publish_pack\",\"dir\":\"$WORK/pack2\"}"
check_wait "cut followers are downloading pack 2" 30 "$T_PUB" \
    "e.get('event')=='files_progress' and e.get('kind')=='pack' and e.get('bytes_total')==$PACK2_BYTES and 0 < e.get('bytes_done') < $PACK2_BYTES" "${CUT[@]}" ||
    abort_if_failed
T_CUT=$(now)
for f in "${CUT[@]}"; do ip link set "${HVETH[${f#f}]}" down; done
PUB=$("${WAITJSON[@]}" first "e.get('event')=='files_published'" "$(spec master)")
PACK2=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["files"]["pack"]["hash"])' "$PUB")
send '{"cmd":"set_page","page":5}'
send '{"cmd":"set_page","page":6}'
check_wait "uncut followers follow during cut" 20 "$T_CUT" "$(page_cond 6 ave-verum)" "${UNCUT[@]}" || true
# The cut lasts until each cut follower's heartbeat has declared its link dead (~10 s).
if check_wait "cut noticed by heartbeat" 40 "$T_CUT" \
    "e.get('event')=='state' and e.get('state')=='FOLLOWER_DISCONNECTED_LOCAL'" "${CUT[@]}"; then
    timing "link cut to FOLLOWER_DISCONNECTED_LOCAL" "$LAST_OUT"
fi
specs=()
for f in "${CUT[@]}"; do specs+=("$(spec "$f")"); done
if out=$("${WAITJSON[@]}" absent "e.get('event')=='page' and e.get('page') in (5, 6)" "${specs[@]}"); then
    pass "cut followers really cut" "no page 5/6 reached ${CUT[*]} while down"
else
    fail "cut followers really cut" "$out"
fi
abort_if_failed
T_UP=$(now)
for f in "${CUT[@]}"; do ip link set "${HVETH[${f#f}]}" up; done
printf '  (cut lasted %.1f s)\n' "$(bc_sub "$T_UP" "$T_CUT")"
if check_wait "cut followers converge after up" 60 "$T_UP" "$(page_cond 6 ave-verum)" "${CUT[@]}"; then
    timing "link up to converged (page 6)" "$LAST_OUT"
fi
check_wait "cut followers rejoin" 30 "$T_UP" "$JOINED_AGAIN" "${CUT[@]}" || true
# Resumed, not restarted: the first round after the cut asks for less than the whole pack.
check_wait "cut followers resume pack 2" 60 "$T_UP" \
    "e.get('event')=='files_progress' and e.get('kind')=='pack' and 0 < e.get('bytes_total') < $PACK2_BYTES" "${CUT[@]}" || true
check_wait "everyone holds pack 2, verified" 120 "$T_PUB" \
    "e.get('event')=='files_done' and e.get('hash')=='$PACK2'" "${FOLLOWERS[@]}" || true
same=1
for f in "${FOLLOWERS[@]}"; do
    for p in "$WORK"/pack2/*; do
        cmp -s "$p" "$WORK/$f-state/files/$(basename "$p")" || { same=0; echo "  $f: $(basename "$p") differs"; }
    done
done
if ((same)); then
    pass "pack 2 on disk" "every follower's copy equals the master's, byte for byte ($PACK2_BYTES bytes)"
else
    fail "pack 2 on disk" "a copy differs"
fi
check_wait "cut followers back to follow" 30 "$T_UP" "e.get('event')=='state' and e.get('state')=='FOLLOWER_CONNECTED_FOLLOW'" "${CUT[@]}" || true
abort_if_failed

# ---------------------------------------------------------------------------------------------
# 5. The master is killed (SIGKILL) and restarted from its state directory.

mark "${ALL[@]}"
kill -KILL "${PID[master]}"
wait "${PID[master]}" 2>/dev/null || true
T_RESTART=$(now)
start master 0 "$WORK/master.in" host --json --state-dir "$HOSTDIR" --name Master --session-name "LAN rig" --pack "$WORK/pack2"
check_wait "master restarts" 20 "$T_RESTART" "e.get('event')=='hosting_link'" master || abort_if_failed
AGAIN=$("${WAITJSON[@]}" first "e.get('event')=='hosting_link'" "$(spec master)")
if [[ $(field "$AGAIN" link) == "$LINK" && $(field "$AGAIN" port) == "$PORT" ]]; then
    pass "same link and port after restart" "port $PORT"
else
    fail "same link and port after restart" "was $LINK, now $(field "$AGAIN" link)"
fi
if check_wait "every follower rejoins" 60 "$T_RESTART" "$JOINED_AGAIN" "${ALL[@]}"; then
    timing "master restart to rejoined (joined rejoin:true)" "$LAST_OUT"
fi
abort_if_failed
T=$(now)
send '{"cmd":"set_page","page":8}'
if check_wait "converge after master restart" 20 "$T" "$(page_cond 8 ave-verum)" "${FOLLOWERS[@]}"; then
    timing "page turn after restart to all followers" "$LAST_OUT"
fi
abort_if_failed

# ---------------------------------------------------------------------------------------------
# 6. Lossy Wi-Fi: 5 % of UDP packets dropped at random in and out of every follower's namespace
# (nftables `numgen random`; the kernel has no netem). Page turns one by one and a new pack still
# reach everyone, and nothing is lost.

# loss PERCENT: sets (0: clears) the random UDP loss of every follower.
loss() {
    local i n=$(($1 * 100)) rule
    rule="meta l4proto udp numgen random mod 10000 < $n drop"
    for ((i = 1; i <= NF + 1; i++)); do
        ip netns exec "${NS[$i]}" nft delete table inet lossy 2>/dev/null || true
        ((n == 0)) && continue
        ip netns exec "${NS[$i]}" nft -f - <<NFT || return 1
table inet lossy {
    chain input { type filter hook input priority 0; policy accept; $rule; }
    chain output { type filter hook output priority 0; policy accept; $rule; }
}
NFT
    done
}

# publish_4mb NAME CHECK DEADLINE: the master publishes a new 4 MB pack (3 files) in $WORK/NAME;
# CHECK holds once every follower has it verified (timed from the publish).
publish_4mb() {
    make_pack "$WORK/$1" 4
    mark "${FOLLOWERS[@]}" master
    local t pub hash
    t=$(now)
    send "{\"cmd\":\"publish_pack\",\"dir\":\"$WORK/$1\"}"
    pub=$("${WAITJSON[@]}" first "e.get('event')=='files_published'" "$(spec master)")
    hash=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["files"]["pack"]["hash"])' "$pub")
    if check_wait "$2" "$3" "$t" "e.get('event')=='files_done' and e.get('hash')=='$hash'" "${FOLLOWERS[@]}"; then
        timing "$1 (4 MB), publish to verified by all: $2" "$LAST_OUT"
    fi
}

# The same size of pack without loss first, for the ratio (the goal: within 3× under 5 % loss);
# twice, since the first one also removes the 120 MB pack it replaces on every follower.
publish_4mb pack3 "pack 3 replaces pack 2 (4 MB, 3 files)" 60
publish_4mb pack4 "pack without loss (4 MB, 3 files)" 60
abort_if_failed

if ! command -v nft >/dev/null 2>&1; then
    known_fail "lossy step" "nftables (\`nft\`) is not installed: the 5 % loss step did not run"
elif ! loss 5; then
    fail "lossy step" "could not set the nftables loss rules"
else
    mark "${ALL[@]}" master
    T=$(now)
    for page in 9 10 11 12 13; do
        send "{\"cmd\":\"set_page\",\"page\":$page}"
        sleep 0.3
    done
    if check_wait "page turns under 5 % loss" 30 "$T" "$(page_cond 13 ave-verum)" "${FOLLOWERS[@]}"; then
        timing "5 page turns under 5 % loss, start to last shown" "$LAST_OUT"
    fi
    # No turn is lost: every follower showed each of the five pages.
    specs=()
    for f in "${FOLLOWERS[@]}"; do specs+=("$(spec "$f")"); done
    lost=""
    for page in 9 10 11 12; do
        "${WAITJSON[@]}" wait 2 "$T" "e.get('event')=='page' and e.get('page')==$page" "${specs[@]}" >/dev/null ||
            lost+=" $page"
    done
    if [[ -z $lost ]]; then
        pass "no page turn lost under 5 % loss" "every follower showed pages 9–13"
    else
        fail "no page turn lost under 5 % loss" "pages not shown by every follower:$lost"
    fi
    publish_4mb pack5 "pack under 5 % loss (4 MB, 3 files)" 180
    # The links held: loss slows packets down, it must not make a heartbeat declare a link dead.
    if out=$("${WAITJSON[@]}" absent "e.get('event')=='state' and e.get('state')=='FOLLOWER_DISCONNECTED_LOCAL'" "${specs[@]}"); then
        pass "no link lost under 5 % loss" "no follower left FOLLOWER_CONNECTED_FOLLOW"
    else
        fail "no link lost under 5 % loss" "$out"
    fi
    loss 0 || true
fi
abort_if_failed

# ---------------------------------------------------------------------------------------------
# 7. The end: everyone is told, and the old link is refused.

start watch "$NF" /dev/null sessions --json --watch
check_wait "mDNS lists the restarted session" 20 "$(now)" "e.get('event')=='session_found' and e.get('session_code')=='$CODE'" watch || true
abort_if_failed
mark "${ALL[@]}" watch
T=$(now)
T_END=$T
send '{"cmd":"end"}'
if check_wait "every follower told session_ended" 30 "$T" "e.get('event')=='session_ended'" "${ALL[@]}"; then
    timing "end to session_ended" "$LAST_OUT"
fi
T=$(now)
start late 1 /dev/null join "$LINK" --json --state-dir "$WORK/late-state" --name late
check_wait "old link refused" 30 "$T" "e.get('event')=='rejected' and e.get('reason')=='session_ended'" late || true
T=$(now)
start late2 1 /dev/null join --code "$CODE" --json --state-dir "$WORK/late2-state" --name late2 --mdns-timeout 5
check_wait "code join refused after end" 30 "$T" \
    "(e.get('event')=='rejected' and e.get('reason')=='session_ended') or (e.get('event')=='error' and e.get('code')=='session-not-found')" late2 || true
# PROTOCOL.md §10.2: the master withdraws its advert (an mDNS goodbye) when the session ends.
check_wait "advert withdrawn at the end (goodbye)" 15 "$T_END" "e.get('event')=='session_lost'" watch || true
abort_if_failed
send '{"cmd":"quit"}'

summary
KNOWN=0
for c in "${CHECKS[@]}"; do [[ $c == KNOWN-FAIL* ]] && KNOWN=$((KNOWN + 1)); done
if ((KNOWN)); then
    echo "RESULT: PASS (with $KNOWN known failure(s), see KNOWN-FAIL above)"
else
    echo "RESULT: PASS"
fi
