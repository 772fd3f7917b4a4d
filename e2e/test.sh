#!/usr/bin/env bash
# End-to-end tests of rules_oci_push: real Bazel, a real registry
# (docker-registry, i.e. CNCF distribution, on 127.0.0.1) and checks made with
# curl, a client we did not write.
#
#   cargo build --release && e2e/test.sh
#
# Needs: bazel (tools/install-bazel.sh), git; docker-registry and curl (installed
# with apt-get when missing and run as root); the pusher
# at target/release/oci-push (or $OCI_PUSH, a path inside the checkout: Bazel
# runs in a chroot that sees only the checkout). Prints one line per check and
# ends with "N passed, M failed"; exits non-zero if any check failed.
set -uo pipefail

root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
e2e="$root/e2e"
pusher="$(realpath "${OCI_PUSH:-$root/target/release/oci-push}")"

# The registry and curl come from Debian; install them if we may.
if ! command -v docker-registry >/dev/null || ! command -v curl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-registry curl >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-registry curl >/dev/null; }
  fi
fi
for tool in bazel docker-registry curl; do
  command -v "$tool" >/dev/null || { echo "e2e: $tool not found (see the header of $0)" >&2; exit 1; }
done
[ -x "$pusher" ] || { echo "e2e: no pusher at $pusher: run cargo build --release" >&2; exit 1; }

# Host-only scratch (registry storage, logs) and, for files handed to
# `bazel run` targets, a folder inside the checkout (git-ignored).
tmp="$(mktemp -d)"
work="$e2e/.tmp/test"
rm -rf "$work" && mkdir -p "$work"
registry_pid=""
cleanup() {
  [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null
  (cd "$e2e" && bazel shutdown) >/dev/null 2>&1
  (cd "$root" && bazel shutdown) >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=../tools/lib/checks.sh
source "$root/tools/lib/checks.sh"

# --- registry ---------------------------------------------------------------

# shellcheck source=../tools/lib/registry.sh
source "$root/tools/lib/registry.sh"
start_registry "$tmp" || exit 1
echo "registry: http://$REGISTRY (storage $tmp/storage)"

ACCEPT="application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json"
ACCEPT+=",application/vnd.docker.distribution.manifest.v2+json,application/vnd.docker.distribution.manifest.list.v2+json"

# manifest REPO REF: GETs a manifest; sets $status, $digest (Docker-Content-Digest),
# $content_type, and leaves the body in $tmp/body.
manifest() {
  local headers="$tmp/headers"
  status="$(curl -sS -o "$tmp/body" -D "$headers" -w '%{http_code}' -H "Accept: $ACCEPT" \
    "http://$REGISTRY/v2/$1/manifests/$2")"
  digest="$(sed -n 's/^docker-content-digest: *\([^[:space:]]*\).*/\1/Ip' "$headers")"
  content_type="$(sed -n 's/^content-type: *\([^[:space:];]*\).*/\1/Ip' "$headers")"
}

# has_manifest REPO REF DIGEST MEDIA_TYPE: the registry serves REF with that digest and type.
has_manifest() {
  manifest "$1" "$2"
  [ "$status" = 200 ] || { echo "GET $1:$2: HTTP $status: $(head -c 300 "$tmp/body")"; return 1; }
  [ "$digest" = "$3" ] || { echo "GET $1:$2: Docker-Content-Digest $digest, want $3"; return 1; }
  [ "$content_type" = "$4" ] || { echo "GET $1:$2: Content-Type $content_type, want $4"; return 1; }
  local body_digest="sha256:$(sha256sum "$tmp/body" | cut -d' ' -f1)"
  [ "$body_digest" = "$3" ] || { echo "GET $1:$2: body hashes to $body_digest, want $3"; return 1; }
}

# lacks_manifest REPO REF: the registry does not know REF.
lacks_manifest() {
  manifest "$1" "$2"
  [ "$status" = 404 ] || { echo "GET $1:$2: HTTP $status, want 404"; return 1; }
}

has_blob() {
  local status
  status="$(curl -sS -o /dev/null -I -w '%{http_code}' "http://$REGISTRY/v2/$1/blobs/$2")"
  [ "$status" = 200 ] || { echo "HEAD $1 blob $2: HTTP $status"; return 1; }
}

# no_tags REPO: the repository has no tags (distribution answers NAME_UNKNOWN
# for a repository that holds manifests but no tags).
no_tags() {
  local body
  body="$(curl -sS "http://$REGISTRY/v2/$1/tags/list")"
  grep -Eq '"tags":(null|\[\])|"NAME_UNKNOWN"' <<<"$body" || { echo "tags/list: $body"; return 1; }
}


# --- build --------------------------------------------------------------------

OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json

"$e2e/configure.sh" "$REGISTRY" "$pusher" || exit 1
cd "$e2e" || exit 1

# bazel_run LOG TARGET [ARGS...]: `bazel run` from the current directory;
# stdout to LOG, stderr to LOG.err. Returns the target's exit code.
bazel_run() {
  local log=$1
  shift
  bazel run --ui_event_filters=-info,-stdout,-stderr --noshow_progress "$@" >"$log" 2>"$log.err"
}
# bazel_run_in DIR LOG TARGET [ARGS...]: the same, called from DIR.
bazel_run_in() { (cd "$1" && shift && bazel_run "$@"); }
# run_in DIR COMMAND...: COMMAND called from DIR.
run_in() { (cd "$1" && shift && "$@"); }
last_line() { tail -n 1 "$1"; }

check "bazel build //... (layouts, run-scripts, build-time verification)" \
  bazel build //...

# The expected digests come from the layouts themselves (index.json of each).
layout_digest() { sed -n 's/.*"digest":"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' "$1/index.json"; }
image_digest="$(layout_digest bazel-bin/image)"
index_digest="$(layout_digest bazel-bin/index)"
echo "image $image_digest, index $index_digest"

check "build-time verification wrote the digest of push_image" \
  equals push_image.digest "$(cat bazel-bin/push_image.digest)" "$REGISTRY/e2e/image@$image_digest"
check "--output_groups=digest gives the index's reference without pushing" \
  bazel build //:push_index --output_groups=digest
check "push_index.digest names the index" \
  equals push_index.digest "$(cat bazel-bin/push_index.digest)" "$REGISTRY/e2e/index@$index_digest"

# --- pushes as declared -------------------------------------------------------

check "bazel run //:push_image" bazel_run "$tmp/image.out" //:push_image
check "push_image prints REPO@DIGEST last" \
  equals "last line" "$(last_line "$tmp/image.out")" "$REGISTRY/e2e/image@$image_digest"
check "bazel run shows the pusher's summary" \
  grep -qx "pushed $REGISTRY/e2e/image@$image_digest" "$tmp/image.out.err"
for tag in latest v1.0.0 "$image_digest"; do
  check "registry has e2e/image:$tag (OCI manifest)" has_manifest e2e/image "$tag" "$image_digest" "$OCI_MANIFEST"
done

check "bazel run //:push_index" bazel_run "$tmp/index.out" //:push_index
check "push_index prints REPO@DIGEST last" \
  equals "last line" "$(last_line "$tmp/index.out")" "$REGISTRY/e2e/index@$index_digest"
for tag in multi v2; do
  check "registry has e2e/index:$tag (OCI index)" has_manifest e2e/index "$tag" "$index_digest" "$OCI_INDEX"
done
# The index's children, and the base layer both platforms share.
children="$(grep -o 'sha256:[0-9a-f]\{64\}' "bazel-bin/index/blobs/sha256/${index_digest#sha256:}")"
for child in $children; do
  check "registry has e2e/index@${child:0:19}... (platform manifest)" has_manifest e2e/index "$child" "$child" "$OCI_MANIFEST"
done
amd64_layers="$(grep -o 'sha256:[0-9a-f]\{64\}' "bazel-bin/image_amd64/blobs/sha256/$(layout_digest bazel-bin/image_amd64 | cut -d: -f2)")"
arm64_layers="$(grep -o 'sha256:[0-9a-f]\{64\}' "bazel-bin/image_arm64/blobs/sha256/$(layout_digest bazel-bin/image_arm64 | cut -d: -f2)")"
shared="$(comm -12 <(sort <<<"$amd64_layers") <(sort <<<"$arm64_layers"))"
check "the two platforms share exactly one layer" equals "shared layers" "$(grep -c . <<<"$shared")" 1
check "registry has the shared layer blob" has_blob e2e/index "$shared"

check "bazel run //:push_untagged" bazel_run "$tmp/untagged.out" //:push_untagged
check "e2e/untagged has the image by digest" has_manifest e2e/untagged "$image_digest" "$image_digest" "$OCI_MANIFEST"
check "e2e/untagged has no tags" no_tags e2e/untagged

check "bazel run //:push_repository_file" bazel_run "$tmp/file.out" //:push_repository_file
check "repository_file: registry has e2e/from-file:latest (index)" \
  has_manifest e2e/from-file latest "$index_digest" "$OCI_INDEX"

# --- run-time overrides ---------------------------------------------------------

check "bazel run //:push_image -- --tag x --repository $REGISTRY/other" \
  bazel_run "$tmp/override.out" //:push_image -- --tag x --repository "$REGISTRY/other"
check "override: registry has other:x" has_manifest other x "$image_digest" "$OCI_MANIFEST"
check "override: --tag replaced the tags file (no other:latest)" lacks_manifest other latest
check "override: nothing tagged x in e2e/image" lacks_manifest e2e/image x

port="${REGISTRY##*:}"
check "bazel run //:push_image -- -t extra -r localhost:$port/other" \
  bazel_run "$tmp/localhost.out" //:push_image -- -t extra -r "localhost:$port/other"
check "override: registry has other:extra" has_manifest other extra "$image_digest" "$OCI_MANIFEST"

echo "$REGISTRY/from-override-file" >"$work/repo.txt"
check "bazel run //:push_image -- --repository-file repo.txt -t f (relative, from a subdirectory)" \
  bazel_run_in "$work" "$tmp/repofile.out" //:push_image -- --repository-file repo.txt -t f
check "override: registry has from-override-file:f" has_manifest from-override-file f "$image_digest" "$OCI_MANIFEST"

# A relative --digest-file is taken from where `bazel run` was called.
mkdir -p "$work/wd"
check "bazel run from a subdirectory with --digest-file digest.txt" \
  bazel_run_in "$work/wd" "$tmp/wd.out" //:push_untagged -- --digest-file digest.txt
check "digest.txt landed in that subdirectory" \
  equals "$work/wd/digest.txt" "$(cat "$work/wd/digest.txt" 2>&1)" "$REGISTRY/e2e/untagged@$image_digest"

# --- bazel-bin/... run directly ---------------------------------------------------

mkdir -p "$tmp/elsewhere/rel"
check "bazel-bin/push_image run directly from another directory" \
  run_in "$tmp/elsewhere" "$e2e/bazel-bin/push_image" -t direct --digest-file rel/digest.txt
check "direct run: registry has e2e/image:direct" has_manifest e2e/image direct "$image_digest" "$OCI_MANIFEST"
check "direct run: digest file relative to the caller's directory" \
  equals "digest file" "$(cat "$tmp/elsewhere/rel/digest.txt" 2>&1)" "$REGISTRY/e2e/image@$image_digest"
check "bazel-bin/push_index run by a relative path" \
  run_in "$work" ../../bazel-bin/push_index -t relative
check "relative run: registry has e2e/index:relative" has_manifest e2e/index relative "$index_digest" "$OCI_INDEX"

# The run-script passes the pusher's exit code through.
bazel_run "$tmp/unreachable.out" //:push_image -- -r 127.0.0.1:1/nowhere
check "pusher exit code comes through bazel run (3: registry unreachable)" equals "exit code" "$?" 3

# --- failures at build time -----------------------------------------------------

# expect_build_failure NAME TARGET FLAGS... -- PATTERN...: building TARGET
# fails, and the output matches every (extended regex) PATTERN.
expect_build_failure() {
  local name=$1 target=$2 flags=() pattern
  shift 2
  while [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  if bazel build "${flags[@]}" "$target" >"$tmp/fail.out" 2>&1; then
    not_ok "$name" "bazel build $target succeeded"
    return
  fi
  for pattern in "$@"; do
    if ! grep -Eq -- "$pattern" "$tmp/fail.out"; then
      not_ok "$name" "no match for /$pattern/ in: $(grep -E 'ERROR|error' "$tmp/fail.out")"
      return
    fi
  done
  ok "$name"
}
expect_build_failure "bazel build //:push_bad_tags fails, naming the file, line and tag" //:push_bad_tags -- \
  "bad_tags.txt:2: invalid tag 'no spaces allowed'"
expect_build_failure "bazel build //:push_corrupt fails, naming the blob" //:push_corrupt -- \
  "blob sha256:[0-9a-f]{64} is corrupt"
expect_build_failure "a platform without a pusher fails, naming it and the ways out" //:push_image \
  --platforms=//:linux_s390x -- \
  "no oci-push binary for platform @@//:linux_s390x \(os: linux, cpu: s390x\)" \
  'oci_push.pusher\(url = ' 'oci_push.pusher\(label = '
# This workspace uses the module from the checkout, whose release table is empty (the release
# table's own path is examples/test.sh's), and names one pusher by URL for linux_amd64.
expect_build_failure "... and says the module is a source checkout, and the root module's tag covers other platforms" \
  //:push_image --platforms=//:linux_s390x -- \
  'This rules_oci_push is a source checkout, not a release: it has no release binaries\.' \
  "The root module's oci_push.pusher tags cover other platforms only\."

# Validations run for `bazel run` too: a corrupt layout never reaches the registry.
corrupt_digest="$(layout_digest bazel-bin/corrupt_image)"
if bazel_run "$tmp/corrupt.out" //:push_corrupt; then
  not_ok "bazel run //:push_corrupt fails before pushing" "it succeeded"
elif [ -z "$corrupt_digest" ]; then
  not_ok "bazel run //:push_corrupt fails before pushing" "no bazel-bin/corrupt_image/index.json"
else
  check "bazel run //:push_corrupt fails before pushing (nothing in e2e/corrupt)" \
    lacks_manifest e2e/corrupt "$corrupt_digest"
fi

# --- the module's own analysis tests, and docs in step with the code --------------

check "the module builds, and its analysis tests pass: bazel test //... (repo root)" \
  run_in "$root" bazel test //...

docs="$root/docs/oci_push.md"
attrs="$(sed -n '/^_ATTRS = {/,/^}/s/^    "\([a-z][a-z_]*\)": attr\..*/\1/p' "$root/rules/private/push.bzl")"
missing=""
for a in $attrs; do grep -q "\`$a\`" "$docs" || missing+=" $a"; done
check "docs/oci_push.md documents every attribute ($(echo $attrs))" equals "undocumented" "${missing# }" ""
flags="$("$pusher" --help | grep -o -- '--[a-z][a-z-]*' | sort -u)"
missing=""
for f in $flags; do grep -q -- "$f" "$docs" || missing+=" $f"; done
check "docs/oci_push.md documents every flag of oci-push --help" equals "undocumented" "${missing# }" ""

summary
