#!/usr/bin/env bash
# Installs the Debian packages omniconn needs, only those that are missing. Idempotent and
# non-interactive: a second run with everything present touches nothing (no apt-get at all).
set -euo pipefail

# What each is for: the compilers and libFuzzer/sanitizer runtimes (clang, libclang-rt-14-dev),
# the libraries CMake finds (cmake/omniconn_deps.cmake, tools/, tests/; ZeroMQ: the
# control channel of multi-host runs; cpp-httplib: /metrics), the Python module and
# its tests (pybind11-dev, python3-*), and the iceoryx baseline of the benchmarks.
packages=(
  build-essential cmake pkg-config g++ clang libclang-rt-14-dev
  libxxhash-dev libmsgpack-cxx-dev libyaml-cpp-dev libcli11-dev
  nlohmann-json3-dev libgtest-dev clang-format libzmq3-dev cppzmq-dev libcpp-httplib-dev
  python3-dev pybind11-dev python3-numpy python3-torch python3-pytest python3-xxhash python3-msgpack
  python3-matplotlib iceoryx libiceoryx-posh-dev
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "deps: all ${#packages[@]} packages installed"
  exit 0
fi

echo "deps: installing ${#missing[@]} missing package(s): ${missing[*]}"
if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "deps: not root and no sudo; install these as root: ${missing[*]}" >&2
  exit 1
fi

# env passes DEBIAN_FRONTEND through sudo, which resets the environment.
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
"${apt[@]}" update -q
"${apt[@]}" install -y -q --no-install-recommends "${missing[@]}" </dev/null
