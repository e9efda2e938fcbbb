#!/usr/bin/env bash
# The soak (tests/soak/soak.cc): a bounded mixed workload on the SharedMemoryConnector across
# real processes; memory, fd and mapping slopes per process must be flat.
#
#   scripts/soak.sh [SECONDS=300] [soak flags...]    e.g. scripts/soak.sh 300 --seed 7
# Builds the soak target in build/ when needed, writes every sample and the summary to
# build/soak.json, the children's error lines to build/soak.err; exits non-zero on FAIL.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
SECONDS_ARG=${1:-300}
shift $(( $# > 0 ? 1 : 0 ))

if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" >/dev/null
fi
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL cmake --build "$BUILD_DIR" -j"${JOBS:-$(nproc)}" --target soak

rc=0
"$BUILD_DIR/tests/soak/soak" --seconds "$SECONDS_ARG" --json "$BUILD_DIR/soak.json" "$@" \
  2>"$BUILD_DIR/soak.err" || rc=$?
if [[ -s "$BUILD_DIR/soak.err" ]]; then
  echo "first error lines ($BUILD_DIR/soak.err):"
  head -n 5 "$BUILD_DIR/soak.err" | sed 's/^/  /'
fi
echo "samples and summary: $BUILD_DIR/soak.json"
exit "$rc"
