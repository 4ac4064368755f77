#!/usr/bin/env bash
# What software balancing buys when the NIC cannot spread: flowsteer's http app on a veth
# through AF_PACKET, in three shapes taking turns in one run:
#
#   1t1q  1 stack thread on 1 queue            (the NIC's one queue, one thread)
#   2t1q  2 stack threads on 1 queue           (thread 1 has no queue: it gets connections by
#                                               handoff and sends on a socket of its own)
#   2t2q  2 stack threads on 2 queues, fanout "hash" (a NIC with RSS and a queue per thread)
#
#   namespace $NS  veth 198.18.0.2/24 ==== veth (no address) flowsteer, software balancing
#
# Per round and shape: wrk (keep-alive, -t2 -c100) and ab (a new connection per request, -c50)
# against the http app; each shape runs in every round, the order rotating, so that the machine's
# drift falls on every shape alike. Printed: requests per second per shape (median of the
# rounds), the ratios 2t1q / 1t1q and 2t1q / 2t2q, and the failures; flowsteer's conservation
# check must hold after every run. Every name carries this shell's pid; everything is removed on
# exit, also on failure or Ctrl-C.
#
# On a machine of 2 cores the clients, the kernel's softirqs and 2 stack threads share them: a
# gain of the second thread is bounded by the core it can find, and 3 or more threads would
# measure the scheduler.
#
# Usage (root): examples/veth-queues.sh [SECONDS]   seconds per wrk run, default 5
#   ROUNDS=N        rounds (default 3)
#   REQUESTS=N      ab requests per run (default 10000)
#   IDLE=wait|spin|yield|sleep  engine.idle (default wait)
#   FLOWSTEER=path  that binary instead of building target/release/flowsteer
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/veth-rig.sh
. examples/lib/veth-rig.sh

SECONDS_PER_RUN=${1:-5}
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-10000}
IDLE=${IDLE:-wait}
TAG=$$
NS=fsvq-c$TAG
ENGINE_IF=fsqe$TAG
CLIENT_IF=fsqc$TAG
WORK=$(mktemp -d /tmp/flowsteer-queues.XXXXXX)
SHAPES=(1t1q 2t1q 2t2q)

rig_require ip ethtool python3 wrk ab
[[ "$SECONDS_PER_RUN" =~ ^[1-9][0-9]*$ ]] && [ "$SECONDS_PER_RUN" -le 600 ] || rig_die "SECONDS must be 1..=600, got '$SECONDS_PER_RUN'"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] && [ "$ROUNDS" -le 100 ] || rig_die "ROUNDS must be 1..=100, got '$ROUNDS'"
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || rig_die "REQUESTS must be a positive integer, got '$REQUESTS'"
case "$IDLE" in spin | yield | sleep | wait) ;; *) rig_die "IDLE must be spin, yield, sleep or wait, got '$IDLE'" ;; esac

PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    rig_end "$PID" INT
    rig_cleanup
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rig_flowsteer_binary
rig_flowsteer_pair "$NS" "$ENGINE_IF" "$CLIENT_IF"

# config SHAPE: the configuration of one shape.
config() {
    local threads=${1:0:1} queues=${1:2:1} fanout=lb
    [ "$queues" -gt 1 ] && fanout=hash
    cat <<EOF
[engine]
threads = $threads
balance = "software"
idle = "$IDLE"

[port]
driver = "afpacket"
interface = "$ENGINE_IF"
queues = $queues
fanout = "$fanout"
ipv4 = "198.18.0.1"
ipv4_prefix = 24

[metrics]
enabled = false

[traffic]
profile = "none"

[[stack.app]]
kind = "http"
port = 8080
EOF
}

# run SHAPE ROUND: starts flowsteer in SHAPE, runs wrk and ab, stops it; appends
# "shape round wrk_rps wrk_failures ab_rps ab_failures" to $WORK/results.
run() {
    local log="$WORK/flowsteer-$1-$2.log" wrk_out ab_out
    config "$1" >"$WORK/$1.toml"
    "$FLOWSTEER" run --config "$WORK/$1.toml" >"$log" 2>&1 &
    PID=$!
    rig_wait_tcp "$NS" 198.18.0.1 8080 10 || {
        cat "$log" >&2
        rig_die "flowsteer ($1) did not answer on 198.18.0.1:8080 within 10 s"
    }
    wrk_out=$(ip netns exec "$NS" wrk -t2 -c100 -d"${SECONDS_PER_RUN}s" http://198.18.0.1:8080/ 2>&1)
    ab_out=$(ip netns exec "$NS" ab -q -n "$REQUESTS" -c 50 -s 5 http://198.18.0.1:8080/ 2>&1 || true)
    echo "$wrk_out" "$ab_out" >>"$WORK/detail.log"
    kill -INT "$PID"
    wait "$PID" || true
    PID=
    grep -q "conservation:.*ok" "$log" || {
        cat "$log" >&2
        rig_die "flowsteer's conservation check failed ($1, round $2)"
    }
    python3 - "$1" "$2" "$wrk_out" "$ab_out" "$log" >>"$WORK/results" <<'EOF'
import re, sys
shape, rnd, wrk, ab, log = sys.argv[1:6]
rps = re.search(r"Requests/sec:\s+([\d.]+)", wrk)
wrk_fail = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", wrk))
wrk_fail += int((re.search(r"Non-2xx or 3xx responses: (\d+)", wrk) or [0, 0])[1])
ab_rps = re.search(r"Requests per second:\s+([\d.]+)", ab)
ab_fail = int((re.search(r"Failed requests:\s+(\d+)", ab) or [0, 0])[1])
ab_done = int((re.search(r"Complete requests:\s+(\d+)", ab) or [0, 0])[1])
share = re.search(r"threads without a queue .*?: ([\d.]+)% of the packets processed, ([\d.]+)% of the connections", open(log).read())
print(shape, rnd, f"{float(rps[1]) if rps else 0:.0f}", wrk_fail,
      f"{float(ab_rps[1]) if ab_rps else 0:.0f}", ab_fail + (0 if ab_rps else 1),
      share[2] if share else "-")
EOF
    tail -1 "$WORK/results" | awk '{printf "   %s round %s: wrk %s req/s (%s failed), ab %s req/s (%s failed), queue-less thread: %s%% of connections\n", $1, $2, $3, $4, $5, $6, $7}'
}

echo "== $ROUNDS rounds of ${SHAPES[*]}: wrk -t2 -c100 ${SECONDS_PER_RUN}s, ab -n $REQUESTS -c50; engine.idle = $IDLE"
for round in $(seq 1 "$ROUNDS"); do
    for i in 0 1 2; do
        run "${SHAPES[$(((i + round) % 3))]}" "$round"
    done
done

python3 - "$WORK/results" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
def med(shape, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == shape)
def failed(shape, col):
    return sum(int(r[col]) for r in rows if r[0] == shape)
print()
print("| test | 1 thread, 1 queue | 2 threads, 1 queue | 2 threads, 2 queues | 2t1q / 1t1q | 2t1q / 2t2q | failures (1t1q, 2t1q, 2t2q) |")
print("|---|---|---|---|---|---|---|")
for name, col, fcol in [("HTTP keep-alive, wrk -c100, requests/s", 2, 3),
                        ("HTTP new connection per request, ab -c50, requests/s", 4, 5)]:
    a, b, c = (med(s, col) for s in ("1t1q", "2t1q", "2t2q"))
    f = ", ".join(str(failed(s, fcol)) for s in ("1t1q", "2t1q", "2t2q"))
    print(f"| {name} | {a:.0f} | {b:.0f} | {c:.0f} | {b / a:.2f} | {b / c:.2f} | {f} |")
EOF
