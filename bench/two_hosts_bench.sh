#!/usr/bin/env bash
# Two simulated hosts (tests/multihost/simhosts.sh: network namespaces joined by a veth pair),
# measured in one run: (1) mooncake_hosts_bench, a payload from A to B through Mooncake, raw
# against MooncakeConnector with the master's and with preferred placement; (2) the 3-stage
# pipeline (examples/multihost/qwen2_5_omni_two_hosts.yaml) with stage 0 on A and stages 1-2 on
# B, against the same pipeline on one host. Masters run inside A (their HTTP ports bind every
# interface, and A has only its own).
#
#   bench/two_hosts_bench.sh BUILD_DIR [--quick] [--json=FILE]
# Prints "skipped: <why>" and exits 0 without root, namespaces or Mooncake.
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: two_hosts_bench.sh BUILD_DIR [--quick] [--json=FILE]}
shift
quick=0
out=""
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    --json=*) out=${a#--json=} ;;
    *) echo "two_hosts_bench: unknown argument '$a'" >&2; exit 64 ;;
  esac
done
bin=$build/tools/omniconn
source "$src/tests/multihost/simhosts.sh"
if simhosts_no_mooncake || ! simhosts_up; then
  echo "two_hosts_bench: skipped: $SIMHOSTS_WHY"
  exit 0
fi
tmp=$(mktemp -d)
trap 'simhosts_down; rm -rf "$tmp"' EXIT
A=$SIMHOSTS_A
B=$SIMHOSTS_B
export MOONCAKE_STORE_LIBRARY=$SIMHOSTS_MC_LIB MC_LOG_LEVEL=WARNING GLOG_minloglevel=2
for i in 0 1 2; do  # one master per way of mooncake_hosts_bench; the pipelines use the first
  simhosts_master "$i" "$tmp" || exit 1
done

sizes=1M,16M,64M
iters=20
requests=300
if [ "$quick" = 1 ]; then iters=3 requests=40; fi
"$build/bench/mooncake_hosts_bench" --ns-a "$SIMHOSTS_NS_A" --ns-b "$SIMHOSTS_NS_B" --a "$A" \
  --b "$B" --sizes "$sizes" --iters "$iters" --json "$tmp/transfer.json" || exit 1

cfg=$src/examples/multihost/qwen2_5_omni_two_hosts.yaml
export MOONCAKE_MASTER_HOST=$A
# No stage work: the figure is what the connectors carry.
run_args=(--requests "$requests" --concurrency 4 --no-progress --source-us-per-token 0
  --middle-us-per-token 0 --sink-us-per-token 0)
# The pipeline split: stage 0 on A, stages 1-2 on B.
OMNICONN_HOST=$A simhosts_bg a "$tmp/orch.log" "$bin" run "$cfg" --listen "$A:7000" --local 0 \
  --host-name A "${run_args[@]}" --json "$tmp/two_hosts.json"
orch=$!
sleep 0.3
OMNICONN_HOST=$B simhosts_bg b "$tmp/worker.log" "$bin" stage "$cfg" --stage 1,2 \
  --orchestrator "$A:7000" --host-name B
worker=$!
wait "$orch" || { echo "two_hosts_bench: the split run failed:"; tail -5 "$tmp/orch.log"; exit 1; }
wait "$worker"
# The same pipeline on host A alone (edge 0->1 still through the store, over A's loopback).
OMNICONN_HOST=$A simhosts_exec a "$bin" run "$cfg" "${run_args[@]}" --json "$tmp/one_host.json" \
  >"$tmp/one.log" 2>&1 || { echo "two_hosts_bench: the one-host run failed:"; tail -5 "$tmp/one.log"; exit 1; }

/usr/bin/python3 - "$tmp" "$out" <<'PY'
import json, pathlib, sys
tmp, out = pathlib.Path(sys.argv[1]), sys.argv[2]
doc = {"transfer": json.loads((tmp / "transfer.json").read_text()), "pipeline": {}}
print(f"\n3-stage pipeline, {'split A/B':>10} against one host")
print(f"{'run':10} {'req/s':>8}  {'edge':6} {'hosts':7} {'connector':40} {'p50 ms':>8} {'p99 ms':>8}")
for name in ("two_hosts", "one_host"):
    r = json.loads((tmp / f"{name}.json").read_text())
    rps = r["requests_done"] / r["wall_s"] if r["wall_s"] else 0
    edges = [{k: e[k] for k in ("from", "to", "from_host", "to_host", "connector", "requests",
                                "bytes", "p50_ms", "p99_ms", "errors")} for e in r["edges"]]
    doc["pipeline"][name] = {"requests": r["requests_done"], "wall_s": r["wall_s"],
                             "requests_per_s": rps, "edges": edges}
    for e in edges:
        hosts = "A->A" if name == "one_host" else f"{e['from_host']}->{e['to_host']}"
        e["hosts"] = hosts
        print(f"{name:10} {rps:8.1f}  {e['from']}->{e['to']:3} {hosts:7} {e['connector']:24} "
              f"{e['p50_ms']:8.2f} {e['p99_ms']:8.2f}")
two, one = doc["pipeline"]["two_hosts"], doc["pipeline"]["one_host"]
doc["pipeline"]["ratio_req_per_s"] = two["requests_per_s"] / one["requests_per_s"]
print(f"split A/B: {doc['pipeline']['ratio_req_per_s']:.2f}x the requests/s of one host")
if out:
    pathlib.Path(out).write_text(json.dumps(doc, indent=1) + "\n")
PY
