#!/usr/bin/env bash
# End-to-end tests of pushing without the bytes: real Bazel with a real HTTP
# remote cache (nginx with WebDAV, as Bazel's docs set one up) and
# --remote_download_minimal, a real registry, and the cache's access log as the
# record of what crossed it. Each push runs after `bazel clean`, so nothing of
# the image is on this disk but what Bazel downloads for the push.
#
#   cargo build --release && e2e/remote_cache.sh
#
# Needs what e2e/test.sh needs, and nginx (tools/setup.sh installs nginx-light).
# Prints one line per check and ends with "N passed, M failed".
set -uo pipefail

root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
e2e="$root/e2e"
pusher="$(realpath "${OCI_PUSH:-$root/target/release/oci-push}")"
[ -x "$pusher" ] || { echo "e2e: no pusher at $pusher: run cargo build --release" >&2; exit 1; }

tmp="$(mktemp -d)"
# shellcheck source=../tools/lib/checks.sh
source "$root/tools/lib/checks.sh"
# shellcheck source=../tools/lib/registry.sh
source "$root/tools/lib/registry.sh"
# shellcheck source=../tools/lib/cache.sh
source "$root/tools/lib/cache.sh"
# shellcheck source=../tools/lib/oci.sh
source "$root/tools/lib/oci.sh"
cleanup() {
  stop_registry
  stop_cache
  (cd "$e2e" && bazel shutdown) >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

start_registry "$tmp" || exit 1
start_cache "$tmp" || exit 1
log="$tmp/cache-access.log"
CACHE_DIR="$tmp/cache"
echo "registry: http://$REGISTRY, remote cache: $CACHE (access log $log)"
"$e2e/configure.sh" "$REGISTRY" "$pusher" || exit 1
cd "$e2e" || exit 1
echo latest >remote_cache/tags.txt

# The flags a team with a remote cache puts in its .bazelrc.
flags=(
  --remote_cache="$CACHE"
  --remote_download_minimal
  --@rules_oci_push//settings:remote_cache="$CACHE"
)
quiet=(--ui_event_filters=-info,-stdout,-stderr --noshow_progress)
# run LOG TARGET [ARGS...]: `bazel run` with the flags; stdout to LOG, stderr to LOG.err.
run() {
  local out=$1
  shift
  local status=0
  bazel run "${quiet[@]}" "${flags[@]}" "$@" >"$out" 2>"$out.err" || status=$?
  cache_settle
  return "$status"
}
# fresh: nothing of the build on this disk, and an empty access log.
fresh() { bazel clean >/dev/null 2>&1 && : >"$log"; }
# blobs_of LAYOUT: the config and layer digests of a layout's image manifest.
blobs_of() {
  local manifest
  manifest="$1/blobs/sha256/$(layout_digest "$1" | cut -d: -f2)"
  grep -o 'sha256:[0-9a-f]\{64\}' "$manifest"
}
# layers_of LAYOUT: the layer digests (the manifest lists the config first).
layers_of() { blobs_of "$1" | tail -n +2; }
hexes() { sed 's/^sha256://' <<<"$1"; }
at_most() { [ "$2" -le "$3" ] || { echo "$1: $2, more than $3"; return 1; }; }

# --- the build, which fills the cache ------------------------------------------

# From nothing: Bazel's own action cache would skip actions it ran for another cache. (The
# targets are manual, which :all leaves out.)
bazel clean >/dev/null 2>&1
targets=(//remote_cache:push_v1 //remote_cache:push_v2 //remote_cache:push_evicted //remote_cache:push_local)
check "bazel build (remote cache, --remote_download_minimal) of the pushes and their images" \
  bazel build "${quiet[@]}" "${flags[@]}" "${targets[@]}"
# The layouts themselves, for the expected digests: built once more without the cache (the
# log is emptied before each push), and copied out before the next bazel clean.
layouts="$tmp/layouts"
mkdir -p "$layouts"
for image in v1 v2 evicted local; do
  check "the layout of //remote_cache:$image, for its digests" \
    bash -c 'bazel build "$@" && cp -rL "bazel-bin/remote_cache/'"$image"'" "'"$layouts/$image"'"' \
    build "${quiet[@]}" "//remote_cache:$image"
done
v1_digest="$(layout_digest "$layouts/v1")"
v1_layers="$(layers_of "$layouts/v1")"
check "the cache holds every layer of v1 under its SHA-256 (Bazel's /cas/)" \
  bash -c 'for h in '"$(hexes "$v1_layers" | tr '\n' ' ')"'; do
    [ "$(curl -s -o /dev/null -w "%{http_code}" "'"$CACHE"'/cas/$h")" = 200 ] || { echo "no /cas/$h"; exit 1; }
  done'

# --- a cold push: each blob fetched once ------------------------------------------

fresh
check "cold push: bazel run //remote_cache:push_v1 after bazel clean" run "$tmp/v1.out" //remote_cache:push_v1
check "cold push: it printed REPO@DIGEST" \
  equals "last line" "$(tail -n 1 "$tmp/v1.out")" "$REGISTRY/rc/app@$v1_digest"
check "cold push: registry has rc/app:latest (OCI manifest)" \
  has_manifest rc/app latest "$v1_digest" "$OCI_MANIFEST"
for blob in $(blobs_of "$layouts/v1"); do
  check "cold push: registry serves ${blob:0:19}... hashing to its digest" has_blob rc/app "$blob"
done
for hex in $(hexes "$v1_layers"); do
  check "cold push: the cache served layer ${hex:0:12}... once" \
    equals "fetches" "$(cache_fetches "$log" "$hex")" 1
done
check "cold push: the summary says what came from the cache" \
  grep -Eq "^ +cache: +fetched 3\.0 MiB \(3\) from the remote cache$" "$tmp/v1.out.err"

# --- a re-push of what the registry has: (almost) nothing fetched ---------------------

fresh
check "re-push: bazel run //remote_cache:push_v1 after bazel clean" run "$tmp/again.out" //remote_cache:push_v1
check "re-push: at most 64 KiB crossed the cache (Bazel's downloads included)" \
  at_most "bytes fetched" "$(cache_sent_bytes "$log")" 65536
check "re-push: no layer was fetched" \
  equals "layer bytes fetched" "$(cache_fetched_bytes "$log" $(hexes "$v1_layers"))" 0

# --- one new layer: only that one fetched ---------------------------------------------

v2_digest="$(layout_digest "$layouts/v2")"
v2_layers="$(layers_of "$layouts/v2")"
new_layer="$(comm -13 <(sort <<<"$v1_layers") <(sort <<<"$v2_layers"))"
check "v2 shares all layers with v1 but one" equals "new layers" "$(grep -c . <<<"$new_layer")" 1
fresh
check "one new layer: bazel run //remote_cache:push_v2 after bazel clean" run "$tmp/v2.out" //remote_cache:push_v2
check "one new layer: registry has rc/app:v2" has_manifest rc/app v2 "$v2_digest" "$OCI_MANIFEST"
check "one new layer: registry serves the new layer" has_blob rc/app "$new_layer"
check "one new layer: the cache served it once" \
  equals "fetches" "$(cache_fetches "$log" "$(hexes "$new_layer")")" 1
check "one new layer: no other layer was fetched" \
  equals "bytes of the shared layers fetched" \
  "$(cache_fetched_bytes "$log" $(hexes "$(comm -12 <(sort <<<"$v1_layers") <(sort <<<"$v2_layers"))"))" 0

# --- the build-time check reads the thin layout only -------------------------------------

# A new tags file re-runs the check (OciPushVerify) here: its inputs are downloaded first.
# The execution log shows it ran here, not from the cache. (Inside the checkout: Bazel's
# server runs in a chroot that sees only the checkout.)
work="$e2e/.tmp/remote_cache"
mkdir -p "$work"
fresh
echo "checked-$RANDOM" >remote_cache/tags.txt
check "build-time check: bazel build //remote_cache:push_v1 with a new tags file" \
  bazel build "${quiet[@]}" "${flags[@]}" --execution_log_json_file="$work/exec.json" \
  //remote_cache:push_v1
cache_settle
check "build-time check: OciPushVerify ran here, not from the cache" \
  python3 -c 'import json, sys
entries = json.JSONDecoder()
text, at, ran = open(sys.argv[1]).read(), 0, []
while at < len(text.rstrip()):
    entry, at = entries.raw_decode(text, at)
    at = len(text) - len(text[at:].lstrip())
    if entry.get("mnemonic") == "OciPushVerify" and not entry.get("remoteCacheHit"):
        ran.append(entry)
sys.exit(0 if len(ran) == 1 else "OciPushVerify ran %d times here" % len(ran))' "$work/exec.json"
check "build-time check: it downloaded no layer" \
  equals "layer bytes fetched" "$(cache_fetched_bytes "$log" $(hexes "$v1_layers"))" 0
echo latest >remote_cache/tags.txt

# --- a layer built on this machine is read here, not fetched -----------------------------

bazel clean >/dev/null 2>&1
check "local build: bazel build //remote_cache:local (the layout is on this disk)" \
  bazel build "${quiet[@]}" "${flags[@]}" --remote_download_outputs=all //remote_cache:local
: >"$log"
check "local build: bazel run //remote_cache:push_local" run "$tmp/local.out" //remote_cache:push_local
local_digest="$(layout_digest "$layouts/local")"
check "local build: registry has rc/local:latest" has_manifest rc/local latest "$local_digest" "$OCI_MANIFEST"
check "local build: the layer came from disk, not the cache" \
  equals "layer bytes fetched" "$(cache_fetched_bytes "$log" $(hexes "$(layers_of "$layouts/local")"))" 0

# The run-script finds the execroot from where it is, run directly too, and through a link to
# it (as from another binary's runfiles).
check "local build: bazel build //remote_cache:push_local with its runfiles" \
  bazel build "${quiet[@]}" "${flags[@]}" --remote_download_outputs=all --build_runfile_links \
  //remote_cache:push_local
: >"$log"
# (Each to a new repository, which lacks the layer.)
check "local build: bazel-bin/remote_cache/push_local run directly" \
  bazel-bin/remote_cache/push_local -q -r "$REGISTRY/rc/local-direct"
ln -sf "$e2e/bazel-bin/remote_cache/push_local" "$tmp/push-link"
check "local build: the run-script run through a link to it" \
  env RUNFILES_DIR="$e2e/bazel-bin/remote_cache/push_local.runfiles" "$tmp/push-link" -q \
  -r "$REGISTRY/rc/local-linked"
cache_settle
for repo in rc/local-direct rc/local-linked; do
  check "local build: registry has $repo:latest" has_manifest "$repo" latest "$local_digest" "$OCI_MANIFEST"
done
check "local build: neither fetched the layer" \
  equals "layer bytes fetched" "$(cache_fetched_bytes "$log" $(hexes "$(layers_of "$layouts/local")"))" 0

# --- an evicted blob: a clear failure before any tag; a re-run repairs -----------------------

evicted_digest="$(layout_digest "$layouts/evicted")"
evicted_layer="$(layers_of "$layouts/evicted")"
fresh
rm -f "$CACHE_DIR/cas/$(hexes "$evicted_layer")"
run "$tmp/evicted.out" //remote_cache:push_evicted
check "evicted: the push fails with exit code 8 (the remote cache)" equals "exit code" "$?" 8
check "evicted: one line names the blob, the cache and the fix" \
  grep -Eq "^oci-push: error: blob $evicted_layer \(1\.0 MiB\) is not in the remote cache $CACHE: evicted, or .*--digest_function.*bazel clean., then .bazel build --noremote_accept_cached. of it\), then push again \(nothing was tagged\)$" \
  "$tmp/evicted.out.err"
check "evicted: the registry has no manifest" lacks_manifest rc/evicted "$evicted_digest"
check "evicted: nor the tag" lacks_manifest rc/evicted latest
bazel clean >/dev/null 2>&1
check "evicted: the fix, bazel clean and bazel build --noremote_accept_cached, puts the blob back" \
  bazel build "${quiet[@]}" "${flags[@]}" --noremote_accept_cached //remote_cache:evicted
check "evicted: the cache has the blob again" \
  test -f "$CACHE_DIR/cas/$(hexes "$evicted_layer")"
fresh
check "evicted: then the push succeeds" run "$tmp/repaired.out" //remote_cache:push_evicted
check "evicted: registry has rc/evicted:latest" \
  has_manifest rc/evicted latest "$evicted_digest" "$OCI_MANIFEST"

# --- without the setting, the same push downloads every layer (the eager push) ---------------

fresh
check "eager: bazel run //remote_cache:push_v1 without the setting" \
  bazel run "${quiet[@]}" --remote_cache="$CACHE" --remote_download_minimal //remote_cache:push_v1
cache_settle
check "eager: Bazel downloaded every layer for the runfiles" \
  equals "layers fetched" "$(for h in $(hexes "$v1_layers"); do cache_fetches "$log" "$h"; done | sort -u)" 1

summary
