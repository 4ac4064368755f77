# shellcheck shell=bash
# The test network the veth scripts share, sourced by them (not run on its own):
#
#   flowsteer:  namespace <client ns>  veth 198.18.0.2/24, 2001:db8::2/64  ====  veth (no address),
#               this namespace: flowsteer on AF_PACKET, 198.18.0.1 and 2001:db8::1 in its config
#   kernel:     namespace <client ns>  veth 198.18.0.2/24, 2001:db8::2/64  ====  veth
#               198.18.0.1/24, 2001:db8::1/64 in namespace <server ns>: the kernel's own stack
#
# Every client end sends full checksums (smoltcp drops partial ones) and wire-sized segments;
# every server end has GRO off. The caller names everything (with its pid in the names) and
# lists what to remove in RIG_NAMESPACES and RIG_LINKS; rig_cleanup removes them.

RIG_NAMESPACES=()
RIG_LINKS=()

rig_die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

# rig_require TOOL...: root, and each tool on PATH (with the Debian package that has it).
rig_require() {
    [ "$(id -u)" -eq 0 ] || rig_die "needs root (network namespaces, veth, AF_PACKET); run it with sudo"
    local tool package
    for tool in "$@"; do
        case "$tool" in
            ip) package=iproute2 ;;
            ab) package=apache2-utils ;;
            nc) package=netcat-openbsd ;;
            nginx) package=nginx-light ;;
            *) package=$tool ;;
        esac
        command -v "$tool" >/dev/null || rig_die "needs $tool: apt-get install $package"
    done
}

# rig_client_end NS IF: the client's host on its veth end.
rig_client_end() {
    ip -n "$1" link set dev lo up
    ip -n "$1" link set dev "$2" addrgenmode none
    ip -n "$1" addr add 198.18.0.2/24 dev "$2"
    ip -n "$1" -6 addr add 2001:db8::2/64 dev "$2" nodad
    ip -n "$1" link set dev "$2" up
    ip netns exec "$1" ethtool -K "$2" tx off >/dev/null
}

# rig_flowsteer_pair CLIENT_NS ENGINE_IF CLIENT_IF: the engine's end here, link level only (no
# address: the kernel must not answer for flowsteer's addresses), the client's in CLIENT_NS.
rig_flowsteer_pair() {
    ip netns add "$1"
    RIG_NAMESPACES+=("$1")
    ip link add "$2" type veth peer name "$3" netns "$1"
    RIG_LINKS+=("$2")
    ip link set dev "$2" addrgenmode none
    ip link set dev "$2" up
    ethtool -K "$2" gro off >/dev/null
    rig_client_end "$1" "$3"
}

# rig_kernel_pair SERVER_NS CLIENT_NS SERVER_IF CLIENT_IF: the same kind of veth with the
# kernel's own stack holding flowsteer's addresses in SERVER_NS.
rig_kernel_pair() {
    ip netns add "$1"
    ip netns add "$2"
    RIG_NAMESPACES+=("$1" "$2")
    ip link add "$3" netns "$1" type veth peer name "$4" netns "$2"
    ip -n "$1" link set dev lo up
    ip -n "$1" link set dev "$3" addrgenmode none
    ip -n "$1" addr add 198.18.0.1/24 dev "$3"
    ip -n "$1" -6 addr add 2001:db8::1/64 dev "$3" nodad
    ip -n "$1" link set dev "$3" up
    ip netns exec "$1" ethtool -K "$3" gro off >/dev/null
    rig_client_end "$2" "$4"
}

# rig_wait_tcp NS HOST PORT [SECONDS]: until a TCP connection from NS to HOST:PORT succeeds.
rig_wait_tcp() {
    local i tries=$((${4:-10} * 5))
    for i in $(seq 1 "$tries"); do
        if ip netns exec "$1" python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()' "$2" "$3" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# rig_cleanup: removes the namespaces (and with them their veth ends) and the links listed.
rig_cleanup() {
    local ns link
    for ns in "${RIG_NAMESPACES[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    for link in "${RIG_LINKS[@]}"; do
        ip link del "$link" 2>/dev/null || true
    done
}

# rig_flowsteer_binary: sets FLOWSTEER to the binary to run: as given, or the release build.
rig_flowsteer_binary() {
    if [ -z "${FLOWSTEER:-}" ]; then
        echo "== building flowsteer (release)"
        cargo build --release -q -p forwarder
        FLOWSTEER=${CARGO_TARGET_DIR:-target}/release/flowsteer
    fi
    [ -x "$FLOWSTEER" ] || rig_die "$FLOWSTEER is not an executable"
}

# rig_end PID SIGNAL: ends a process of the script (continued first: it may be stopped mid-turn)
# and waits for it; flowsteer gets SIGINT, so that it prints its final table.
rig_end() {
    [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 0
    kill -CONT "$1" 2>/dev/null || true
    kill "-$2" "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# rig_bulk_client FILE: writes the bulk client there: `python3 FILE HOST PORT MIB` sends MIB
# mebibytes in 64 KiB writes, half-closes, stops the clock when the receiver closes (it has read
# everything) and prints the Mbit/s.
rig_bulk_client() {
    cat >"$1" <<'PY'
import socket, sys, time
host, port, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunk = bytes(range(256)) * 256
s = socket.create_connection((host, port), timeout=30)
start = time.monotonic()
for _ in range(mib * 16):
    s.sendall(chunk)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(f"{mib * 8 * 1.048576 / (time.monotonic() - start):.0f}")
PY
}

# rig_kernel_server FILE: builds examples/lib/kernel-server.c (the kernel's echo server and sink)
# into FILE.
rig_kernel_server() {
    cc -O2 -pthread -o "$1" examples/lib/kernel-server.c ||
        rig_die "cannot build the kernel's server (needs a C compiler: apt-get install gcc)"
}
