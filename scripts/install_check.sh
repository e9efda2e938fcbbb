#!/usr/bin/env bash
# Installs a built tree into a temporary prefix, then configures, builds and runs the consumer
# project tests/install against it with find_package(omniconn).
#   install_check.sh [BUILD_DIR]      (default: build)
set -euo pipefail
# CMake's own make must not inherit the calling make's flags.
unset MAKEFLAGS MFLAGS MAKELEVEL

root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
jobs=${JOBS:-$(nproc)}

work=$(mktemp -d "${TMPDIR:-/tmp}/omniconn-install.XXXXXX")
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/prefix"
cmake -S "$root/tests/install" -B "$work/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DOMNICONN_EXPECTED_PREFIX="$work/prefix"
cmake --build "$work/build" -j"$jobs"
"$work/build/omniconn_install_check"
