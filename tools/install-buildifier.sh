#!/usr/bin/env bash
# Installs buildifier (Bazel's Starlark formatter and linter) as /usr/local/bin/buildifier,
# idempotently. It comes from the npm package @bazel/buildifier, which carries the binaries of
# the buildtools release: the npm registry is reachable where GitHub may not be. The tarball is
# pinned by sha256. Run as root.
set -euo pipefail

version=8.2.1
sha256=b96ea9b13003036c801f52bee6f9b0314738f8432e5cb9d814c89f59292604ee
target=/usr/local/bin/buildifier

if [ -x "$target" ] && "$target" --version 2>/dev/null | grep -F "buildifier version: $version" >/dev/null; then
  exit 0
fi
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "install-buildifier: no buildifier for $(uname -m)" >&2; exit 1 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
url="https://registry.npmjs.org/@bazel/buildifier/-/buildifier-$version.tgz"
echo "install-buildifier: fetching $url"
curl -fsSL --retry 3 -o "$work/buildifier.tgz" "$url"
echo "$sha256  $work/buildifier.tgz" | sha256sum -c --quiet - || {
  echo "install-buildifier: $url does not have the pinned sha256 $sha256" >&2
  exit 1
}
tar -xzf "$work/buildifier.tgz" -C "$work" "package/buildifier-linux_$arch"
install -m 0755 "$work/package/buildifier-linux_$arch" "$target"
echo "install-buildifier: $("$target" --version | sed -n 1p)"
