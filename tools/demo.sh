#!/usr/bin/env bash
# The demo: set up this machine (tools/setup.sh), build the pusher, start a local registry,
# build an example image with Bazel (the e2e workspace) and `bazel run` its push target, then
# read the result back with curl; then push it with an SBOM and a provenance statement
# (referrers) and list them with oras. Leaves nothing running.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

SKIP_BUILDIFIER=1 bash tools/setup.sh
cargo build --release --locked

tmp="$(mktemp -d)"
# shellcheck source=lib/registry.sh
source tools/lib/registry.sh
cleanup() {
  stop_registry
  (cd "$root/e2e" && bazel shutdown) >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
start_registry "$tmp"
echo
echo "== a registry is listening on http://$REGISTRY"

e2e/configure.sh "$REGISTRY" >/dev/null
cd e2e
echo "== bazel build //:image   (an example OCI image layout)"
bazel build //:image 2>&1 | tail -n 2
echo "== bazel run //:push_image -- -t demo   (tags from the rule's tags file are replaced by -t)"
bazel run //:push_image -- -t demo

echo
echo "== what the registry has now (read with curl):"
curl -fsS "http://$REGISTRY/v2/e2e/image/tags/list"
echo
curl -fsS -o /dev/null -D - \
  -H "Accept: application/vnd.oci.image.manifest.v1+json" \
  "http://$REGISTRY/v2/e2e/image/manifests/demo" | grep -i -E '^(docker-content-digest|content-type):'

echo
echo "== bazel run //:push_with_referrers   (the image with its SBOM and provenance, OCI 1.1 referrers)"
bazel run //:push_with_referrers
echo
echo "== its referrers, as oras (a client we did not write) lists them:"
"$root/bench/.peers/oras" discover --plain-http "$REGISTRY/e2e/referrers:with-referrers"
