#!/usr/bin/env bash
# Tests examples/ as a user gets it from the Bazel Central Registry, then pushes with it.
#
# tools/release.sh makes a release of this checkout: the static linux_amd64 oci-push, the
# integrity table pointing at it by file:// URL, and the source archive holding that table.
# The archive is unpacked under .tmp/examples/ and Bazel runs in its examples/ directory, as the
# BCR presubmit does (.bcr/presubmit.yml): examples/MODULE.bazel's local_path_override(path =
# "..") is then the release archive, so the module extension downloads the binary through its
# default release table (no oci_push.pusher tag), checks its sha256, and the push uses it.
# Pushes go to a local registry (docker-registry) and are read back with curl.
#
#   examples/test.sh
#
# Needs cargo, and bazel, git, file, docker-registry and curl (tools/setup.sh installs them).
# Prints one line per check and "N passed, M failed"; exits non-zero if any check failed.
set -uo pipefail

root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
# shellcheck source=../tools/lib/version.sh
source "$root/tools/lib/version.sh"
version="$(module_version "$root/MODULE.bazel")"
artifact="oci-push-$version-linux-amd64"
# Inside the checkout (git-ignored): Bazel runs in a chroot that sees only the checkout.
work="$root/.tmp/examples"
dist="$work/dist"
ws="$work/src/rules_oci_push-$version/examples"

command -v cargo >/dev/null || { echo "examples: cargo not found (install Rust, e.g. with rustup)" >&2; exit 1; }
for tool in bazel git file docker-registry curl; do
  command -v "$tool" >/dev/null || { echo "examples: $tool not found (run tools/setup.sh)" >&2; exit 1; }
done

tmp="$(mktemp -d)"
# shellcheck source=../tools/lib/checks.sh
source "$root/tools/lib/checks.sh"
# shellcheck source=../tools/lib/registry.sh
source "$root/tools/lib/registry.sh"
# shellcheck source=../tools/lib/oci.sh
source "$root/tools/lib/oci.sh"
cleanup() {
  stop_registry
  [ ! -d "$ws" ] || (cd "$ws" && bazel shutdown) >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- the install snippet -----------------------------------------------------------------

# snippet FILE: the lines between the install:begin and install:end markers, code fences dropped.
snippet() { sed -n '/install:begin/,/install:end/p' "$1" | sed '1d;$d' | grep -v '^```'; }
check "README.md's install snippet is examples/MODULE.bazel's" \
  diff -u <(snippet "$root/examples/MODULE.bazel") <(snippet "$root/README.md")
check "the install snippet names version $version (MODULE.bazel's)" \
  grep -qx "bazel_dep(name = \"rules_oci_push\", version = \"$version\")" <(snippet "$root/examples/MODULE.bazel")

# --- a release of this checkout, unpacked as the BCR presubmit does ------------------------

[ ! -d "$ws" ] || (cd "$ws" && bazel shutdown) >/dev/null 2>&1
rm -rf "$work" && mkdir -p "$dist" "$work/src"
if ! bash "$root/tools/release.sh" --base-url "file://$dist" "$version" "$dist" >"$tmp/release.log" 2>&1; then
  not_ok "tools/release.sh $version (file:// table)" "$(cat "$tmp/release.log")"
  summary
  exit
fi
ok "tools/release.sh $version: $artifact, its table (file:// URL), the source archive"
tar -xzf "$dist/rules_oci_push-v$version.tar.gz" -C "$work/src"
check "the archive's table is the release's (rules/private/versions.bzl)" \
  cmp "$dist/versions.bzl" "$ws/../rules/private/versions.bzl"
# As the BCR presubmit does, add to the test module's .bazelrc: a fresh output base and no
# repository cache, so that the binary is downloaded from its file:// URL on every run.
printf '\nstartup --output_base=%s\ncommon --repository_cache=\n' "$work/bazel" >>"$ws/.bazelrc"

start_registry "$tmp" || exit 1
echo "registry: http://$REGISTRY"
port="${REGISTRY##*:}"

cd "$ws" || exit 1

# --- build, unstamped ------------------------------------------------------------------------

check "bazel build //... (the images, the tags, the push and its build-time check)" bazel build //...
check "unstamped, the tags file has the template's default" equals image_tags.txt "$(cat bazel-bin/image_tags.txt)" dev
index_digest="$(layout_digest bazel-bin/image)"
check "the build-time check ran the release binary (push.digest)" \
  equals push.digest "$(cat bazel-bin/push.digest 2>&1)" "ghcr.io/acme/hello@$index_digest"

# The table's repository (oci_push_<platform>), not an oci_push.pusher tag's (oci_push_pusher_<n>).
fetched="$(ls "$work"/bazel/external/*oci_push_linux_amd64/oci-push 2>/dev/null | head -n 1)"
check "Bazel downloaded $artifact through the release table, sha256 as generated" \
  equals "sha256 of ${fetched:-<no oci_push_linux_amd64 repository>}" \
  "$(sha256sum "${fetched:-/dev/null}" | cut -d' ' -f1)" "$(cut -d' ' -f1 "$dist/$artifact.sha256")"
check "no pusher came from an oci_push.pusher tag" \
  equals "oci_push_pusher_* repositories" "$(ls -d "$work"/bazel/external/*oci_push_pusher_* 2>/dev/null)" ""
check "the push's runfiles carry that binary" \
  cmp "$dist/$artifact" "$(ls bazel-bin/push.runfiles/*oci_push_linux_amd64/oci-push 2>/dev/null | head -n 1)"

# --- stamped: the tag from the workspace status ----------------------------------------------

tag="example-$(date +%s)-$RANDOM"
check "IMAGE_TAG=$tag bazel build --stamp //:push" env IMAGE_TAG="$tag" bazel build --stamp //:push
check "stamped, the tags file has STABLE_IMAGE_TAG" equals image_tags.txt "$(cat bazel-bin/image_tags.txt)" "$tag"

# stamped_run LOG ARGS...: `bazel run --stamp //:push -- ARGS`; stdout to LOG, stderr to LOG.err.
stamped_run() {
  local log=$1
  shift
  IMAGE_TAG="$tag" bazel run --stamp --ui_event_filters=-info,-stdout,-stderr --noshow_progress \
    //:push -- "$@" >"$log" 2>"$log.err"
}
check "bazel run --stamp //:push -- -r $REGISTRY/examples/hello" \
  stamped_run "$tmp/push.out" -r "$REGISTRY/examples/hello"
check "the push prints REPO@<index digest> last" \
  equals "last line" "$(tail -n 1 "$tmp/push.out")" "$REGISTRY/examples/hello@$index_digest"
check "registry: examples/hello:$tag is the index ($OCI_INDEX)" \
  has_manifest examples/hello "$tag" "$index_digest" "$OCI_INDEX"
for arch in amd64 arm64; do
  child="$(layout_digest "bazel-bin/image_$arch")"
  check "registry: the index's $arch image (${child:0:19}...)" has_manifest examples/hello "$child" "$child" "$OCI_MANIFEST"
  check "the index names $child for linux/$arch" \
    grep -q "\"digest\":\"$child\"[^}]*\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"}" \
    "bazel-bin/image/blobs/sha256/${index_digest#sha256:}"
done

# The static binary resolves names with the glibc it was linked with; the chroot has another.
check "bazel run --stamp //:push -- -r localhost:$port/examples/by-name" \
  stamped_run "$tmp/by-name.out" -r "localhost:$port/examples/by-name"
check "registry: examples/by-name:$tag is the index" has_manifest examples/by-name "$tag" "$index_digest" "$OCI_INDEX"

# --- a platform the release table does not cover ---------------------------------------------

# This workspace has no oci_push.pusher tag, so the message must not blame one.
fails_with "a platform without a release binary fails at analysis, naming it, the release's platforms and the ways out" \
  'no oci-push binary for platform @@rules_oci_push[~+]//rules/tests:fake_windows \(os: windows, cpu: x86_64\)' \
  "rules_oci_push $version has release binaries for: linux_amd64\." \
  'oci_push.pusher\(url = ' 'oci_push.pusher\(label = ' \
  '!oci_push.pusher tags cover' -- \
  bazel build //:push --platforms=@rules_oci_push//rules/tests:fake_windows

summary
