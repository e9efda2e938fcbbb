#!/usr/bin/env bash
# What the two-host tests share (source it after setting $bin and $src): the skips, two
# simulated hosts (simhosts.sh), a temporary directory, check(), and
#
#   split CFG ORCH-ARGS...   orchestrator on A (stage 0) with ORCH-ARGS, worker on B (stages
#                            1,2); their pids in $orch and $worker, logs $tmp/orch.log, worker.log
#   mooncake_or_done         ends the test (printing why) when Mooncake is not installed
#   master_up [ARGS...]      mooncake_master inside A on $A:50051 (HTTP 8080, metrics 9003);
#                            its pid in $master, log $tmp/master0.log
#   wait_started N LOG       until LOG shows N stages started (at most 10 s)
#   wait_flowing PORT        until the orchestrator's /metrics on $A:PORT (run --metrics) counts
#                            a completed request, i.e. every edge has carried one (at most 30 s)
#   stage_pid ID LOG         the pid a log says stage ID started with
#   left_on_hosts            processes still in either namespace, except the master
#   now_ms                   milliseconds since the epoch
test_name=$(basename "$0" .sh)
if [ -n "${OMNICONN_SANITIZE:-}" ]; then
  echo "SKIP: $test_name: sanitizer build (Mooncake and libzmq are not instrumented)"
  exit 0
fi
source "$src/tests/multihost/simhosts.sh"
simhosts_up || { echo "SKIP: $test_name: $SIMHOSTS_WHY"; exit 0; }
tmp=$(mktemp -d)
trap 'simhosts_down; rm -rf "$tmp"' EXIT
source "$src/tests/check.sh"
A=$SIMHOSTS_A
B=$SIMHOSTS_B
master=""

now_ms() { echo $(($(date +%s%N) / 1000000)); }

split() {
  local cfg=$1
  shift
  OMNICONN_HOST=$A simhosts_bg a "$tmp/orch.log" "$bin" run "$cfg" --listen "$A:7000" --local 0 \
    --host-name A --no-progress "$@"
  orch=$!
  sleep 0.3
  OMNICONN_HOST=$B simhosts_bg b "$tmp/worker.log" "$bin" stage "$cfg" --stage 1,2 \
    --orchestrator "$A:7000" --host-name B
  worker=$!
}

finish() {
  echo "$test_name: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

mooncake_or_done() {
  if simhosts_no_mooncake; then
    echo "SKIP: $test_name over Mooncake: $SIMHOSTS_WHY"
    finish
  fi
  export MOONCAKE_STORE_LIBRARY=$SIMHOSTS_MC_LIB MOONCAKE_MASTER_HOST=$A
}

master_up() {
  simhosts_master 0 "$tmp" "$@" || return 1
  master=$SIMHOSTS_MASTER_PID
}

wait_started() {
  for _ in $(seq 200); do
    [ "$(grep -c 'started (pid' "$2" 2>/dev/null)" -ge "$1" ] && return 0
    sleep 0.05
  done
  return 1
}

wait_flowing() {
  local url="http://$A:$1/metrics"
  simhosts_exec a /usr/bin/python3 - "$url" <<'PY'
import re, sys, time, urllib.request
end = time.monotonic() + 30
while time.monotonic() < end:
    try:
        text = urllib.request.urlopen(sys.argv[1], timeout=1).read().decode()
        m = re.search(r"^omniconn_run_requests_completed_total(?:\{[^}]*\})? (\S+)$", text, re.M)
        if m and float(m.group(1)) >= 1:
            sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
print("wait_flowing: no request completed within 30 s at " + sys.argv[1])
sys.exit(1)
PY
}

stage_pid() { grep -o "stage $1 started (pid [0-9]*" "$2" | grep -o '[0-9]*$'; }

left_on_hosts() {
  local keep=${master:-none}
  (ip netns pids "$SIMHOSTS_NS_A"; ip netns pids "$SIMHOSTS_NS_B") | grep -v -x -e "$keep" | wc -l
}
