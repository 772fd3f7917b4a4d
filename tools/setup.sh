#!/usr/bin/env bash
# Installs what building, testing and the demo need on a Debian 12 machine, idempotently:
# the CNCF distribution registry (the tests' real registry), nginx (the tests' real Bazel HTTP
# remote cache), curl (the tests' independent client), htpasswd and openssl (auth tests),
# python3 (the benchmark's layout generator, and the release test's checks of the generated
# table and .bcr/), git, file (the release test's static-binary check), script (the
# terminal-progress test), buildifier (tools/install-buildifier.sh), Bazel 7
# (tools/install-bazel.sh), and oras and crane into bench/.peers (bench/get-peers.sh, from
# Debian's archive): the referrer tests read pushes back with `oras discover`, the
# benchmarks compare against both.
# Run as root. SKIP_BAZEL=1 leaves Bazel out (for cargo-only work); SKIP_BUILDIFIER=1 leaves
# buildifier out (the demo does not lint).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v curl >/dev/null || need+=(curl ca-certificates)
command -v python3 >/dev/null || need+=(python3)
command -v git >/dev/null || need+=(git)
# The cache tests' Bazel HTTP remote cache is nginx with WebDAV, as Bazel's docs set one up;
# Debian installs it in /usr/sbin, which a non-root user's PATH may not have.
{ command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null || need+=(nginx-light)
# The auth tests: htpasswd files for the registry, and a CA, certificates and signed tokens.
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)
# The terminal-progress test runs oci-push under a pseudo-terminal with script(1).
command -v script >/dev/null || need+=(bsdutils)
# The release test checks that the release binary is static.
command -v file >/dev/null || need+=(file)
# bench/get-peers.sh checks Debian's archive with it.
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# Debian's package may start a registry on :5000 where an init system runs; the tests start
# their own on free ports, so a system one is only in the way.
if command -v systemctl >/dev/null && systemctl is-active -q docker-registry 2>/dev/null; then
  systemctl disable --now docker-registry || true
fi
# Likewise the nginx the package just started on :80 (the tests start their own); one that
# was there before is someone's, and stays.
if [[ " ${need[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null &&
  systemctl is-active -q nginx 2>/dev/null; then
  systemctl disable --now nginx || true
fi

bash bench/get-peers.sh
if [ "${SKIP_BUILDIFIER:-0}" != 1 ]; then
  bash tools/install-buildifier.sh
fi
if [ "${SKIP_BAZEL:-0}" != 1 ]; then
  bash tools/install-bazel.sh
fi
echo "setup: done"
