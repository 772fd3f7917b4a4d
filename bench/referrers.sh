#!/usr/bin/env bash
# What referrers cost a push far from the registry: a small image (2 layers of 1 KiB, so that
# round trips, not bytes, count) pushed to a new repository with no referrer, then with an SBOM
# and a signature (each a --write-artifact layout with one file), to the real registry through
# bench/link.py, a link of RTT_MS (default 40) and unlimited bandwidth.
#
#   cargo build --release && bash bench/referrers.sh [RUNS [RTT_MS]]
#
# Prints, per case, the median of RUNS (default 5) pushes: wall seconds as --format json
# reports them, and the push's round trips (`wire.roundTrips`).
set -euo pipefail
root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
runs="${1:-5}" rtt="${2:-40}"
pusher="$root/target/release/oci-push"
[ -x "$pusher" ] || { echo "bench: build the pusher first: cargo build --release" >&2; exit 1; }
tmp="$(mktemp -d)"
# shellcheck source=../tools/lib/registry.sh
source "$root/tools/lib/registry.sh"
link_pid=""
trap 'stop_registry; [ -z "$link_pid" ] || kill "$link_pid"; rm -rf "$tmp"' EXIT
start_registry "$tmp"
port=$((20000 + RANDOM % 30000))
python3 "$root/bench/link.py" --listen "127.0.0.1:$port" --to "$REGISTRY" --rtt "$rtt" \
  --handshake >"$tmp/link.log" 2>&1 &
link_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

python3 "$root/bench/make-layout.py" --layers 2 --size 1024 "$tmp/image" >/dev/null
echo '{"spdxVersion": "SPDX-2.3"}' >"$tmp/sbom.json"
"$pusher" --write-artifact "$tmp/sbom" --layout "$tmp/image" --artifact-type application/spdx+json \
  --artifact-file "$tmp/sbom.json:application/spdx+json" >/dev/null
echo 'signature' >"$tmp/sig"
"$pusher" --write-artifact "$tmp/signature" --layout "$tmp/image" \
  --artifact-type application/vnd.example.signature --artifact-file "$tmp/sig" >/dev/null

# median LIST...: the middle value.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "registry through a link of $rtt ms; median of $runs pushes to a new repository each"
for case in none two; do
  extra=()
  [ "$case" = two ] && extra=(--referrer "$tmp/sbom" --referrer "$tmp/signature")
  seconds=() trips=()
  for run in $(seq "$runs"); do
    "$pusher" --layout "$tmp/image" -r "127.0.0.1:$port/bench/$case-$run" -t v1 "${extra[@]}" \
      --plain-http -q --format json >"$tmp/result.json"
    seconds+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$tmp/result.json")")
    trips+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["wire"]["roundTrips"])' "$tmp/result.json")")
  done
  printf '%-28s %6s s  %3s round trips\n' "$([ "$case" = two ] && echo "SBOM and signature" || echo "no referrer")" \
    "$(median "${seconds[@]}")" "$(median "${trips[@]}")"
done
