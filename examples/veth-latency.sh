#!/usr/bin/env bash
# Round-trip latency of a 64-byte TCP echo ping-pong on one connection: flowsteer's tcp-echo app
# on AF_PACKET against the Linux kernel's own stack, on the same kind of veth, side by side in one
# run.
#
#   flowsteer:  namespace $NS_C  veth 198.18.0.2/24  ====  veth (no address) flowsteer 198.18.0.1
#   kernel:     namespace $NS_KC veth 198.18.0.2/24  ====  veth 198.18.0.1/24 namespace $NS_KS
#                                                          (C echo server, TCP_NODELAY)
#
# One client per side (python3, TCP_NODELAY, one connection each) sends 64 bytes and waits for
# the 64 bytes back. After 500 warm-up round trips per side, the two sides take turns in chunks
# of 1000 round trips until each has done N, so both see the same background load on a shared
# machine; flowsteer is stopped (SIGSTOP) during the kernel's chunks, so a polling engine thread
# takes no core from the kernel's turn. Printed: p50 / p99 / p99.9 in microseconds per side and
# the ratio flowsteer / kernel (below 1 = flowsteer faster). Every name carries this shell's pid;
# everything is removed on exit, also on failure or Ctrl-C.
#
# Usage (root): examples/veth-latency.sh [N]     N round trips per side, default 20000
#   RX_RING=frames|blocks   port.rx_ring of flowsteer (default frames)
#   IDLE=spin|yield|sleep|wait  engine.idle of flowsteer (default spin)
#   FAMILY=4|6              the address family of the connection (default 4)
#   THREADS=n               stack threads and queues of flowsteer, 1..=8 (default 1)
#   FANOUT=hash|lb          port.fanout of flowsteer (default hash); with lb and 2 threads a
#                           connection's frames arrive on both queues
#   IDLE_SLEEP_US=us        engine.idle_sleep_us of flowsteer (default: the engine's default)
#   BULK_MIB=M              then M MiB of bulk TCP into flowsteer's discard app (default 0: none),
#                           its Mbit/s printed: what the ring kind costs when batching matters
#   FLOWSTEER=path          that binary instead of building target/release/flowsteer
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/veth-rig.sh
. examples/lib/veth-rig.sh

N=${1:-20000}
RX_RING=${RX_RING:-frames}
IDLE=${IDLE:-spin}
BULK_MIB=${BULK_MIB:-0}
IDLE_SLEEP_US=${IDLE_SLEEP_US:-}
TAG=$$
NS_C=fslat-c$TAG   # flowsteer's client
NS_KS=fslat-s$TAG  # kernel server
NS_KC=fslat-k$TAG  # kernel client
ENGINE_IF=fsle$TAG # flowsteer's end, in this namespace (at most 15 bytes with any pid)
CLIENT_IF=fslc$TAG
KS_IF=fsls$TAG
KC_IF=fslk$TAG
WORK=$(mktemp -d /tmp/flowsteer-latency.XXXXXX)

die() { rig_die "$@"; }

rig_require ip ethtool python3 cc
[[ "$N" =~ ^[1-9][0-9]*$ ]] && [ "$N" -le 1000000 ] || die "N must be 1..=1000000, got '$N'"
case "$RX_RING" in frames | blocks) ;; *) die "RX_RING must be frames or blocks, got '$RX_RING'" ;; esac
case "$IDLE" in spin | yield | sleep | wait) ;; *) die "IDLE must be spin, yield, sleep or wait, got '$IDLE'" ;; esac
THREADS=${THREADS:-1}
FANOUT=${FANOUT:-hash}
[[ "$THREADS" =~ ^[1-8]$ ]] || die "THREADS must be 1..=8, got '$THREADS'"
case "$FANOUT" in hash | lb) ;; *) die "FANOUT must be hash or lb, got '$FANOUT'" ;; esac
case "${FAMILY:-4}" in
    4) HOST=198.18.0.1 ;;
    6) HOST=2001:db8::1 ;;
    *) die "FAMILY must be 4 or 6, got '$FAMILY'" ;;
esac
[ -z "$IDLE_SLEEP_US" ] || [[ "$IDLE_SLEEP_US" =~ ^[0-9]+$ ]] || die "IDLE_SLEEP_US must be an integer, got '$IDLE_SLEEP_US'"
[[ "$BULK_MIB" =~ ^[0-9]+$ ]] && [ "$BULK_MIB" -le 65536 ] || die "BULK_MIB must be 0..=65536, got '$BULK_MIB'"

PID=
SERVER=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    rig_end "$PID" INT
    rig_end "$SERVER" TERM
    rig_cleanup
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rig_flowsteer_binary

# A client: one connection, TCP_NODELAY, 500 warm-up round trips of 64 bytes; then for every
# number k read from stdin, k timed round trips, their times (ns) written as one line.
cat >"$WORK/client.py" <<'EOF'
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
s = socket.create_connection((host, port), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
payload = bytes(range(64))
def ping():
    s.sendall(payload)
    got = 0
    while got < 64:
        chunk = s.recv(64 - got)
        if not chunk:
            sys.exit("the server closed the connection")
        got += len(chunk)
for _ in range(500):
    ping()
print("ready", flush=True)
clock = time.perf_counter_ns
for line in sys.stdin:
    rtts = []
    for _ in range(int(line)):
        start = clock()
        ping()
        rtts.append(clock() - start)
    print(" ".join(map(str, rtts)), flush=True)
s.close()
EOF

# Takes turns between the two clients, stopping flowsteer during the kernel's turns; prints
# "p50 p99 p999" (µs) for flowsteer, then for the kernel.
cat >"$WORK/turns.py" <<'EOF'
import os, signal, subprocess, sys, time
n, flowsteer_pid, ns_f, ns_k, client, host = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:7]
deadline = time.monotonic() + 600
def start(ns):
    p = subprocess.Popen(["ip", "netns", "exec", ns, "python3", client, host, "7"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        sys.exit(f"the client in {ns} did not connect")
    return p
def turn(p, k):
    p.stdin.write(f"{k}\n")
    p.stdin.flush()
    line = p.stdout.readline()
    if not line:
        sys.exit("a client ended early")
    return [int(x) for x in line.split()]
def summary(rtts):
    rtts.sort()
    q = lambda f: rtts[min(len(rtts) - 1, int(f * len(rtts)))] / 1000
    return f"{q(0.50):.1f} {q(0.99):.1f} {q(0.999):.1f}"
f_client = start(ns_f)
os.kill(flowsteer_pid, signal.SIGSTOP)
try:
    k_client = start(ns_k)
    f_rtts, k_rtts = [], []
    while len(f_rtts) < n or len(k_rtts) < n:
        if time.monotonic() > deadline:
            sys.exit("more than 600 s")
        os.kill(flowsteer_pid, signal.SIGCONT)
        f_rtts += turn(f_client, min(1000, n - len(f_rtts)))
        os.kill(flowsteer_pid, signal.SIGSTOP)
        k_rtts += turn(k_client, min(1000, n - len(k_rtts)))
finally:
    os.kill(flowsteer_pid, signal.SIGCONT)
for p in (f_client, k_client):
    p.stdin.close()
    p.wait(timeout=10)
print(summary(f_rtts))
print(summary(k_rtts))
EOF

rig_bulk_client "$WORK/bulk.py"

rig_kernel_server "$WORK/kernel-server"

cat >"$WORK/flowsteer.toml" <<EOF
[engine]
threads = $THREADS
balance = "software"
idle = "$IDLE"
${IDLE_SLEEP_US:+idle_sleep_us = $IDLE_SLEEP_US}

[port]
driver = "afpacket"
interface = "$ENGINE_IF"
queues = $THREADS
fanout = "$FANOUT"
rx_ring = "$RX_RING"
ipv4 = "198.18.0.1"
ipv4_prefix = 24

[traffic]
profile = "none"

[[stack.app]]
kind = "tcp-echo"
port = 7

[[stack.app]]
kind = "discard"
port = 9
EOF

echo "== flowsteer: rx_ring = \"$RX_RING\", idle = \"$IDLE\", $THREADS thread(s), fanout $FANOUT, tcp-echo on $HOST port 7"
rig_flowsteer_pair "$NS_C" "$ENGINE_IF" "$CLIENT_IF"
"$FLOWSTEER" run --config "$WORK/flowsteer.toml" >"$WORK/flowsteer.log" 2>&1 &
PID=$!
rig_wait_tcp "$NS_C" "$HOST" 7 10 || {
    cat "$WORK/flowsteer.log" >&2
    die "flowsteer did not answer on $HOST port 7 within 10 s"
}

echo "== kernel: the same kind of veth, both ends in namespaces, C echo server on $HOST port 7"
rig_kernel_pair "$NS_KS" "$NS_KC" "$KS_IF" "$KC_IF"
ip netns exec "$NS_KS" "$WORK/kernel-server" echo "$HOST" 7 &
SERVER=$!
for _ in $(seq 1 50); do
    [ -n "$(ip netns exec "$NS_KS" ss -Htln 'sport = :7')" ] && break
    sleep 0.1
done

echo "== $N round trips per side, in turns of 1000"
RESULT=$(timeout 660 python3 "$WORK/turns.py" "$N" "$PID" "$NS_C" "$NS_KC" "$WORK/client.py" "$HOST")
{
    read -r F50 F99 F999
    read -r K50 K99 K999
} <<<"$RESULT"
echo "   flowsteer p50 $F50 µs, p99 $F99 µs, p99.9 $F999 µs"
echo "   kernel    p50 $K50 µs, p99 $K99 µs, p99.9 $K999 µs"

BULK=
if [ "$BULK_MIB" -gt 0 ]; then
    BULK=$(timeout 300 ip netns exec "$NS_C" python3 "$WORK/bulk.py" "$HOST" 9 "$BULK_MIB")
    echo "== flowsteer bulk: $BULK_MIB MiB into discard at $BULK Mbit/s"
fi
echo "== stopping flowsteer (SIGINT): its final table"
kill -INT "$PID"
wait "$PID" || true
PID=
# Per-thread counters, the port's drops, the conservation check.
sed -n '/^ *thread /,$p' "$WORK/flowsteer.log" | sed 's/^/   /'

echo
echo "== $N round trips of 64 bytes per side, $(date -u '+%Y-%m-%d %H:%M UTC')"
python3 - "$RX_RING" "$IDLE" "IPv${FAMILY:-4} threads=$THREADS fanout=$FANOUT" "$F50" "$F99" "$F999" "$K50" "$K99" "$K999" <<'EOF'
import sys
ring, idle, more = sys.argv[1:4]
f = [float(x) for x in sys.argv[4:7]]
k = [float(x) for x in sys.argv[7:10]]
print(f"| side | p50 µs | p99 µs | p99.9 µs |")
print(f"|---|---|---|---|")
print(f"| flowsteer rx_ring={ring} idle={idle} {more} | {f[0]:.1f} | {f[1]:.1f} | {f[2]:.1f} |")
print(f"| kernel | {k[0]:.1f} | {k[1]:.1f} | {k[2]:.1f} |")
print(f"| ratio flowsteer / kernel | {f[0]/k[0]:.2f} | {f[1]/k[1]:.2f} | {f[2]/k[2]:.2f} |")
EOF
[ -z "$BULK" ] || echo "bulk into flowsteer (rx_ring=$RX_RING idle=$IDLE): $BULK_MIB MiB at $BULK Mbit/s"
