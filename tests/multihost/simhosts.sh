#!/usr/bin/env bash
# Simulated hosts for multi-host tests: two network namespaces joined by a veth pair, each
# with its own address. The addresses exist only inside the namespaces made here: traffic
# between the hosts never leaves them, and neither host has a route anywhere else.
#
#   source tests/multihost/simhosts.sh
#   simhosts_up || { echo "SKIP: $SIMHOSTS_WHY"; exit 0; }
#   trap simhosts_down EXIT
#   simhosts_exec a CMD...        # run CMD on host A (also b); $SIMHOSTS_A / $SIMHOSTS_B
#   simhosts_bg b LOG CMD...      # start CMD on host B in the background; its pid is $!
#   simhosts_link down|up         # cut or restore the link between them
#   simhosts_down                 # every process in the namespaces killed, namespaces gone
#
#   simhosts_master N DIR [ARGS...]  mooncake_master N inside host A (see below)
#
# Needs root and iproute2; simhosts_up returns 1 with the reason in $SIMHOSTS_WHY otherwise.
# Names carry this shell's pid, so concurrent tests never meet.

SIMHOSTS_TAG="oc$$"
SIMHOSTS_NS_A="${SIMHOSTS_TAG}a"
SIMHOSTS_NS_B="${SIMHOSTS_TAG}b"
# A /30 inside 10.213.0.0/16 picked from the pid: only these two addresses, only in here.
SIMHOSTS_NET="10.213.$(($$ % 250)).$(((($$ / 250) % 60) * 4))"
SIMHOSTS_A="${SIMHOSTS_NET%.*}.$((${SIMHOSTS_NET##*.} + 1))"
SIMHOSTS_B="${SIMHOSTS_NET%.*}.$((${SIMHOSTS_NET##*.} + 2))"
SIMHOSTS_WHY=""
SIMHOSTS_MADE=0

simhosts_up() {
  if [ "$(id -u)" != 0 ]; then SIMHOSTS_WHY="not root: cannot create network namespaces"; return 1; fi
  if ! command -v ip >/dev/null; then SIMHOSTS_WHY="iproute2 (ip) is not installed"; return 1; fi
  if ! ip netns add "$SIMHOSTS_NS_A" 2>/dev/null; then
    SIMHOSTS_WHY="ip netns add failed (no namespace support here?)"
    return 1
  fi
  SIMHOSTS_MADE=1
  ip netns add "$SIMHOSTS_NS_B" &&
    ip link add "${SIMHOSTS_TAG}va" netns "$SIMHOSTS_NS_A" type veth \
      peer name "${SIMHOSTS_TAG}vb" netns "$SIMHOSTS_NS_B" &&
    ip -n "$SIMHOSTS_NS_A" addr add "$SIMHOSTS_A/30" dev "${SIMHOSTS_TAG}va" &&
    ip -n "$SIMHOSTS_NS_B" addr add "$SIMHOSTS_B/30" dev "${SIMHOSTS_TAG}vb" &&
    ip -n "$SIMHOSTS_NS_A" link set lo up && ip -n "$SIMHOSTS_NS_B" link set lo up &&
    ip -n "$SIMHOSTS_NS_A" link set "${SIMHOSTS_TAG}va" up &&
    ip -n "$SIMHOSTS_NS_B" link set "${SIMHOSTS_TAG}vb" up || {
    SIMHOSTS_WHY="could not wire the namespaces"
    simhosts_down
    return 1
  }
}

simhosts_ns() {  # simhosts_ns a|b: the namespace of that host
  case "$1" in a) echo "$SIMHOSTS_NS_A" ;; b) echo "$SIMHOSTS_NS_B" ;; *) return 1 ;; esac
}

simhosts_exec() {  # simhosts_exec a|b CMD...
  local ns
  ns=$(simhosts_ns "$1") || { echo "simhosts_exec: host a or b, got '$1'" >&2; return 2; }
  shift
  ip netns exec "$ns" "$@"
}

simhosts_bg() {  # simhosts_bg a|b LOG CMD...: background; $! is CMD's pid (ip execs it)
  local ns log=$2
  ns=$(simhosts_ns "$1") || { echo "simhosts_bg: host a or b, got '$1'" >&2; return 2; }
  shift 2
  ip netns exec "$ns" "$@" >"$log" 2>&1 &
}

simhosts_link() {  # simhosts_link down|up: the veth on host A
  ip -n "$SIMHOSTS_NS_A" link set "${SIMHOSTS_TAG}va" "$1"
}

# Kills what runs in the namespaces (TERM, then KILL after 2 s), then deletes them.
simhosts_down() {
  [ "$SIMHOSTS_MADE" = 1 ] || return 0
  local ns pids i
  for ns in "$SIMHOSTS_NS_A" "$SIMHOSTS_NS_B"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
  done
  for i in $(seq 20); do
    pids="$(ip netns pids "$SIMHOSTS_NS_A" 2>/dev/null)$(ip netns pids "$SIMHOSTS_NS_B" 2>/dev/null)"
    [ -z "$pids" ] && break
    sleep 0.1
  done
  for ns in "$SIMHOSTS_NS_A" "$SIMHOSTS_NS_B"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  SIMHOSTS_MADE=0
}

# Mooncake for the simulated hosts: the library and master the tests and benchmarks use.
SIMHOSTS_MC_LIB=${MOONCAKE_STORE_LIBRARY:-/opt/mooncake/lib/libmooncake_store.so}
SIMHOSTS_MC_MASTER=${OMNICONN_MOONCAKE_MASTER:-/opt/mooncake/bin/mooncake_master}

simhosts_no_mooncake() {  # true, with the reason in $SIMHOSTS_WHY, when Mooncake is missing
  [ -f "$SIMHOSTS_MC_LIB" ] && [ -x "$SIMHOSTS_MC_MASTER" ] && return 1
  SIMHOSTS_WHY="no $SIMHOSTS_MC_LIB or $SIMHOSTS_MC_MASTER (docs/mooncake.md)"
}

# simhosts_master N DIR [ARGS...]: mooncake_master number N inside host A, on A's address: RPC
# port 50051+N, HTTP metadata 8080+N, metrics 9003+N (its HTTP ports bind every interface, and
# A has only its own); working directory and log (masterN.log) in DIR. Its pid in
# $SIMHOSTS_MASTER_PID; returns once the HTTP port answers, 1 after 10 s.
simhosts_master() {
  local n=$1 dir=$2
  shift 2
  (cd "$dir" && simhosts_bg a "$dir/master$n.log" "$SIMHOSTS_MC_MASTER" \
    --rpc_address="$SIMHOSTS_A" --rpc_port=$((50051 + n)) --enable_http_metadata_server=true \
    --http_metadata_server_host="$SIMHOSTS_A" --http_metadata_server_port=$((8080 + n)) \
    --metrics_port=$((9003 + n)) "$@" && echo $! >"$dir/master$n.pid")
  SIMHOSTS_MASTER_PID=$(cat "$dir/master$n.pid")
  for _ in $(seq 100); do
    simhosts_exec a /usr/bin/python3 -c \
      "import socket; socket.create_connection(('$SIMHOSTS_A', $((8080 + n))), 0.2)" \
      2>/dev/null && return 0
    sleep 0.1
  done
  echo "simhosts_master: mooncake_master $n did not listen on $SIMHOSTS_A:$((8080 + n)) in 10 s" >&2
  return 1
}
