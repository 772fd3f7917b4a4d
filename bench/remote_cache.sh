#!/usr/bin/env bash
# Push without the bytes, measured: what `bazel run //...:push` costs with Bazel's HTTP remote
# cache and --remote_download_minimal, after `bazel clean` (a CI machine that did not build the
# image), with the rule's remote-cache setting (lazy: the pusher streams only the layers the
# registry lacks) and without it (eager: Bazel downloads the whole layout for the runfiles).
# A 60 MiB image of three layers (e2e/remote_cache:bench), the real registry and nginx as the
# cache on loopback, as in e2e/remote_cache.sh.
#
#   cargo build --release && bash bench/remote_cache.sh [RUNS [RTT_MS MBIT]]
#
# RUNS defaults to 3. With RTT_MS and MBIT, Bazel and the pusher reach the cache through
# bench/link.py, a link of that round-trip time and bandwidth (the registry stays on loopback):
# a cache in another region, or a CI runner's shared uplink.
#
# For each mode, a cold push (a new repository: every layer goes to the registry) and a re-push
# (the registry has the image): the median wall time of `bazel run` and the bytes that crossed
# the cache (every GET answered, Bazel's and the pusher's), from nginx's access log.
set -euo pipefail
root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
runs="${1:-3}" rtt="${2:-}" mbit="${3:-}"
pusher="$root/target/release/oci-push"
[ -x "$pusher" ] || { echo "bench: build the pusher first: cargo build --release" >&2; exit 1; }
tmp="$(mktemp -d)"
# shellcheck source=../tools/lib/registry.sh
source "$root/tools/lib/registry.sh"
# shellcheck source=../tools/lib/cache.sh
source "$root/tools/lib/cache.sh"
link_pid=""
trap 'stop_registry; stop_cache; [ -z "$link_pid" ] || kill "$link_pid"; (cd "$root/e2e" && bazel shutdown) >/dev/null 2>&1; rm -rf "$tmp"' EXIT
start_registry "$tmp"
start_cache "$tmp"
if [ -n "$rtt" ]; then
  port=$((20000 + RANDOM % 30000))
  python3 "$root/bench/link.py" --listen "127.0.0.1:$port" --to "${CACHE#http://}" \
    --rtt "$rtt" --bandwidth "$mbit" --handshake >"$tmp/link.log" 2>&1 &
  link_pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  CACHE="http://127.0.0.1:$port"
  echo "cache through a link of $rtt ms and $mbit Mbit/s"
fi
log="$tmp/cache-access.log"
"$root/e2e/configure.sh" "$REGISTRY" "$pusher" >/dev/null
cd "$root/e2e"
echo latest >remote_cache/tags.txt
quiet=(--ui_event_filters=-info,-stdout,-stderr --noshow_progress)
cache=(--remote_cache="$CACHE" --remote_download_minimal)
lazy=(--@rules_oci_push//settings:remote_cache="$CACHE")
bazel clean >/dev/null 2>&1
bazel build "${quiet[@]}" "${cache[@]}" "${lazy[@]}" //remote_cache:push_bench >/dev/null 2>&1
bazel build "${quiet[@]}" "${cache[@]}" //remote_cache:push_bench >/dev/null 2>&1

# measure MODE REPO: one `bazel run` after `bazel clean`; prints "SECONDS BYTES".
measure() {
  local mode=$1 repo=$2 flags=("${quiet[@]}" "${cache[@]}") start end
  [ "$mode" = lazy ] && flags+=("${lazy[@]}")
  bazel clean >/dev/null 2>&1
  # The server's start is not the push's cost: one cheap command first.
  bazel info "${flags[@]}" execution_root >/dev/null 2>&1
  : >"$log"
  start=$(date +%s.%N)
  bazel run "${flags[@]}" //remote_cache:push_bench -- -q -r "$REGISTRY/$repo" >/dev/null 2>"$tmp/run.err" ||
    { cat "$tmp/run.err" >&2; exit 1; }
  end=$(date +%s.%N)
  cache_settle
  echo "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }') $(cache_sent_bytes "$log")"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf '%-6s %-8s %10s %14s\n' mode push seconds "cache bytes"
for mode in eager lazy; do
  for push in cold re-push; do
    : >"$tmp/times"
    : >"$tmp/bytes"
    for i in $(seq "$runs"); do
      repo="rc/bench-$mode-$i"
      [ "$push" = re-push ] && measure "$mode" "$repo" >/dev/null
      read -r seconds bytes < <(measure "$mode" "$repo")
      echo "$seconds" >>"$tmp/times"
      echo "$bytes" >>"$tmp/bytes"
    done
    printf '%-6s %-8s %10.2f %14s\n' "$mode" "$push" "$(median <"$tmp/times")" "$(median <"$tmp/bytes")"
  done
done
