#!/usr/bin/env bash
# Builds omniconn's libFuzzer targets (fuzz/, clang++, ASan + UBSan) and runs each one for a
# bounded time on a copy of its seed corpus.
#
#   scripts/fuzz.sh [--smoke] [SECONDS_PER_TARGET] [BUILD_DIR]
#   scripts/fuzz.sh --smoke BUILD_DIR
#
#   SECONDS_PER_TARGET  default 60 (10 with --smoke)
#   BUILD_DIR           default build-fuzz (relative to the repository root)
#   --smoke             the short run of the test command: 10 s per target
#
# Environment: CLANGXX (default clang++), JOBS (build parallelism, default nproc),
# FUZZ_TARGETS (space-separated subset), KEEP_WORK=1 (keep the temp dirs of clean runs too).
#
# Each target runs in a temp dir of its own (corpus copy, log, artifacts): fuzz/corpus is never
# written. Prints per target the executions (libFuzzer's final stats) and the crash artifacts
# found; exits 1 if any target crashed, timed out, ran out of memory or leaked.
set -uo pipefail

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

smoke=0
args=()
for a in "$@"; do
  case "$a" in
    --smoke) smoke=1 ;;
    -h | --help) usage ;;
    -*) echo "fuzz.sh: unknown option $a" >&2; usage ;;
    *) args+=("$a") ;;
  esac
done
[ "${#args[@]}" -le 2 ] || usage
# A lone non-numeric argument is the build dir: `fuzz.sh --smoke build-fuzz`.
if [ "${#args[@]}" = 1 ] && [[ "${args[0]}" == *[!0-9]* ]]; then args=("" "${args[0]}"); fi
seconds="${args[0]:-}"
build_dir="${args[1]:-build-fuzz}"
if [ -z "$seconds" ]; then
  if [ "$smoke" = 1 ]; then seconds=10; else seconds=60; fi
fi
case "$seconds" in
  '' | *[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac
[ "$seconds" -ge 1 ] || { echo "fuzz.sh: SECONDS_PER_TARGET must be at least 1" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2
clangxx="$(command -v "${CLANGXX:-clang++}")" || { echo "fuzz.sh: ${CLANGXX:-clang++} not found" >&2; exit 2; }
jobs="${JOBS:-$(nproc)}"
targets=(${FUZZ_TARGETS:-fuzz_payload fuzz_shm_descriptor fuzz_mooncake_descriptor fuzz_value_msgpack fuzz_config_yaml fuzz_ring_record})

# ---- build ---------------------------------------------------------------------------------
echo "== building fuzzers in $build_dir ($clangxx)"
mkdir -p "$build_dir"
cmake -S fuzz -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$clangxx" \
  >"$build_dir/configure.log" 2>&1 || {
  cat "$build_dir/configure.log" >&2
  echo "fuzz.sh: configure failed" >&2
  exit 2
}
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL cmake --build "$build_dir" -j"$jobs" --target "${targets[@]}" ||
  { echo "fuzz.sh: build failed" >&2; exit 2; }

# ---- run -----------------------------------------------------------------------------------
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:print_stacktrace=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
tmp="${TMPDIR:-/tmp}"
failed=0
summary=()
mode="$([ "$smoke" = 1 ] && echo smoke || echo fuzz)"
echo "== $mode: ${#targets[@]} targets, ${seconds} s each"
for t in "${targets[@]}"; do
  bin="$build_dir/$t"
  seeds="fuzz/corpus/$t"
  if [ ! -x "$bin" ] || [ ! -d "$seeds" ]; then
    echo "fuzz.sh: $t: missing binary $bin or corpus $seeds" >&2
    failed=1
    summary+=("$(printf '%-26s %12s  %s' "$t" "-" "NOT RUN")")
    continue
  fi
  work="$(mktemp -d "$tmp/omniconn-fuzz.$t.XXXXXX")"
  cp -R "$seeds" "$work/corpus"
  extra=()
  [ -f "fuzz/$t.dict" ] && extra+=("-dict=fuzz/$t.dict")
  echo "-- $t (work dir $work)"
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" "${extra[@]}" "$work/corpus" >"$work/log" 2>&1
  rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$work/log" | tail -1)"
  artifacts="$(find "$work" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' \
    -o -name 'timeout-*' -o -name 'oom-*' \) | sort)"
  if [ "$rc" -ne 0 ] || [ -n "$artifacts" ]; then
    failed=1
    echo "   FAILED (libFuzzer exit $rc); log: $work/log"
    # What went wrong, and the top stack frames outside libFuzzer, the sanitizers and libc.
    grep -E 'ERROR:|runtime error:|invariant failed|SUMMARY:|^ *#[0-9]+ 0x' "$work/log" |
      grep -v -E 'fuzzer::|__sanitizer|__asan|__ubsan|libc\.so|nptl/|stdlib/abort|signal/' |
      head -n 12 | sed 's/^/   | /'
    for a in $artifacts; do echo "   artifact: $a   (rerun: $bin $a)"; done
    [ -n "$artifacts" ] || artifacts="(no artifact; see the log)"
    summary+=("$(printf '%-26s %12s  crashes: %s' "$t" "${execs:-?}" "$(echo $artifacts)")")
  else
    summary+=("$(printf '%-26s %12s  crashes: 0' "$t" "${execs:-?}")")
    if [ "${KEEP_WORK:-0}" = 1 ]; then echo "   ok (kept $work)"; else rm -rf "$work"; echo "   ok"; fi
  fi
done

echo
echo "== $mode summary (${seconds} s per target)"
printf '%-26s %12s  %s\n' target executions result
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz.sh: at least one target failed; artifacts and logs are listed above" >&2
  exit 1
fi
