#!/usr/bin/env bash
# Runs one phase of `make test` under a banner and reports how long it took.
#   phase.sh NAME COMMAND [ARGS...]
# With PHASE_LOG=FILE, appends "NAME: ok (Ns)" to FILE and prints FILE when a phase fails.
set -uo pipefail
name=$1
shift
printf '\n==================== %s ====================\n' "$name"
start=$SECONDS
"$@"
rc=$?
if ((rc == 0)); then
  line=$(printf '%s: ok (%ds)' "$name" $((SECONDS - start)))
else
  line=$(printf '%s: FAILED (exit %d, %ds)' "$name" "$rc" $((SECONDS - start)))
fi
echo "==== $line"
if [[ -n "${PHASE_LOG:-}" ]]; then
  echo "$line" >>"$PHASE_LOG"
  if ((rc != 0)); then printf '\nPhases:\n' >&2; sed 's/^/  /' "$PHASE_LOG" >&2; fi
fi
exit "$rc"
