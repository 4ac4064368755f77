#!/usr/bin/env bash
# flowsteer in front of real clients, on one machine: the kernel of a network namespace is the
# client, a veth pair is the wire, flowsteer runs on the other end through AF_PACKET.
#
#   namespace fsdemo                               this namespace
#   fsveth1 198.18.0.2/24 (curl, nc, python3) ==== fsveth0 (no address) -- flowsteer 198.18.0.1
#
# It creates the namespace and the pair, starts flowsteer with examples/veth-echo.toml in the
# background, runs curl against the http app, nc against the tcp-echo app and a bulk TCP transfer
# into the discard app, then curl through the tcp-proxy app to a `python3 -m http.server` in the
# namespace and, when iperf3 is installed, iperf3 through the proxy to an `iperf3 -s` there. It
# prints the results, stops flowsteer with SIGINT (it prints its final table) and removes
# everything on exit, also on failure or Ctrl-C.
#
# Usage (root): examples/veth-demo.sh [MIB]     MIB = size of the bulk transfer, default 256
# FLOWSTEER=path/to/flowsteer uses that binary instead of building target/release/flowsteer;
# CONFIG=file.toml another configuration (its port.interface must stay "fsveth0").
set -euo pipefail
cd "$(dirname "$0")/.."

NS=fsdemo
ENGINE_IF=fsveth0 # must match port.interface in examples/veth-echo.toml
CLIENT_IF=fsveth1
SERVER=198.18.0.1
CONFIG=${CONFIG:-examples/veth-echo.toml} # another file must keep port.interface = "fsveth0"
BULK_MIB=${1:-256}
LOG=$(mktemp /tmp/flowsteer-demo.XXXXXX)
BULK=$(mktemp /tmp/flowsteer-bulk.XXXXXX)
SERVED=$(mktemp -d /tmp/flowsteer-served.XXXXXX) # the proxy's upstream serves this directory
PROXY_PORT=3128                                  # tcp-proxy apps of examples/veth-echo.toml:
PROXY_UPSTREAM_PORT=9000                         #   3128 -> 198.18.0.2:9000 (http.server)
IPERF_PORT=5201                                  #   5201 -> 198.18.0.2:5202 (iperf3 -s)
IPERF_UPSTREAM_PORT=5202

die() {
    echo "veth-demo: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, veth, AF_PACKET); run it with sudo"
command -v ip >/dev/null || die "needs iproute2 (the ip command): apt-get install iproute2"
command -v ethtool >/dev/null || die "needs ethtool: apt-get install ethtool"
command -v curl >/dev/null || die "needs curl: apt-get install curl"
command -v nc >/dev/null || die "needs nc: apt-get install netcat-openbsd"
command -v python3 >/dev/null || die "needs python3 (the bulk transfer client, the proxy's upstream)"
command -v sha256sum >/dev/null || die "needs sha256sum: apt-get install coreutils"
[[ "$BULK_MIB" =~ ^[1-9][0-9]*$ ]] || die "MIB must be a positive integer, got '$BULK_MIB'"
if ip link show "$ENGINE_IF" >/dev/null 2>&1 || ip netns list | grep -qw "$NS"; then
    die "$ENGINE_IF or namespace $NS exists already (a previous run?): ip netns del $NS; ip link del $ENGINE_IF"
fi

PID=
CHILD=
HTTPD=
IPERFD=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in "$CHILD" "$HTTPD" "$IPERFD"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -INT "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    ip netns del "$NS" 2>/dev/null || true
    ip link del "$ENGINE_IF" 2>/dev/null || true
    rm -f "$LOG" "$BULK"
    rm -rf "$SERVED"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${FLOWSTEER:-}" ]; then
    echo "== building flowsteer (release)"
    cargo build --release -q -p forwarder
    FLOWSTEER=target/release/flowsteer
fi
[ -x "$FLOWSTEER" ] || die "$FLOWSTEER is not an executable"

# The bulk transfer client: sends MIB mebibytes, half-closes, and stops the clock when the
# discard app closes (it has read everything).
cat >"$BULK" <<'EOF'
import socket, sys, time
host, port, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunk = bytes(range(256)) * 256  # 64 KiB
s = socket.create_connection((host, port), timeout=10)
start = time.monotonic()
for _ in range(mib * 16):
    s.sendall(chunk)
s.shutdown(socket.SHUT_WR)
s.recv(1)
elapsed = time.monotonic() - start
s.close()
print(f"   -> {mib} MiB in {elapsed:.2f} s = {mib * 8 * 1.048576 / elapsed:.0f} Mbit/s")
EOF

echo "== namespace $NS with $CLIENT_IF 198.18.0.2/24; $ENGINE_IF here, no address"
ip netns add "$NS"
ip link add "$ENGINE_IF" type veth peer name "$CLIENT_IF" netns "$NS"
# The engine end carries only flowsteer's frames: no address, no IPv6 link-local, no GRO.
ip link set dev "$ENGINE_IF" addrgenmode none
ip link set dev "$ENGINE_IF" up
ethtool -K "$ENGINE_IF" gro off >/dev/null
ethtool -K "$ENGINE_IF" lro off >/dev/null 2>&1 || true # veth usually has no LRO
ip -n "$NS" link set dev lo up
ip -n "$NS" link set dev "$CLIENT_IF" addrgenmode none
ip -n "$NS" addr add 198.18.0.2/24 dev "$CLIENT_IF"
ip -n "$NS" link set dev "$CLIENT_IF" up
# Full checksums from the client kernel (smoltcp drops frames with partial ones); this also turns
# off scatter-gather and TSO, so segments are wire-sized.
ip netns exec "$NS" ethtool -K "$CLIENT_IF" tx off >/dev/null

echo "== starting flowsteer with $CONFIG (log: $LOG)"
"$FLOWSTEER" run --config "$CONFIG" >"$LOG" 2>&1 &
PID=$!
ready=
for _ in $(seq 1 50); do
    kill -0 "$PID" 2>/dev/null || { cat "$LOG" >&2; die "flowsteer exited during start"; }
    if ip netns exec "$NS" curl -s --connect-timeout 1 --max-time 2 -o /dev/null "http://$SERVER:8080/"; then
        ready=1
        break
    fi
    sleep 0.2
done
[ -n "$ready" ] || { cat "$LOG" >&2; die "flowsteer did not answer on $SERVER:8080 within 10 s"; }

echo
echo "== curl: two requests on one keep-alive connection (http app, port 8080)"
ip netns exec "$NS" curl -sS --max-time 5 \
    -w '   -> HTTP %{http_code}, new connections: %{num_connects}\n' \
    "http://$SERVER:8080/" "http://$SERVER:8080/"

echo
echo "== nc: 5 lines through the tcp-echo app (port 7)"
sent=$(printf 'line %s through flowsteer\n' 1 2 3 4 5)
got=$(printf '%s\n' "$sent" | ip netns exec "$NS" nc -N -w 3 "$SERVER" 7)
printf '%s\n' "$got"
[ "$got" = "$sent" ] && echo "   -> echo matches" || die "the echo differs from what was sent"

echo
echo "== bulk TCP transfer: $BULK_MIB MiB into the discard app (port 9)"
# In the background with `wait`, so Ctrl-C or SIGTERM interrupts it at once (a shell runs its
# traps only after a foreground child ends); cleanup kills it.
ip netns exec "$NS" python3 "$BULK" "$SERVER" 9 "$BULK_MIB" &
CHILD=$!
wait "$CHILD"
CHILD=

# Waits until a server in the namespace listens on TCP port $1 (ss, not a probe connection:
# iperf3 would take a probe for a client).
wait_listening() {
    for _ in $(seq 1 50); do
        [ -n "$(ip netns exec "$NS" ss -Htln "sport = :$1")" ] && return 0
        sleep 0.1
    done
    die "nothing listens on 198.18.0.2:$1 in $NS after 5 s"
}

echo
echo "== tcp-proxy: curl through the proxy ($SERVER:$PROXY_PORT) to python3 -m http.server on 198.18.0.2:$PROXY_UPSTREAM_PORT"
# `ip netns exec` execs the program, so $! is the server itself.
head -c $((8 << 20)) /dev/urandom >"$SERVED/blob.bin"
ip netns exec "$NS" python3 -m http.server "$PROXY_UPSTREAM_PORT" --bind 198.18.0.2 \
    --directory "$SERVED" >/dev/null 2>&1 &
HTTPD=$!
wait_listening "$PROXY_UPSTREAM_PORT"
ip netns exec "$NS" curl -sS --fail --max-time 30 -o "$SERVED/fetched.bin" \
    -w '   -> HTTP %{http_code}, %{size_download} bytes in %{time_total} s\n' \
    "http://$SERVER:$PROXY_PORT/blob.bin"
want=$(sha256sum <"$SERVED/blob.bin")
got=$(sha256sum <"$SERVED/fetched.bin")
[ "$got" = "$want" ] && echo "   -> sha256 matches the served file" || die "the fetched file differs from the served one"

echo
if command -v iperf3 >/dev/null; then
    echo "== tcp-proxy: iperf3 through the proxy ($SERVER:$IPERF_PORT) to iperf3 -s on 198.18.0.2:$IPERF_UPSTREAM_PORT"
    # -1: the server ends after one test.
    ip netns exec "$NS" iperf3 -s -1 -B 198.18.0.2 -p "$IPERF_UPSTREAM_PORT" >/dev/null 2>&1 &
    IPERFD=$!
    wait_listening "$IPERF_UPSTREAM_PORT"
    ip netns exec "$NS" timeout 30 iperf3 -c "$SERVER" -p "$IPERF_PORT" -t 5 &
    CHILD=$!
    wait "$CHILD"
    CHILD=
else
    echo "== tcp-proxy: iperf3 is not installed (apt-get install iperf3), skipped"
fi

echo
echo "== stopping flowsteer (SIGINT): its final table"
kill -INT "$PID"
wait "$PID" || echo "flowsteer exited with $?"
PID=
cat "$LOG"
