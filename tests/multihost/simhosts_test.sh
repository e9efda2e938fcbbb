#!/usr/bin/env bash
# The simulated hosts of simhosts.sh: each host sees only its own address, the hosts reach
# each other over the veth, a cut link stops traffic, and nothing is left afterwards.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=simhosts.sh
source "$here/simhosts.sh"
source "$here/../check.sh"
py=/usr/bin/python3

simhosts_up || { echo "SKIP: simulated hosts: $SIMHOSTS_WHY"; exit 0; }
tmp=$(mktemp -d)
trap 'simhosts_down; rm -rf "$tmp"' EXIT

addrs_a=$(simhosts_exec a ip -o -4 addr show | awk '{print $4}' | sort | tr '\n' ' ')
want=$(printf '%s\n' 127.0.0.1/8 "$SIMHOSTS_A/30" | sort | tr '\n' ' ')
check "host A has loopback and its own address only ($addrs_a)" test "$addrs_a" = "$want"
routes_b=$(simhosts_exec b ip -4 route show | grep -c default)
check "host B has no default route" test "$routes_b" -eq 0

# A one-shot TCP echo on B (10 s at most); A connects to B's address, retrying for up to
# the given seconds while the server starts.
server='import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 47001)); s.listen(1); s.settimeout(10)
c,_=s.accept(); c.sendall(c.recv(64)); c.close()'
client='import socket,sys,time
end=time.monotonic()+float(sys.argv[2])
while True:
    try:
        c=socket.create_connection((sys.argv[1], 47001), timeout=1); break
    except OSError:
        if time.monotonic() > end: raise
        time.sleep(0.05)
c.sendall(b"ping"); print(c.recv(64).decode())'
simhosts_bg b "$tmp/server.log" "$py" -c "$server" "$SIMHOSTS_B"
server_pid=$!
out=$(simhosts_exec a "$py" -c "$client" "$SIMHOSTS_B" 5 2>&1)
check "A reaches B over the veth (got '$out')" test "$out" = "ping"
wait "$server_pid"

simhosts_link down
simhosts_bg b "$tmp/server.log" "$py" -c "$server" "$SIMHOSTS_B"
server_pid=$!
simhosts_exec a "$py" -c "$client" "$SIMHOSTS_B" 1 >/dev/null 2>&1
check "a cut link stops traffic" test $? -ne 0
simhosts_link up

ns_a=$SIMHOSTS_NS_A
simhosts_down
check "the namespaces are gone" bash -c "! ip netns list | grep -q '^$ns_a'"
check "the process left in a namespace was killed" bash -c "! kill -0 $server_pid 2>/dev/null"
echo "$passed passed, $failed failed"
test "$failed" -eq 0
