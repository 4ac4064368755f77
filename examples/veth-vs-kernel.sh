#!/usr/bin/env bash
# flowsteer's apps against the Linux kernel's own stack serving the same protocols, on the same
# kind of veth, in one run: requests per second with wrk (keep-alive) and ab (a new connection
# per request), 100 concurrent clients each; bulk TCP into a sink (flowsteer's discard app, a C
# sink on the kernel); iperf3 through a TCP proxy (flowsteer's tcp-proxy app, socat on the
# kernel) to an iperf3 server in the client's namespace. For IPv4 and IPv6, and for flowsteer
# with fanout "hash" (a NIC with RSS) and "lb" (a NIC without).
#
#   flowsteer:  namespace $NS_C  veth 198.18.0.2/24 2001:db8::2/64 ==== veth (no address) flowsteer
#               2 stack threads, 2 queues, software balancing, 198.18.0.1 and 2001:db8::1
#   kernel:     namespace $NS_KC veth 198.18.0.2/24 2001:db8::2/64 ==== veth 198.18.0.1/24
#               2001:db8::1/64 in namespace $NS_KS: nginx (2 workers), the C sink, socat
#
# The sides take turns, test by test; flowsteer is stopped (SIGSTOP) during the kernel's turns.
# Printed: one row per test and family, flowsteer's figure per fanout, the kernel's, and the
# ratio flowsteer / kernel (above 1 = flowsteer faster), and the failures each side had. Every
# name carries this shell's pid; everything is removed on exit, also on failure or Ctrl-C.
#
# Usage (root): examples/veth-vs-kernel.sh [SECONDS]   seconds per wrk and iperf3 run, default 5
#   IDLE=wait|spin|yield|sleep  engine.idle of flowsteer (default wait: the stack threads share
#                               the two cores with the clients)
#   REQUESTS=N                  ab requests per run (default 20000)
#   BULK_MIB=M                  MiB of each bulk transfer (default 512)
#   TCP_BUFFER=B                stack.tcp_rx_buffer and tcp_tx_buffer of flowsteer (default:
#                               the engine's default)
#   FLOWSTEER=path              that binary instead of building target/release/flowsteer
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/veth-rig.sh
. examples/lib/veth-rig.sh

SECONDS_PER_RUN=${1:-5}
IDLE=${IDLE:-wait}
REQUESTS=${REQUESTS:-20000}
BULK_MIB=${BULK_MIB:-512}
TCP_BUFFER=${TCP_BUFFER:-}
TAG=$$
NS_C=fsvk-c$TAG
NS_KS=fsvk-s$TAG
NS_KC=fsvk-k$TAG
ENGINE_IF=fsve$TAG
CLIENT_IF=fsvc$TAG
KS_IF=fsvs$TAG
KC_IF=fsvk$TAG
WORK=$(mktemp -d /tmp/flowsteer-vs-kernel.XXXXXX)
BODY="flowsteer thread 0 port 8080"

rig_require ip ethtool python3 cc wrk ab iperf3 nginx socat
[[ "$SECONDS_PER_RUN" =~ ^[1-9][0-9]*$ ]] && [ "$SECONDS_PER_RUN" -le 600 ] || rig_die "SECONDS must be 1..=600, got '$SECONDS_PER_RUN'"
[[ "$REQUESTS" =~ ^[1-9][0-9]*$ ]] || rig_die "REQUESTS must be a positive integer, got '$REQUESTS'"
[[ "$BULK_MIB" =~ ^[1-9][0-9]*$ ]] && [ "$BULK_MIB" -le 65536 ] || rig_die "BULK_MIB must be 1..=65536, got '$BULK_MIB'"
case "$IDLE" in spin | yield | sleep | wait) ;; *) rig_die "IDLE must be spin, yield, sleep or wait, got '$IDLE'" ;; esac

PID=
BACKGROUND=()
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    rig_end "$PID" INT
    for p in "${BACKGROUND[@]}"; do
        rig_end "$p" TERM
    done
    rig_cleanup
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rig_flowsteer_binary

rig_kernel_server "$WORK/kernel-server"

rig_bulk_client "$WORK/bulk.py"

cat >"$WORK/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $WORK/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 198.18.0.1:8080 reuseport backlog=4096;
        listen [2001:db8::1]:8080 reuseport backlog=4096;
        default_type text/plain;
        location / { return 200 "$BODY\n"; }
    }
}
EOF

cat >"$WORK/flowsteer.toml" <<EOF
[engine]
threads = 2
balance = "software"
idle = "$IDLE"

[port]
driver = "afpacket"
interface = "$ENGINE_IF"
queues = 2
fanout = "FANOUT"
ipv4 = "198.18.0.1"
ipv4_prefix = 24
ipv6 = "2001:db8::1"
ipv6_prefix = 64

[metrics]
enabled = false

[stack]
${TCP_BUFFER:+tcp_rx_buffer = $TCP_BUFFER}
${TCP_BUFFER:+tcp_tx_buffer = $TCP_BUFFER}

[traffic]
profile = "none"

[[stack.app]]
kind = "http"
port = 8080

[[stack.app]]
kind = "discard"
port = 9

[[stack.app]]
kind = "tcp-proxy"
port = 5201
upstream = "198.18.0.2:5202"

[[stack.app]]
kind = "tcp-proxy"
port = 5203
upstream = "[2001:db8::2]:5202"
EOF

rig_flowsteer_pair "$NS_C" "$ENGINE_IF" "$CLIENT_IF"
rig_kernel_pair "$NS_KS" "$NS_KC" "$KS_IF" "$KC_IF"
for ns in "$NS_C" "$NS_KC"; do
    ip netns exec "$ns" iperf3 -s -p 5202 >/dev/null 2>&1 &
    BACKGROUND+=($!)
done
ip netns exec "$NS_KS" nginx -c "$WORK/nginx.conf" -p "$WORK" >"$WORK/nginx.log" 2>&1 &
BACKGROUND+=($!)
for host in 198.18.0.1 2001:db8::1; do
    ip netns exec "$NS_KS" "$WORK/kernel-server" sink "$host" 9 &
    BACKGROUND+=($!)
done
ip netns exec "$NS_KS" socat TCP4-LISTEN:5201,bind=198.18.0.1,fork,reuseaddr TCP4:198.18.0.2:5202 &
BACKGROUND+=($!)
ip netns exec "$NS_KS" socat TCP6-LISTEN:5203,bind=[2001:db8::1],fork,reuseaddr TCP6:[2001:db8::2]:5202 &
BACKGROUND+=($!)
for port in 8080 9 5201 5203; do
    rig_wait_tcp "$NS_KC" 198.18.0.1 "$port" 10 || rig_wait_tcp "$NS_KC" 2001:db8::1 "$port" 10 ||
        rig_die "the kernel's server on port $port did not start"
done

start_flowsteer() { # fanout
    sed "s/FANOUT/$1/" "$WORK/flowsteer.toml" >"$WORK/flowsteer-$1.toml"
    "$FLOWSTEER" run --config "$WORK/flowsteer-$1.toml" >"$WORK/flowsteer-$1.log" 2>&1 &
    PID=$!
    rig_wait_tcp "$NS_C" 198.18.0.1 8080 10 || {
        cat "$WORK/flowsteer-$1.log" >&2
        rig_die "flowsteer did not answer on 198.18.0.1:8080 within 10 s"
    }
    kill -STOP "$PID"
}

stop_flowsteer() { # fanout
    kill -CONT "$PID"
    kill -INT "$PID"
    wait "$PID" || true
    PID=
    grep -q "conservation:.*ok" "$WORK/flowsteer-$1.log" || {
        cat "$WORK/flowsteer-$1.log" >&2
        rig_die "flowsteer's conservation check failed (fanout $1)"
    }
}

url_host() { case "$1" in *:*) echo "[$1]" ;; *) echo "$1" ;; esac; }

# measure NS HOST TEST: one figure and its failures ("value failures") of TEST against HOST.
measure() {
    local ns=$1 host=$2 url out
    url="http://$(url_host "$host"):8080/"
    case "$3" in
        wrk)
            out=$(ip netns exec "$ns" wrk -t2 -c100 -d"${SECONDS_PER_RUN}s" "$url" 2>&1)
            echo "$out" >>"$WORK/detail.log"
            python3 - "$out" <<'EOF'
import re, sys
out = sys.argv[1]
rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
errors += int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
print(f"{float(rps[1]) if rps else 0:.0f} {errors}")
EOF
            ;;
        ab)
            out=$(ip netns exec "$ns" ab -r -q -s 10 -n "$REQUESTS" -c 100 "$url" 2>&1)
            echo "$out" >>"$WORK/detail.log"
            python3 - "$out" "$REQUESTS" <<'EOF'
import re, sys
out, requests = sys.argv[1], int(sys.argv[2])
def field(pattern):
    found = re.search(pattern, out)
    return float(found[1]) if found else None
rps = field(r"Requests per second:\s+([\d.]+)")
# Every request that did not end in a 2xx answer counts: failed, non-2xx and never completed.
complete = field(r"Complete requests:\s+(\d+)") or 0
failures = (field(r"Failed requests:\s+(\d+)") or 0) + (field(r"Non-2xx responses:\s+(\d+)") or 0)
print(f"{rps or 0:.0f} {int(failures + requests - complete)}")
EOF
            ;;
        bulk)
            out=$(timeout 300 ip netns exec "$ns" python3 "$WORK/bulk.py" "$host" 9 "$BULK_MIB" 2>&1) || out="0"
            echo "$out 0"
            ;;
        proxy)
            local port=5201
            case "$host" in *:*) port=5203 ;; esac
            out=$(timeout 120 ip netns exec "$ns" iperf3 -c "$host" -p "$port" -t "$SECONDS_PER_RUN" -J 2>&1) || true
            python3 - "$out" <<'EOF'
import json, sys
try:
    end = json.loads(sys.argv[1])["end"]
    print(f"{end['sum_received']['bits_per_second'] / 1e6:.0f} 0")
except Exception:
    print("0 1")
EOF
            ;;
    esac
}

declare -A RESULT
echo "== turns: flowsteer (fanout hash, then lb) against the kernel, $SECONDS_PER_RUN s per wrk/iperf3 run"
for fanout in hash lb; do
    start_flowsteer "$fanout"
    for host in 198.18.0.1 2001:db8::1; do
        for test in wrk ab bulk proxy; do
            kill -CONT "$PID"
            RESULT[$fanout,$host,$test]=$(measure "$NS_C" "$host" "$test")
            kill -STOP "$PID"
            if [ "$fanout" = hash ]; then
                RESULT[kernel,$host,$test]=$(measure "$NS_KC" "$host" "$test")
            fi
            echo "   $test $host: flowsteer/$fanout ${RESULT[$fanout,$host,$test]}, kernel ${RESULT[kernel,$host,$test]}"
        done
    done
    stop_flowsteer "$fanout"
done

echo
echo "== idle = \"$IDLE\", 2 stack threads${TCP_BUFFER:+, TCP buffers of $TCP_BUFFER bytes}; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "| test | family | flowsteer hash | flowsteer lb | kernel | hash / kernel | lb / kernel | failures (hash, lb, kernel) |"
echo "|---|---|---|---|---|---|---|---|"
for test in wrk ab bulk proxy; do
    case $test in
        wrk) name="HTTP keep-alive, wrk -c100, requests/s" ;;
        ab) name="HTTP new connection per request, ab -c100, requests/s" ;;
        bulk) name="bulk into a sink, one connection, Mbit/s" ;;
        proxy) name="iperf3 through a TCP proxy, Mbit/s" ;;
    esac
    for host in 198.18.0.1 2001:db8::1; do
        family=IPv4
        case "$host" in *:*) family=IPv6 ;; esac
        read -r h hf <<<"${RESULT[hash,$host,$test]}"
        read -r l lf <<<"${RESULT[lb,$host,$test]}"
        read -r k kf <<<"${RESULT[kernel,$host,$test]}"
        python3 -c 'import sys
name, family, h, l, k, hf, lf, kf = sys.argv[1:]
h, l, k = float(h), float(l), float(k)
r = lambda a: f"{a / k:.2f}" if k else "-"
print(f"| {name} | {family} | {h:.0f} | {l:.0f} | {k:.0f} | {r(h)} | {r(l)} | {hf}, {lf}, {kf} |")' "$name" "$family" "$h" "$l" "$k" "$hf" "$lf" "$kf"
    done
done
