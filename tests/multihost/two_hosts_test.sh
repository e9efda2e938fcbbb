#!/usr/bin/env bash
# The pipeline across two simulated hosts (simhosts.sh): stage 0 on A with mooncake_master,
# stages 1-2 on B; edge 0->1 through the Mooncake store, 1->2 in B's shared memory. A run
# verifies every tensor; a shared-memory edge between the hosts is refused before anything
# starts; a stage killed on B ends every process on both hosts. (Faults of the store and the
# link: two_hosts_faults_test.sh.)
# Usage: two_hosts_test.sh <omniconn binary> <source dir>
set -uo pipefail
bin=$1
src=$2
source "$src/tests/multihost/two_hosts_lib.sh"

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

mooncake_or_done
master_up
cfg=$src/examples/multihost/qwen2_5_omni_two_hosts.yaml

plot=()  # the picture of a split run: its edges' samples come from both hosts
/usr/bin/python3 -c 'import matplotlib' 2>/dev/null && plot=(--plot "$tmp/run.png")
split "$cfg" --requests 50 --concurrency 4 --tokens 64 --json "$tmp/run.json" "${plot[@]}"
wait "$orch"
check "Mooncake A->B: orchestrator exits 0" test $? -eq 0
wait "$worker"
check "Mooncake A->B: worker exits 0" test $? -eq 0
check "Mooncake A->B: every request done" grep -q '"requests_done": 50' "$tmp/run.json"
check "Mooncake A->B: no errors" test "$(grep -c '"errors": 0' "$tmp/run.json")" -eq 2
check "Mooncake A->B: 0->1 crossed hosts" grep -q '0 -> 1 *A -> B *MooncakeConnector' "$tmp/orch.log"
check "Mooncake A->B: 1->2 stayed on B in shared memory" \
  grep -q '1 -> 2 *B -> B *SharedMemoryConnector' "$tmp/orch.log"
if [ ${#plot[@]} -gt 0 ]; then
  check "Mooncake A->B: --plot draws the split run" test "$(stat -c %s "$tmp/run.png")" -gt 20000
else
  echo "SKIP: --plot of the split run: /usr/bin/python3 cannot import matplotlib"
fi
grep -E '^(edge|[0-9] ->|[0-9]+ requests)' "$tmp/orch.log"

# A stage killed on B mid-run: every process on both hosts ends, naming the stage and host.
split "$cfg" --requests 100000000 --tokens 32
wait_started 2 "$tmp/worker.log"
sleep 1
kill -9 "$(stage_pid 1 "$tmp/worker.log")"
t0=$(now_ms)
wait "$orch"
check "killed on B: orchestrator exits 1" test $? -eq 1
wait "$worker"
took=$(($(now_ms) - t0))
check "killed on B: both hosts end within 8 s (${took} ms)" test "$took" -lt 8000
check "killed on B: names the stage and host" \
  grep -q 'stage 1 on B (pid [0-9]*) killed by signal 9' "$tmp/orch.log"
left=$(left_on_hosts)
check "killed on B: no omniconn process left on either host ($left)" test "$left" -eq 0

finish
