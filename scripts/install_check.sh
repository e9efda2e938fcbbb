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
"$work/build/omniconn_install_core_only"
# The core alone links no connector and no YAML parser.
if nm -C "$work/build/omniconn_install_core_only" | grep -q -e YAML:: -e ShmConnector; then
  echo "install check: the core-only program links connectors or yaml-cpp" >&2
  exit 1
fi

# The Python package, when it was built: importable from the prefix alone.
pydir="$work/prefix/lib/python3/dist-packages"
if [[ -d "$pydir/omniconn" ]]; then
  (cd "$work" && PYTHONPATH="$pydir" /usr/bin/python3 - "$work/prefix" <<'PY'
import sys
import numpy as np
import omniconn
assert omniconn.__file__.startswith(sys.argv[1]), omniconn.__file__
with omniconn.SharedMemoryConnector({"namespace": "install-check"}) as c:
    ok, _, meta = c.put("0", "1", "r", {"x": np.arange(4)})
    assert ok and c.get("0", "1", "r", meta)[0]["x"].tolist() == [0, 1, 2, 3]
print("install check: Python package imports from", omniconn.__file__)
PY
  )
fi
