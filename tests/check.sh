# Shell tests' checks: source it, then `check NAME CONDITION...` counts a pass or prints
# "FAIL: NAME"; $passed and $failed hold the counts.
passed=0
failed=0
check() {
  local name=$1
  shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}
