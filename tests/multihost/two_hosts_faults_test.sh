#!/usr/bin/env bash
# Faults of a pipeline across two simulated hosts (simhosts.sh; stage 0 on A with
# mooncake_master, stages 1-2 on B, edge 0->1 through the Mooncake store): the link between
# the hosts cut, the store full, the master killed. Each run must end on both hosts before its
# deadline with a typed error naming what failed, deliver nothing corrupt, and leave no process.
# Usage: two_hosts_faults_test.sh <omniconn binary> <source dir>
set -uo pipefail
bin=$1
src=$2
source "$src/tests/multihost/two_hosts_lib.sh"
mooncake_or_done
master_up
cfg=$src/examples/multihost/qwen2_5_omni_two_hosts.yaml

# ended NAME LIMIT-MS: both hosts' processes ended within LIMIT-MS of $t0, both exit non-zero,
# nothing delivered corrupt, nothing left; prints what each host said last.
ended() {
  local name=$1 limit=$2 orc wrc took left
  wait "$orch"
  orc=$?
  wait "$worker"
  wrc=$?
  took=$(($(now_ms) - t0))
  echo "--- $name: ended in $took ms; orchestrator (A) exit $orc, worker (B) exit $wrc"
  grep -v -E '^ *$' "$tmp/orch.log" | grep -i -E 'error|lost|fail|ended|stage [0-9]' | tail -4 | sed 's/^/A: /'
  grep -v -E '^ *$' "$tmp/worker.log" | grep -i -E 'error|lost|fail|ended' | tail -4 | sed 's/^/B: /'
  check "$name: orchestrator exits 1 ($orc)" test "$orc" -eq 1
  check "$name: worker exits non-zero ($wrc)" test "$wrc" -ne 0
  check "$name: both hosts end within $limit ms ($took ms)" test "$took" -lt "$limit"
  check "$name: nothing delivered corrupt" \
    bash -c "! grep -q -i -E 'corrupt|checksum mismatch|content mismatch' '$tmp/orch.log' '$tmp/worker.log'"
  left=$(left_on_hosts)
  check "$name: no omniconn process left on either host ($left)" test "$left" -eq 0
}

# A fresh master for the next run: for client_ttl (10 s) after a client was SIGKILLed, the
# master still lists its segment and may place a replica there (the put then fails with
# TRANSFER_FAIL), which is not the fault under test.
fresh_master() {
  kill -9 "$master" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$master" 2>/dev/null || break; sleep 0.05; done
  master_up
}

# running CFG ARGS...: a long split run, stages started and requests flowing through every
# edge (a fault during the connectors' setup would test Mooncake's setup retries instead: its
# client retries a dead master 20 times, 4 s each, inside one call).
running() {
  local cfg=$1
  shift
  split "$cfg" --requests 100000000 --tokens 32 --metrics "$A:9100" "$@"
  wait_started 2 "$tmp/worker.log"
  check "requests flow before the fault" wait_flowing 9100
}

# The link cut mid-run: heartbeats stop both ways; each side ends its own stages.
running "$cfg" --heartbeat-timeout-ms 2000
simhosts_link down
t0=$(now_ms)
ended "link cut" 10000
check "link cut: A names the lost worker on B" \
  grep -q 'lost the control connection to the worker on B' "$tmp/orch.log"
check "link cut: B names the lost orchestrator" grep -q "lost the orchestrator at $A:7000" "$tmp/worker.log"
simhosts_link up
fresh_master

# The store full: every payload (56 MiB of hidden states) is larger than the whole store
# (2 x 16 MiB segments). The put is refused with a typed error until --op-timeout-ms.
small=$tmp/small_store.yaml
sed -e "s#^base_config: .*#base_config: $src/examples/deploy/qwen2_5_omni.yaml#" \
  -e 's#segment: [0-9]*#segment: 16777216#' "$cfg" >"$small"
split "$small" --requests 4 --tokens 4096 --op-timeout-ms 2000
t0=$(now_ms)
ended "store full" 15000
check "store full: A names stage 0, the edge and the full store" \
  grep -q 'omniconn run: .*stage 0 on A failed: resource exhausted: edge 0->1: MooncakeConnector: .*NO_AVAILABLE_HANDLE (-200); no segment has room' \
  "$tmp/orch.log"
check "store full: B says why the orchestrator stopped it" \
  grep -q 'stopped by the orchestrator: stage 0 on A failed: resource exhausted' "$tmp/worker.log"

# The master killed mid-run: the store's operations fail on both hosts.
running "$cfg" --op-timeout-ms 3000
kill -9 "$master"
t0=$(now_ms)
master=""
ended "master killed" 20000
# The cause, not the stage downstream that starved first ("edge 1->2: nothing for 3000 ms").
check "master killed: A names stage 0 and the store's RPC failure" \
  grep -q -E 'omniconn run: .*stage 0 on A failed: [a-z ]+: edge 0->1: MooncakeConnector: .*(RPC_FAIL|RPC_TIMEOUT|unreachable)' \
  "$tmp/orch.log"
check "master killed: B says why the orchestrator stopped it" \
  grep -q 'stopped by the orchestrator: stage 0 on A failed' "$tmp/worker.log"

finish
