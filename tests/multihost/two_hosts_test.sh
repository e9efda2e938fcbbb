#!/usr/bin/env bash
# The pipeline across two simulated hosts (simhosts.sh): stage 0 on A with mooncake_master,
# stages 1-2 on B; edge 0->1 through the Mooncake store, 1->2 in B's shared memory. A run
# verifies every tensor; a shared-memory edge between the hosts is refused before anything
# starts; a stage killed on B ends every process on both hosts.
# Usage: two_hosts_test.sh <omniconn binary> <source dir>
set -uo pipefail
bin=$1
src=$2
mc_lib=${MOONCAKE_STORE_LIBRARY:-/opt/mooncake/lib/libmooncake_store.so}
mc_master=${OMNICONN_MOONCAKE_MASTER:-/opt/mooncake/bin/mooncake_master}
if [ -n "${OMNICONN_SANITIZE:-}" ]; then
  echo "SKIP: two hosts: sanitizer build (Mooncake and libzmq are not instrumented)"
  exit 0
fi
source "$src/tests/multihost/simhosts.sh"
simhosts_up || { echo "SKIP: two hosts: $SIMHOSTS_WHY"; exit 0; }
tmp=$(mktemp -d)
trap 'simhosts_down; rm -rf "$tmp"' EXIT
source "$src/tests/check.sh"
now_ms() { echo $(($(date +%s%N) / 1000000)); }
A=$SIMHOSTS_A
# split CFG ORCH-ARGS...: orchestrator on A (stage 0), worker on B (stages 1,2); $orch $worker.
split() {
  local cfg=$1
  shift
  OMNICONN_HOST=$A simhosts_bg a "$tmp/orch.log" "$bin" run "$cfg" --listen "$A:7000" --local 0 \
    --host-name A --no-progress "$@"
  orch=$!
  sleep 0.3
  OMNICONN_HOST=$SIMHOSTS_B simhosts_bg b "$tmp/worker.log" "$bin" stage "$cfg" --stage 1,2 \
    --orchestrator "$A:7000" --host-name B
  worker=$!
}

# A shared-memory edge between the hosts: refused before any stage starts.
split "$src/examples/qwen2_5_omni.yaml" --requests 5
wait "$orch"
check "SHM across hosts: orchestrator exits 1" test $? -eq 1
wait "$worker"
check "SHM across hosts: worker exits 2" test $? -eq 2
check "SHM across hosts: names the edge and both hosts" \
  grep -q 'edge 0->1 uses SharedMemoryConnector .*cannot cross hosts, but stage 0 runs on A and stage 1 on B' \
  "$tmp/orch.log"
check "SHM across hosts: no stage started" bash -c "! grep -q 'started (pid' '$tmp/worker.log'"

if [ ! -f "$mc_lib" ] || [ ! -x "$mc_master" ]; then
  echo "SKIP: two hosts over Mooncake: no $mc_lib or $mc_master (docs/mooncake.md)"
  echo "two_hosts_test: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
fi
export MOONCAKE_STORE_LIBRARY=$mc_lib MOONCAKE_MASTER_HOST=$A
# The master inside host A's namespace: its HTTP ports bind every interface, and A has only
# its own.
(cd "$tmp" && simhosts_bg a "$tmp/master.log" "$mc_master" --rpc_address="$A" --rpc_port=50051 \
  --enable_http_metadata_server=true --http_metadata_server_host="$A" \
  --http_metadata_server_port=8080 --metrics_port=9003)
for _ in $(seq 100); do
  simhosts_exec a /usr/bin/python3 -c "import socket; socket.create_connection(('$A', 8080), 0.2)" \
    2>/dev/null && break
  sleep 0.1
done
cfg=$src/examples/multihost/qwen2_5_omni_two_hosts.yaml

split "$cfg" --requests 50 --concurrency 4 --tokens 64 --json "$tmp/run.json"
wait "$orch"
check "Mooncake A->B: orchestrator exits 0" test $? -eq 0
wait "$worker"
check "Mooncake A->B: worker exits 0" test $? -eq 0
check "Mooncake A->B: every request done" grep -q '"requests_done": 50' "$tmp/run.json"
check "Mooncake A->B: no errors" test "$(grep -c '"errors": 0' "$tmp/run.json")" -eq 2
check "Mooncake A->B: 0->1 crossed hosts" grep -q '0 -> 1 *A -> B *MooncakeConnector' "$tmp/orch.log"
check "Mooncake A->B: 1->2 stayed on B in shared memory" \
  grep -q '1 -> 2 *B -> B *SharedMemoryConnector' "$tmp/orch.log"
grep -E '^(edge|[0-9] ->|[0-9]+ requests)' "$tmp/orch.log"

# A stage killed on B mid-run: every process on both hosts ends, naming the stage and host.
split "$cfg" --requests 100000000 --tokens 32
for _ in $(seq 200); do
  [ "$(grep -c 'started (pid' "$tmp/worker.log" 2>/dev/null)" = 2 ] && break
  sleep 0.05
done
sleep 1
victim=$(grep -o 'stage 1 started (pid [0-9]*' "$tmp/worker.log" | grep -o '[0-9]*$')
kill -9 "$victim"
t0=$(now_ms)
wait "$orch"
check "killed on B: orchestrator exits 1" test $? -eq 1
wait "$worker"
took=$(($(now_ms) - t0))
check "killed on B: both hosts end within 8 s (${took} ms)" test "$took" -lt 8000
check "killed on B: names the stage and host" \
  grep -q 'stage 1 on B (pid [0-9]*) killed by signal 9' "$tmp/orch.log"
left=$( (ip netns pids "$SIMHOSTS_NS_A"; ip netns pids "$SIMHOSTS_NS_B") | grep -v -x -f <(pgrep -f mooncake_master) | wc -l)
check "killed on B: no omniconn process left on either host ($left)" test "$left" -eq 0

echo "two_hosts_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
