#!/usr/bin/env bash
# Stage workers on one host (loopback): `omniconn run --listen` runs stage 0 and a worker
# (`omniconn stage`) runs stages 1-2. A split run delivers every request; a worker with a
# different config is refused; a remote stage killed, the worker killed, the orchestrator
# killed or interrupted: every process ends within seconds, naming what failed.
# Usage: stage_workers_test.sh <omniconn binary> <source dir>
set -uo pipefail
bin=$1
src=$2
cfg=$src/examples/qwen2_5_omni.yaml
if [ -n "${OMNICONN_SANITIZE:-}" ]; then
  # libzmq and its I/O threads are not instrumented; the plain build runs this test.
  echo "SKIP: stage workers: sanitizer build (libzmq is not instrumented)"
  exit 0
fi
tmp=$(mktemp -d)
started=()  # every process this test started, killed at exit
cleanup() {
  for p in "${started[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
source "$src/tests/check.sh"
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# start_orch ARGS...: the orchestrator (stage 0 local) in the background; $orch, $port.
start_orch() {
  : >"$tmp/orch.err"
  "$bin" run "$cfg" --listen 127.0.0.1:0 --local 0 --host-name hostA --no-progress "$@" \
    >"$tmp/orch.out" 2>"$tmp/orch.err" &
  orch=$!
  started+=("$orch")
  port=""
  for _ in $(seq 100); do
    port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$tmp/orch.err" | grep -o '[0-9.]*:[0-9]*$')
    [ -n "$port" ] && break
    sleep 0.05
  done
}
# start_worker ARGS...: stages 1,2 in the background; $worker.
start_worker() {
  "$bin" stage "$cfg" --stage 1,2 --orchestrator "$port" --host-name hostB "$@" \
    >"$tmp/worker.out" 2>"$tmp/worker.err" &
  worker=$!
  started+=("$worker")
}
# The stage processes of both sides: the orchestrator's children and the pids the worker printed.
stage_pids() {
  cat "/proc/$orch/task/$orch/children" 2>/dev/null
  grep -o 'started (pid [0-9]*' "$tmp/worker.err" 2>/dev/null | grep -o '[0-9]*$'
}
wait_started() {  # until the worker's two stages run (at most 10 s)
  for _ in $(seq 200); do
    [ "$(grep -c 'started (pid' "$tmp/worker.err" 2>/dev/null)" = 2 ] && return 0
    sleep 0.05
  done
  return 1
}
# ends_within MS PID...: every PID gone within MS; $took_ms.
ends_within() {
  local limit=$1 t0 p
  shift
  t0=$(now_ms)
  for p in "$@"; do
    while kill -0 "$p" 2>/dev/null && [ $(($(now_ms) - t0)) -lt "$limit" ]; do sleep 0.02; done
  done
  took_ms=$(($(now_ms) - t0))
  for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done
  return 0
}
rc_of() { wait "$1" 2>/dev/null; echo $?; }

# --- a split run ---
start_orch --requests 40 --concurrency 4 --tokens 64 --json "$tmp/run.json"
check "orchestrator prints where it listens" test -n "$port"
check "orchestrator prints the worker's command line" \
  grep -q "omniconn stage .* --stage 1,2 --orchestrator $port" "$tmp/orch.err"
start_worker
ends_within 30000 "$orch" "$worker"
check "split run: orchestrator exits 0" test "$(rc_of "$orch")" -eq 0
check "split run: worker exits 0" test "$(rc_of "$worker")" -eq 0
check "split run: every request done" grep -q '"requests_done": 40' "$tmp/run.json"
check "split run: the table shows the hosts of each edge" grep -q '0 -> 1 *hostA -> hostB' "$tmp/orch.out"
check "split run: the stage table shows hosts" grep -qE '^2 +hostB +code2wav' "$tmp/orch.out"
check "split run: no errors on any edge" \
  test "$(grep -c '"errors": 0' "$tmp/run.json")" -eq 2
check "split run: the worker says its stages finished" grep -q 'stages 1,2 finished' "$tmp/worker.err"

# --- a worker that loaded another config is refused; the orchestrator then times out ---
start_orch --requests 5 --join-timeout-ms 3000
start_worker --edges 0:2
ends_within 10000 "$worker"
check "mismatch: worker exits 2" test "$(rc_of "$worker")" -eq 2
check "mismatch: worker says the configs differ" grep -q 'refused: config mismatch' "$tmp/worker.err"
ends_within 10000 "$orch"
check "mismatch: orchestrator exits 1" test "$(rc_of "$orch")" -eq 1
check "mismatch: orchestrator names the stages that did not join" \
  grep -q 'stages 1, 2 did not join within 3.0 s' "$tmp/orch.err"

# --- a stage the orchestrator runs itself, and one the config lacks ---
start_orch --requests 5 --join-timeout-ms 3000
"$bin" stage "$cfg" --stage 0 --orchestrator "$port" >"$tmp/w0.out" 2>&1
check "local stage claimed: worker exits 2" test $? -eq 2
check "local stage claimed: says why" grep -q "stage 0 runs on the orchestrator's host" "$tmp/w0.out"
"$bin" stage "$cfg" --stage 9 --orchestrator "$port" >"$tmp/w9.out" 2>&1
check "unknown stage: worker exits 2" test $? -eq 2
check "unknown stage: names it" grep -q 'stage 9 is not in' "$tmp/w9.out"
kill "$orch"
ends_within 5000 "$orch"
check "orchestrator interrupted while waiting ends" test $? -eq 0
"$bin" stage "$cfg" --stage 1 --orchestrator 127.0.0.1:1 --connect-timeout-ms 500 >"$tmp/w.out" 2>&1
check "no orchestrator: worker exits 1" test $? -eq 1
check "no orchestrator: says where it looked" grep -q 'no answer from the orchestrator at 127.0.0.1:1' "$tmp/w.out"
"$bin" run "$cfg" --local 0 >"$tmp/w.out" 2>&1
check "--local without --listen is a usage error" test $? -eq 64

# --- faults: SIGKILL a remote stage, the worker, the orchestrator; SIGINT the orchestrator ---
fault() {  # fault NAME: start a long split run, inflict NAME, $pids = every process of the run
  start_orch --requests 100000000 --tokens 32
  start_worker
  wait_started
  sleep 0.5
  pids="$orch $worker $(stage_pids)"
  case $1 in
    stage) kill -9 "$(grep -o 'stage 1 started (pid [0-9]*' "$tmp/worker.err" | grep -o '[0-9]*$')" ;;
    worker) kill -9 "$worker" ;;
    orchestrator) kill -9 "$orch" ;;
    interrupt) kill -INT "$orch" ;;
  esac
}
fault stage
ends_within 5000 $pids
check "remote stage killed: every process ends within 5 s (${took_ms} ms)" test $? -eq 0
check "remote stage killed: orchestrator exits 1" test "$(rc_of "$orch")" -eq 1
check "remote stage killed: names the stage and host" \
  grep -q 'stage 1 (talker) on hostB (pid [0-9]*) killed by signal 9' "$tmp/orch.err"
check "remote stage killed: worker exits non-zero" test "$(rc_of "$worker")" -ne 0

fault worker
ends_within 8000 $pids
check "worker killed: every process ends within 8 s (${took_ms} ms)" test $? -eq 0
check "worker killed: orchestrator exits 1" test "$(rc_of "$orch")" -eq 1
check "worker killed: names the lost host and its stages" \
  grep -q 'lost the control connection to the worker on hostB.*stage 1 (talker)' "$tmp/orch.err"

fault orchestrator
ends_within 8000 $pids
check "orchestrator killed: every process ends within 8 s (${took_ms} ms)" test $? -eq 0
check "orchestrator killed: worker exits non-zero" test "$(rc_of "$worker")" -ne 0

fault interrupt
ends_within 5000 $pids
check "orchestrator interrupted: every process ends within 5 s (${took_ms} ms)" test $? -eq 0
check "orchestrator interrupted: worker says it was stopped and why" \
  grep -q 'stopped by the orchestrator: the orchestrator was interrupted' "$tmp/worker.err"

echo "stage_workers_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
