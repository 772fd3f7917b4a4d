# Sourced by the project's shell test suites (e2e/, examples/, tools/release/): one line per
# check, `ok NAME` or `FAILED NAME` with the failing output indented below, and a closing
# `N passed, M failed` line. Needs $tmp, a scratch directory of the caller's.

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok      $1"; }
not_ok() {
  failed=$((failed + 1))
  echo "FAILED  $1"
  [ -z "${2:-}" ] || sed 's/^/        | /' <<<"$2" | tail -n 25
}
# check NAME COMMAND...: one check, passing when COMMAND succeeds.
check() {
  local name=$1
  shift
  if "$@" >"$tmp/check.out" 2>&1; then ok "$name"; else not_ok "$name" "$(cat "$tmp/check.out")"; fi
}
# fails_with NAME PATTERN... -- COMMAND...: one check, passing when COMMAND fails and its output
# (stdout and stderr, left in $tmp/fails_with.out) matches every extended regex PATTERN, and
# none of those written !PATTERN.
fails_with() {
  local name=$1 patterns=() pattern problems=""
  shift
  while [ "$#" -gt 0 ] && [ "$1" != -- ]; do patterns+=("$1"); shift; done
  [ "$#" -gt 1 ] || { not_ok "$name" "fails_with: no -- COMMAND"; return; }
  shift
  if "$@" >"$tmp/fails_with.out" 2>&1; then
    not_ok "$name" "it succeeded: $(cat "$tmp/fails_with.out")"
    return
  fi
  for pattern in "${patterns[@]}"; do
    case "$pattern" in
      !*) ! grep -Eq -- "${pattern#!}" "$tmp/fails_with.out" || problems+="a match for /${pattern#!}/ (unwanted); " ;;
      *) grep -Eq -- "$pattern" "$tmp/fails_with.out" || problems+="no match for /$pattern/; " ;;
    esac
  done
  if [ -z "$problems" ]; then
    ok "$name"
  else
    # The problems last: not_ok shows the tail.
    not_ok "$name" "$(cat "$tmp/fails_with.out")"$'\n'"=> ${problems%; }"
  fi
}
# equals WHAT GOT WANT
equals() { [ "$2" = "$3" ] || { echo "$1: got '$2', want '$3'"; return 1; }; }
# summary: the closing line; fails when a check failed.
summary() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
}
