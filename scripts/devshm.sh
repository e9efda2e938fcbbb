#!/usr/bin/env bash
# Guards the promise that omniconn leaves nothing in /dev/shm (its arenas are memfds).
#   devshm.sh snapshot FILE          records what /dev/shm holds now
#   devshm.sh check FILE [WHEN]      fails, listing them, if entries appeared since the snapshot
set -euo pipefail

dir=${DEVSHM_DIR:-/dev/shm}
list() { if [[ -d "$dir" ]]; then (cd "$dir" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort); fi; }

case "${1:-}" in
  snapshot)
    [[ $# -eq 2 ]] || { echo "usage: $0 snapshot FILE" >&2; exit 2; }
    list >"$2"
    ;;
  check)
    [[ $# -ge 2 ]] || { echo "usage: $0 check FILE [WHEN]" >&2; exit 2; }
    when=${3:-this run}
    new=$(list | LC_ALL=C comm -13 "$2" -)
    if [[ -n "$new" ]]; then
      echo "FAIL: $dir gained $(wc -l <<<"$new") entr(y/ies) during $when (omniconn must leave nothing there):" >&2
      while IFS= read -r f; do ls -ld "$dir/$f" >&2 || true; done <<<"$new"
      exit 1
    fi
    echo "$dir: nothing new since the start of the run"
    ;;
  *)
    echo "usage: $0 snapshot FILE | check FILE [WHEN]" >&2
    exit 2
    ;;
esac
