#!/usr/bin/env bash
# Fetches the benchmark's peers, crane (go-containerregistry, the engine behind rules_oci's
# oci_push) and oras, into DIR from Debian sid packages, without touching the machine's own apt
# sources, lists or installed packages: a private apt state under DIR/.apt, `apt-get download`,
# `dpkg -x`. Both are static Go binaries, so nothing else is needed.
#
# usage: bench/get-peers.sh [DIR]     (default: bench/.peers)   -> DIR/crane, DIR/oras
# Idempotent: does nothing when both are already there. Needs apt-get, dpkg and network access
# to deb.debian.org (or the mirror given in DEBIAN_MIRROR).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dir=${1:-$here/.peers}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [[ -x $dir/crane && -x $dir/oras ]]; then
  echo "crane and oras already in $dir"
  exit 0
fi
for tool in apt-get dpkg; do
  command -v "$tool" >/dev/null || { echo "get-peers.sh: needs $tool (Debian or Ubuntu)" >&2; exit 1; }
done
[[ -r $keyring ]] || { echo "get-peers.sh: needs $keyring (package debian-archive-keyring)" >&2; exit 1; }

state=$dir/.apt
rm -rf "$state/debs" "$state/root"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/parts" "$state/debs" "$state/root"
cat >"$state/parts/sid.sources" <<SRC
Types: deb
URIs: $mirror
Suites: sid
Components: main
Signed-By: $keyring
SRC
# Every path apt would write to points into $state; the machine's sources are not read.
apt_opts=(
  -o Dir::Etc::SourceList=/dev/null
  -o "Dir::Etc::SourceParts=$state/parts"
  -o Dir::Etc::Preferences=/dev/null
  -o "Dir::Etc::PreferencesParts=$state/parts"
  -o "Dir::State::Lists=$state/lists"
  -o "Dir::Cache=$state/cache"
  -o "Dir::Cache::pkgcache=$state/cache/pkgcache.bin"
  -o "Dir::Cache::srcpkgcache=$state/cache/srcpkgcache.bin"
  -o Acquire::Check-Valid-Until=false
  -o APT::Sandbox::User=root
)
echo "fetching crane and oras from Debian sid ($mirror) into $dir"
apt-get "${apt_opts[@]}" update -q >/dev/null
(cd "$state/debs" && apt-get "${apt_opts[@]}" download crane oras >/dev/null)
: >"$state/versions.new"
for deb in "$state"/debs/*.deb; do
  dpkg -x "$deb" "$state/root"
  # crane built by Debian does not know its own version: keep the package's.
  echo "$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)" >>"$state/versions.new"
done
install -m 755 "$state/root/usr/bin/crane" "$dir/crane"
install -m 755 "$state/root/usr/bin/oras" "$dir/oras"
mv "$state/versions.new" "$dir/versions.txt"
rm -rf "$state/debs" "$state/root"
cat "$dir/versions.txt"
echo "crane and oras are in $dir"
