#!/usr/bin/env bash
# The omniconn command as a user runs it: exit codes, the edge table, the error report, a run,
# a stage killed mid-run, and a connector type from a plugin library.
# Usage: cli_test.sh <omniconn binary> <source dir> [<FileConnector plugin library>]
set -uo pipefail
bin=$1
src=$2
plugin=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
source "$src/tests/check.sh"

for f in "$src"/examples/*.yaml "$src"/examples/deploy/*.yaml; do
  "$bin" validate "$f" >"$tmp/out" 2>&1
  check "validate $(basename "$f") exits 0" test $? -eq 0
  check "validate $(basename "$f") prints edges" grep -q -- '->' "$tmp/out"
done

cat >"$tmp/bad.yaml" <<'YAML'
runtime:
  connectors:
    shm: {name: SharedMemoryConnector, extra: {shm_threshold_bytes: -5}}
stage_args:
  - stage_id: 0
    output_connectors: {to_stage_1: nosuch}
  - stage_id: 1
    engine_input_source: [0]
YAML
"$bin" validate "$tmp/bad.yaml" >"$tmp/out" 2>&1
check "invalid config exits 2" test $? -eq 2
check "error names the key path" grep -q 'stage_args\[0\].output_connectors.to_stage_1' "$tmp/out"
check "error names the line" grep -q 'bad.yaml:6:' "$tmp/out"
check "all errors reported" grep -q 'shm_threshold_bytes' "$tmp/out"

"$bin" validate "$tmp/missing.yaml" >/dev/null 2>&1
check "missing file exits 2" test $? -eq 2
"$bin" --help >"$tmp/out" 2>&1
check "--help exits 0" test $? -eq 0
check "--help lists run" grep -q 'run' "$tmp/out"
"$bin" run --help >"$tmp/out" 2>&1
check "run --help documents --requests" grep -q -- '--requests' "$tmp/out"
"$bin" run >/dev/null 2>&1
check "missing argument is a usage error" test $? -eq 64

"$bin" run "$src/examples/qwen2_5_omni.yaml" --requests 50 --concurrency 4 --tokens 32 \
  --json "$tmp/run.json" >"$tmp/out" 2>&1
check "run exits 0" test $? -eq 0
check "run prints the edge table" grep -q '0 -> 1' "$tmp/out"
check "run writes JSON" grep -q '"requests_done": 50' "$tmp/run.json"

# --metrics and stats: a run that lasts (~2 s of source work), watched from outside. The
# bound port is read from the run's stderr; every wait is bounded.
"$bin" run "$src/examples/qwen2_5_omni.yaml" --requests 200 --concurrency 2 --tokens 32 \
  --source-us-per-token 300 --no-progress --metrics 127.0.0.1:0 >"$tmp/mrun.out" 2>"$tmp/mrun.err" &
mrun=$!
maddr=""
for _ in $(seq 100); do
  maddr=$(sed -n 's|.*metrics at http://\([^/]*\)/metrics.*|\1|p' "$tmp/mrun.err")
  [[ -n "$maddr" ]] && break
  sleep 0.05
done
check "run --metrics says where" test -n "$maddr"
for _ in $(seq 50); do  # until both edges reported
  "$bin" stats "$maddr" --once >"$tmp/stats.out" 2>&1
  grep -q '^1->2 ' "$tmp/stats.out" && break
  sleep 0.1
done
"$bin" stats "$maddr" --once >/dev/null 2>&1
check "stats --once exits 0" test $? -eq 0
check "stats --once shows each edge" grep -q '^0->1 .*SharedMemoryConnector' "$tmp/stats.out"
check "stats --once shows the run" grep -q '^run: [0-9]*/200 requests completed' "$tmp/stats.out"
"$bin" stats "$maddr" --once --json >"$tmp/stats.json" 2>&1
check "stats --json is JSON with both edges" /usr/bin/python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
assert {(e['from'], e['to']) for e in d['edges']} == {('0', '1'), ('1', '2')}, d
assert d['run']['requests'] == 200, d" "$tmp/stats.json"
"$bin" stats "$maddr" --count 2 --interval-ms 200 >"$tmp/stats2.out" 2>&1
check "stats refreshes with rates" grep -q '/s' "$tmp/stats2.out"
wait $mrun
check "the watched run exits 0" test $? -eq 0
"$bin" stats "$maddr" --once >"$tmp/out" 2>&1
check "stats on an ended run exits 1" test $? -eq 1
check "stats says it cannot scrape" grep -q "cannot scrape $maddr" "$tmp/out"
"$bin" stats --help >"$tmp/out" 2>&1
check "stats --help documents --once" grep -q -- '--once' "$tmp/out"
"$bin" run "$src/examples/qwen2_5_omni.yaml" --requests 1 --metrics 127.0.0.1:99999 >"$tmp/out" 2>&1
check "run --metrics with a bad port exits 1" test $? -eq 1
check "run --metrics with a bad port names it" grep -q -- "--metrics.*99999" "$tmp/out"

# Streaming: chunk by chunk, the report's per-request lines; cancelling needs --stream; a file
# with async_chunk: true streams unless --no-stream.
"$bin" run "$src/examples/qwen2_5_omni.yaml" --requests 20 --tokens 64 --stream \
  --first-chunk-tokens 8 --chunk-tokens 16 --abort-every 4 --json "$tmp/stream.json" >"$tmp/out" 2>&1
check "run --stream exits 0" test $? -eq 0
check "run --stream reports the first chunk" grep -q 'first chunk .* ms, last chunk' "$tmp/out"
check "run --stream reports the cancelled requests" grep -q 'aborted requests 5' "$tmp/out"
check "run --stream JSON has the request times" grep -q '"first_chunk_p50_ms"' "$tmp/stream.json"
"$bin" run "$src/examples/qwen2_5_omni.yaml" --requests 5 --abort-every 2 >"$tmp/out" 2>&1
check "--abort-every without --stream exits 1" test $? -eq 1
check "--abort-every without --stream says why" grep -q 'needs --stream' "$tmp/out"
cp -r "$src/examples/deploy" "$tmp/deploy"
sed -i 's/^async_chunk: false/async_chunk: true/' "$tmp/deploy/qwen2_5_omni.yaml"
"$bin" run "$tmp/deploy/qwen2_5_omni.yaml" --requests 5 --tokens 32 >"$tmp/out" 2>&1
check "async_chunk: true streams" grep -q 'streaming every edge (the file sets async_chunk: true' "$tmp/out"
check "async_chunk: true run exits 0" grep -q '(streamed)' "$tmp/out"
"$bin" run "$tmp/deploy/qwen2_5_omni.yaml" --requests 5 --tokens 32 --no-stream >"$tmp/out" 2>&1
check "--no-stream overrides async_chunk" test "$(grep -c 'streamed\|streaming every' "$tmp/out")" -eq 0

# --plot: checked before the run (a bad name or directory is exit 64 and no run), then drawn.
"$bin" run "$src/examples/qwen2_5_omni.yaml" --requests 5 --plot "$tmp/run.txt" >"$tmp/out" 2>&1
check "--plot with a bad extension exits 64" test $? -eq 64
check "--plot with a bad extension names the formats" grep -q 'must end in .png, .svg or .pdf' "$tmp/out"
check "--plot with a bad extension runs nothing" test "$(grep -c 'requests/s' "$tmp/out")" -eq 0
"$bin" run "$src/examples/qwen2_5_omni.yaml" --requests 5 --plot "$tmp/no/such/dir/run.png" \
  >"$tmp/out" 2>&1
check "--plot into a missing directory exits 64" test $? -eq 64
check "--plot into a missing directory says so" grep -q 'cannot write .*No such file' "$tmp/out"
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  echo "SKIP: run --plot: /usr/bin/python3 cannot import matplotlib (apt-get install python3-matplotlib)"
else
  "$bin" run "$src/examples/qwen2_5_omni.yaml" --requests 40 --tokens 64 --stream \
    --plot "$tmp/run.png" >"$tmp/out" 2>&1
  check "run --plot exits 0" test $? -eq 0
  check "run --plot says where" grep -q "plot written to $tmp/run.png" "$tmp/out"
  check "run --plot writes a PNG" test "$(head -c 8 "$tmp/run.png" | od -An -tx1 | tr -d ' ')" = \
    89504e470d0a1a0a
  check "run --plot's PNG is a picture, not a stub ($(stat -c %s "$tmp/run.png") bytes)" \
    test "$(stat -c %s "$tmp/run.png")" -gt 20000
fi

# streamed_clean NAME CFG: 40 requests streamed in 5 chunks over CFG's connectors, every 4th
# cancelled mid-stream; the run ends with 10 aborted, 30 measured and nothing left in flight or
# in use on any stage.
streamed_clean() {
  local name=$1 cfg=$2
  "$bin" run "$cfg" --requests 40 --concurrency 4 --tokens 64 --stream --first-chunk-tokens 8 \
    --chunk-tokens 16 --abort-every 4 --json "$tmp/streamed.json" >"$tmp/out" 2>&1
  check "$name streamed: exits 0" test $? -eq 0
  check "$name streamed: 10 aborted, 30 whole, nothing left" /usr/bin/python3 -c "
import json, sys
j = json.load(open('$tmp/streamed.json'))
q = j['request_times']
left = [(s['in_flight_end'], s['in_use_bytes_end']) for s in j['stages']]
print(q['aborted'], q['measured'], q['abort_freed'], left)
sys.exit(not (q['aborted'] == 10 and q['measured'] == 30 and all(x == (0, 0) for x in left)))"
}

# Without the Mooncake store library: exit 1 and say how to provide it.
env -u MOONCAKE_STORE_LIBRARY "$bin" run "$src/examples/qwen2_5_omni_mooncake.yaml" \
  --requests 5 >"$tmp/out" 2>&1
check "mooncake run without the library exits 1" test $? -eq 1
check "mooncake run says how to provide the library" \
  grep -q 'cannot load the Mooncake store library.*MOONCAKE_STORE_LIBRARY' "$tmp/out"

# With Mooncake installed: the example runs against a mooncake_master on its own addresses
# (127.0.0.1:50051, metadata on 8080), started here on loopback.
mc_lib=${MOONCAKE_STORE_LIBRARY:-/opt/mooncake/lib/libmooncake_store.so}
mc_master=${OMNICONN_MOONCAKE_MASTER:-/opt/mooncake/bin/mooncake_master}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -n "${OMNICONN_SANITIZED:-}" ]; then
  echo "SKIP: live Mooncake pipeline run: sanitizer build (Mooncake is not instrumented)"
elif [ ! -f "$mc_lib" ] || [ ! -x "$mc_master" ]; then
  echo "SKIP: live Mooncake pipeline run: no $mc_lib or $mc_master (docs/mooncake.md)"
elif port_busy 50051 || port_busy 8080; then
  echo "SKIP: live Mooncake pipeline run: 127.0.0.1:50051 or :8080 is in use"
else
  (cd "$tmp" && exec "$mc_master" --rpc_address=127.0.0.1 --rpc_port=50051 \
    --enable_http_metadata_server=true --http_metadata_server_host=127.0.0.1 \
    --http_metadata_server_port=8080 --metrics_host=127.0.0.1 --metrics_port=0 \
    >"$tmp/master.log" 2>&1) &
  master=$!
  for _ in $(seq 100); do port_busy 50051 && port_busy 8080 && break; sleep 0.1; done
  MOONCAKE_STORE_LIBRARY=$mc_lib "$bin" run "$src/examples/qwen2_5_omni_mooncake.yaml" \
    --requests 50 --concurrency 4 --tokens 64 --json "$tmp/mc.json" >"$tmp/out" 2>&1
  check "mooncake run exits 0" test $? -eq 0
  check "mooncake run moved every request" grep -q '"requests_done": 50' "$tmp/mc.json"
  MOONCAKE_STORE_LIBRARY=$mc_lib streamed_clean mooncake "$src/examples/qwen2_5_omni_mooncake.yaml"
  kill "$master"
  wait "$master" 2>/dev/null
fi

# A stage killed mid-run: the run ends non-zero within 5 s and names the stage.
"$bin" run "$src/examples/qwen2_5_omni.yaml" --requests 100000000 --tokens 32 >"$tmp/out" 2>&1 &
run_pid=$!
sleep 1
stages=$(cat "/proc/$run_pid/task/$run_pid/children" 2>/dev/null)
stage=$(echo "$stages" | awk '{print $2}')
if [ -n "$stage" ]; then
  kill -9 "$stage"
  start=$(date +%s%N)
  wait "$run_pid"
  rc=$?
  took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  check "killed stage: non-zero exit" test "$rc" -ne 0
  check "killed stage: ends within 5 s (${took_ms} ms)" test "$took_ms" -lt 5000
  check "killed stage: names stage 1" grep -q 'stage 1 (talker)' "$tmp/out"
  for p in $stages; do
    check "killed stage: stage process $p is gone" test ! -e "/proc/$p"
  done
else
  kill "$run_pid" 2>/dev/null
  check "found the stage processes" false
fi


# The deploy schema vllm-omni ships today: no edges in the file, --edges on the command line.
cat >"$tmp/deploy.yaml" <<'YAML'
pipeline: three_stages
connectors:
  shm:
    name: SharedMemoryConnector
    extra: {codec_streaming: true, codec_chunk_frames: 25}
stages:
  - {stage_id: 0, engine_args: {model_stage: thinker}}
  - {stage_id: 1, engine_args: {model_stage: talker}}
  - {stage_id: 2, engine_args: {model_stage: code2wav}}
YAML
"$bin" validate "$tmp/deploy.yaml" >"$tmp/out" 2>&1
check "deploy without edges: validate exits 0" test $? -eq 0
check "deploy without edges: says so" grep -q 'defines no edges' "$tmp/out"
check "deploy without edges: names the pipeline" grep -q "pipeline 'three_stages'" "$tmp/out"
"$bin" run "$tmp/deploy.yaml" --requests 5 >"$tmp/out" 2>&1
check "deploy without edges: run exits 2" test $? -eq 2
check "deploy without edges: run gives the --edges hint" grep -q -- '--edges 0:1,1:2' "$tmp/out"
"$bin" run "$tmp/deploy.yaml" --edges 0:1,1:2 --requests 20 --tokens 16 \
  --json "$tmp/deploy.json" >"$tmp/out" 2>&1
check "deploy with --edges: run exits 0" test $? -eq 0
check "deploy with --edges: every request" grep -q '"requests_done": 20' "$tmp/deploy.json"
"$bin" run "$tmp/deploy.yaml" --edges 0:1,1:9 --requests 5 >"$tmp/out" 2>&1
check "bad --edges: exits 2" test $? -eq 2
check "bad --edges: names it" grep -q -- '--edges\[1\]: stage 9 does not exist' "$tmp/out"

two_stages() {  # two_stages NAME TYPE EXTRA: a deploy file, one named connector on 0 -> 1
  cat <<YAML
connectors:
  $1: {name: $2, extra: {$3}}
stages:
  - {stage_id: 0, output_connectors: {to_stage_1: $1}}
  - {stage_id: 1}
YAML
}

# Unknown extra keys are notes; --strict makes them errors.
two_stages shm SharedMemoryConnector "codec_streaming: true" >"$tmp/notes.yaml"
"$bin" validate "$tmp/notes.yaml" >"$tmp/out" 2>&1
check "unknown key: validate exits 0" test $? -eq 0
check "unknown key: a note with its path and line" \
  grep -q 'note: .*notes.yaml:2:.*connectors.shm.extra.codec_streaming: not used by' "$tmp/out"
"$bin" validate --strict "$tmp/notes.yaml" >"$tmp/out" 2>&1
check "unknown key, --strict: exits 2" test $? -eq 2
"$bin" run "$src/examples/deploy/shm_threshold.yaml" --requests 10 --tokens 16 >"$tmp/out" 2>&1
check "unknown keys never stop a run" test $? -eq 0

# validate --json, parsed back.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
"$bin" validate --json "$tmp/notes.yaml" >"$tmp/v.json" 2>"$tmp/err"
check "validate --json exits 0" test $? -eq 0
check "validate --json writes nothing on stderr" test ! -s "$tmp/err"
"$py" - "$tmp/v.json" <<'PY' >"$tmp/out" 2>&1
import json, sys
j = json.load(open(sys.argv[1]))
assert j["ok"] is True and j["schema"] == "deploy", j
assert [(e["from"], e["to"], e["type"], e["connector"]) for e in j["edges"]] == \
    [("0", "1", "SharedMemoryConnector", "shm")], j["edges"]
assert j["connectors"]["shm"]["extra"] == {"codec_streaming": True}, j["connectors"]
assert j["connectors"]["shm"]["edges"] == ["0->1"], j["connectors"]
assert [(n["key_path"], n["line"]) for n in j["notes"]] == \
    [("connectors.shm.extra.codec_streaming", 2)], j["notes"]
assert j["errors"] == [] and [s["stage_id"] for s in j["stages"]] == [0, 1]
print("json ok")
PY
check "validate --json: stages, edges, connectors and notes" grep -q 'json ok' "$tmp/out"
"$bin" validate --json "$tmp/bad.yaml" >"$tmp/v.json" 2>/dev/null
check "validate --json, invalid: exits 2" test $? -eq 2
"$py" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert not j["ok"] and len(j["errors"]) >= 2 and j["errors"][0]["line"] == 3, j' \
  "$tmp/v.json"
check "validate --json, invalid: the errors with their lines" test $? -eq 0

# A connector type vllm-omni has and omniconn lacks: named, with omniconn's types; exit 2.
two_stages rdma MooncakeTransferEngineConnector "host: auto" >"$tmp/te.yaml"
"$bin" validate "$tmp/te.yaml" >"$tmp/out" 2>&1
check "unsupported type: exits 2" test $? -eq 2
check "unsupported type: names type, path and omniconn's types" \
  grep -q "te.yaml:2:.*connectors.rdma.name: connector type 'MooncakeTransferEngineConnector' .*omniconn has MooncakeConnector, SharedMemoryConnector" "$tmp/out"

# shm_threshold_bytes alone, at the documented maximum: payloads up to it travel inline.
cat >"$tmp/threshold.yaml" <<'YAML'
connectors:
  big: {name: SharedMemoryConnector, extra: {shm_threshold_bytes: 16777216}}
stages:
  - {stage_id: 0, output_connectors: {to_stage_1: big}}
  - {stage_id: 1, output_connectors: {to_stage_2: big}}
  - {stage_id: 2}
YAML
"$bin" run "$tmp/threshold.yaml" --requests 20 --tokens 512 --json "$tmp/thr.json" \
  >"$tmp/out" 2>&1
check "threshold alone: run exits 0" test $? -eq 0
"$py" -c 'import json,sys; e=json.load(open(sys.argv[1]))["edges"]; assert [x["inline"] for x in e] == [20, 20] and e[0]["bytes"] > 20 * 7 * 2**20, e' \
  "$tmp/thr.json" >"$tmp/out" 2>&1
check "threshold alone: every payload (7 MiB hidden states) inline" test $? -eq 0

# A connector type from a plugin library, named beside the connector or by OMNICONN_PLUGINS.
if [[ -n "$plugin" ]]; then
  plugin_yaml() {  # plugin_yaml LINE: the pipeline on FileConnector edges
    cat <<YAML
runtime:
  connectors:
    files:
      name: FileConnector
$1
      extra: {directory: "$tmp/files"}
stage_args:
  - {stage_id: 0, output_connectors: {to_stage_1: files}}
  - {stage_id: 1, engine_input_source: [0], input_connectors: {from_stage_0: files}}
  - {stage_id: 2, engine_input_source: [1], input_connectors: {from_stage_1: files}}
YAML
  }
  plugin_yaml "      plugin: $plugin" >"$tmp/plugin.yaml"
  "$bin" validate "$tmp/plugin.yaml" >"$tmp/out" 2>&1
  check "validate with plugin: exits 0" test $? -eq 0
  check "validate with plugin: names the type" grep -q 'FileConnector' "$tmp/out"
  "$bin" run "$tmp/plugin.yaml" --requests 30 --concurrency 4 --tokens 64 >"$tmp/out" 2>&1
  check "run with plugin: exits 0" test $? -eq 0
  check "run with plugin: all requests" grep -q '30 requests in' "$tmp/out"
  check "run with plugin: no payload file left" \
    test "$(find "$tmp/files" -name '*.payload*' | wc -l)" -eq 0
  streamed_clean plugin "$tmp/plugin.yaml"
  check "plugin streamed: no payload file left" \
    test "$(find "$tmp/files" -name '*.payload*' | wc -l)" -eq 0
  plugin_yaml "" >"$tmp/byenv.yaml"
  OMNICONN_PLUGINS=$plugin "$bin" validate "$tmp/byenv.yaml" >"$tmp/out" 2>&1
  check "OMNICONN_PLUGINS: validate exits 0" test $? -eq 0
  env -u OMNICONN_PLUGINS "$bin" validate "$tmp/byenv.yaml" >"$tmp/out" 2>&1
  check "unknown type without the plugin exits 2" test $? -eq 2
  check "unknown type says how to load it" grep -q 'OMNICONN_PLUGINS' "$tmp/out"
fi

echo "$passed passed, $failed failed"
test "$failed" -eq 0
