#!/usr/bin/env bash
# Release steps of rules_oci_push: the oci-push binaries, the integrity table the module
# extension reads, and the source archive the Bazel Central Registry points at.
# docs/releasing.md tells the whole process; .github/workflows/release.yml runs it on a tag.
#
#   tools/release.sh [--base-url URL] VERSION OUTDIR
#       What one Linux x86_64 machine can do: `check`, `build linux_amd64`, then `table`.
#   tools/release.sh check VERSION
#       VERSION is the one of Cargo.toml, MODULE.bazel, the install snippet (examples/MODULE.bazel,
#       README.md) and has a CHANGELOG.md section; rules/private/versions.bzl is the generated
#       source-checkout table.
#   tools/release.sh build VERSION OUTDIR PLATFORM
#       Builds oci-push for PLATFORM (linux_amd64, linux_arm64, macos_amd64, macos_arm64,
#       windows_amd64) into OUTDIR/oci-push-VERSION-<os>-<cpu>[.exe], with a .sha256 beside it.
#       Linux and Windows binaries link the C runtime statically; on Linux the script checks it.
#   tools/release.sh table [--base-url URL] [--require-all] VERSION OUTDIR
#       Writes OUTDIR/versions.bzl, the table of the binaries present in OUTDIR (URL and sha256),
#       and OUTDIR/rules_oci_push-vVERSION.tar.gz, the source tree with that table in place of
#       rules/private/versions.bzl. --require-all fails unless all five binaries are there.
#   tools/release.sh notes VERSION
#       Prints VERSION's section of CHANGELOG.md (the release notes).
#   tools/release.sh checkout-table
#       Rewrites rules/private/versions.bzl as a source checkout has it: no release binaries.
#
# URLs are BASE/<artifact>. BASE is --base-url (or $RELEASE_BASE_URL), for example
# file:///abs/dir for a test; by default
# https://github.com/$GITHUB_REPOSITORY/releases/download/vVERSION, where GITHUB_REPOSITORY
# (owner/name, set by GitHub Actions) defaults to the repository in .bcr/metadata.template.json.
# Needs bash 3.2 or later (macOS runners), git, and sha256sum or shasum; `build` on Linux also
# `file`, and `table` GNU tar and gzip (it runs on Linux).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prog="tools/release.sh"

# The platforms with release binaries; rules/private/versions.bzl (PLATFORMS) lists those a
# user may name, a superset.
RELEASE_PLATFORMS="linux_amd64 linux_arm64 macos_amd64 macos_arm64 windows_amd64"

die() {
  echo "$prog: $*" >&2
  exit 1
}

cargo_target() {
  case "$1" in
    linux_amd64) echo x86_64-unknown-linux-gnu ;;
    linux_arm64) echo aarch64-unknown-linux-gnu ;;
    macos_amd64) echo x86_64-apple-darwin ;;
    macos_arm64) echo aarch64-apple-darwin ;;
    windows_amd64) echo x86_64-pc-windows-msvc ;;
    *) die "unknown platform '$1' (one of: $RELEASE_PLATFORMS)" ;;
  esac
}

# artifact VERSION PLATFORM: the file name of a release binary.
artifact() {
  local exe=""
  case "$2" in windows_*) exe=.exe ;; esac
  echo "oci-push-$1-$(echo "$2" | tr _ -)$exe"
}

sha256_of() {
  if command -v sha256sum >/dev/null; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# --- versions ----------------------------------------------------------------------

cargo_version() { sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1; }
# module_version FILE: the version in FILE's module() call.
# shellcheck source=lib/version.sh
source "$root/tools/lib/version.sh"
# The version in the install snippet of FILE (examples/MODULE.bazel, README.md).
snippet_version() { sed -n 's/^bazel_dep(name = "rules_oci_push", version = "\(.*\)")$/\1/p' "$1" | head -n 1; }

check() {
  local v=$1 problems="" got
  echo "$v" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$' ||
    die "version '$v' is not semantic (MAJOR.MINOR.PATCH[-PRERELEASE]), and the tag is v<version>"
  got="$(cargo_version)"
  [ "$got" = "$v" ] || problems="$problems\n  Cargo.toml [package] version is '$got'"
  got="$(module_version "$root/MODULE.bazel")"
  [ "$got" = "$v" ] || problems="$problems\n  MODULE.bazel module(version) is '$got'"
  for f in examples/MODULE.bazel README.md; do
    got="$(snippet_version "$root/$f")"
    [ "$got" = "$v" ] || problems="$problems\n  $f install snippet has bazel_dep(... version = \"$got\")"
  done
  grep -q "^## \[$v\]" "$root/CHANGELOG.md" || problems="$problems\n  CHANGELOG.md has no '## [$v]' section"
  if ! checkout_table | cmp -s - "$root/rules/private/versions.bzl"; then
    problems="$problems\n  rules/private/versions.bzl is not what this script generates (run: $prog checkout-table)"
  fi
  [ -z "$problems" ] || die "$(printf "not releasable as %s:%b" "$v" "$problems")"
  if ! grep -Eq "^## \[$v\] - [0-9]{4}-[0-9]{2}-[0-9]{2}$" "$root/CHANGELOG.md"; then
    echo "$prog: warning: CHANGELOG.md's '## [$v]' heading has no date (## [$v] - YYYY-MM-DD)" >&2
  fi
  echo "$prog: version $v agrees: Cargo.toml, MODULE.bazel, install snippets, CHANGELOG.md"
}

notes() {
  local v=$1 text
  text="$(awk -v v="$v" '
    index($0, "## [" v "]") == 1 { on = 1; next }
    on && /^## \[/ { exit }
    on && /^\[[^]]*\]: / { exit }
    on { print }
  ' "$root/CHANGELOG.md" | sed -e '/./,$!d')"
  [ -n "$text" ] || die "CHANGELOG.md has no text under '## [$v]'"
  printf '%s\n' "$text"
}

# --- build -------------------------------------------------------------------------

build() {
  local v=$1 out=$2 platform=$3 target name host bin flags=""
  target="$(cargo_target "$platform")"
  name="$(artifact "$v" "$platform")"
  mkdir -p "$out"
  case "$platform" in
    # glibc and the MSVC runtime linked in: the binary runs on any Linux (kernel 3.2+) or
    # Windows of its CPU. (macOS always links libSystem dynamically, which every macOS has.)
    linux_* | windows_*) flags="-C target-feature=+crt-static" ;;
  esac
  echo "$prog: cargo build --release --locked --target $target ${flags:+(RUSTFLAGS=$flags)}"
  (cd "$root" && RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }$flags" cargo build --release --locked --target "$target")
  case "$platform" in windows_*) bin=oci-push.exe ;; *) bin=oci-push ;; esac
  cp "${CARGO_TARGET_DIR:-$root/target}/$target/release/$bin" "$out/$name"
  chmod 755 "$out/$name"

  case "$platform" in
    linux_*)
      # Static (a static PIE is fine), stripped (the release profile strips).
      local what
      command -v file >/dev/null || die "checking $name needs the file command (Debian: apt-get install file)"
      what="$(file -b "$out/$name")"
      echo "$what" | grep -Eq 'statically linked|static-pie linked' || die "$name is not statically linked: $what"
      echo "$what" | grep -q ', stripped' || die "$name is not stripped: $what"
      if [ "$(uname -s)" = Linux ] && command -v ldd >/dev/null; then
        ldd "$out/$name" 2>&1 | grep -Eq 'not a dynamic executable|statically linked' ||
          die "ldd finds shared libraries in $name: $(ldd "$out/$name" 2>&1)"
      fi
      ;;
  esac
  host="$(rustc -vV | sed -n 's/^host: //p')"
  if [ "$host" = "$target" ]; then
    local said
    said="$("$out/$name" --version)"
    case "$said" in
      "oci-push $v "*) ;;
      *) die "$name --version says '$said', want 'oci-push $v (commit ...)'" ;;
    esac
    echo "$prog: $said"
  fi
  (cd "$out" && echo "$(sha256_of "$name")  $name" > "$name.sha256")
  echo "$prog: $out/$name ($(wc -c < "$out/$name" | tr -d ' ') bytes), sha256 $(cut -d' ' -f1 "$out/$name.sha256")"
}

# --- the integrity table -------------------------------------------------------------

# write_table VERSION [ARTIFACT_DIR BASE_URL]: prints rules/private/versions.bzl. Without
# ARTIFACT_DIR, the source-checkout form: no version, no binaries.
write_table() {
  local v=$1 dir=${2:-} base=${3:-} p name
  cat <<EOF
# Generated by tools/release.sh: do not edit. A source checkout has no release
# binaries; a release's source archive carries the table of its own (docs/releasing.md).
"""Release binaries of \`oci-push\`, one per platform, pinned by sha256.

The module extension (\`//rules:extensions.bzl\`) turns each entry of
\`PUSHER_BINARIES\` into a repository that downloads only when a build needs
that platform's binary. A release fills this table with the binaries built
from the same commit, so the module version and the binary version move
together.
"""

# The version of rules_oci_push these binaries were built for; "" in a source
# checkout.
PUSHER_VERSION = "$v"

# Every platform a binary can be named for, with the constraint values a
# toolchain for it requires. Keys are \`<os>_<cpu>\`, as used by the extension's
# \`platform\` attribute and by this table.
PLATFORMS = {
    "linux_amd64": struct(os = "linux", cpu = "x86_64", exe = ""),
    "linux_arm64": struct(os = "linux", cpu = "aarch64", exe = ""),
    "macos_amd64": struct(os = "macos", cpu = "x86_64", exe = ""),
    "macos_arm64": struct(os = "macos", cpu = "aarch64", exe = ""),
    "windows_amd64": struct(os = "windows", cpu = "x86_64", exe = ".exe"),
    "windows_arm64": struct(os = "windows", cpu = "aarch64", exe = ".exe"),
}

# platform -> struct(url, sha256). A platform missing here falls through to the
# "no pusher" toolchain, whose error names the platform and the ways out
# (oci_push.pusher(url = ..., sha256 = ...) or oci_push.pusher(label = ...)).
EOF
  if [ -z "$dir" ]; then
    echo "PUSHER_BINARIES = {}"
    return
  fi
  echo "PUSHER_BINARIES = {"
  for p in $RELEASE_PLATFORMS; do
    name="$(artifact "$v" "$p")"
    [ -f "$dir/$name" ] || continue
    cat <<EOF
    "$p": struct(
        url = "$base/$name",
        sha256 = "$(sha256_of "$dir/$name")",
    ),
EOF
  done
  echo "}"
}

checkout_table() { write_table ""; }

default_base_url() {
  local v=$1 repo=${GITHUB_REPOSITORY:-}
  if [ -z "$repo" ]; then
    repo="$(sed -n 's/.*"github:\([^"]*\)".*/\1/p' "$root/.bcr/metadata.template.json" | head -n 1)"
  fi
  case "$repo" in
    "" | OWNER/* | */REPO) die "no GitHub repository for the download URLs: set GITHUB_REPOSITORY=owner/name, fill in .bcr/metadata.template.json, or pass --base-url" ;;
  esac
  echo "https://github.com/$repo/releases/download/v$v"
}

# source_archive VERSION OUTDIR TABLE: OUTDIR/rules_oci_push-vVERSION.tar.gz holding the files
# git knows (tracked, or untracked and not ignored), under rules_oci_push-VERSION/, with TABLE
# as rules/private/versions.bzl. Byte-for-byte reproducible: sorted, owner 0, mtime of HEAD.
source_archive() {
  local v=$1 out=$2 table=$3 prefix="rules_oci_push-$1" stage mtime archive skip=""
  archive="$out/rules_oci_push-v$v.tar.gz"
  # OUTDIR inside the checkout (the workflow's dist/) is no source.
  case "$out/" in "$root"/*) skip="${out#"$root"/}/" ;; esac
  stage="$(mktemp -d)"
  mkdir -p "$stage/$prefix"
  (cd "$root" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
      case "$f" in "$skip"*) [ -z "$skip" ] || continue ;; esac
      if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
    done |
    tar --null -T - -cf -) | tar -xf - -C "$stage/$prefix"
  cp "$table" "$stage/$prefix/rules/private/versions.bzl"
  mtime="$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)"
  tar --sort=name --mtime="@$mtime" --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$stage" -cf - "$prefix" | gzip -n -9 > "$archive"
  rm -rf "$stage"
  (cd "$out" && echo "$(sha256_of "$(basename "$archive")")  $(basename "$archive")" > "$(basename "$archive").sha256")
  echo "$prog: $archive (strip_prefix $prefix)"
  if command -v openssl >/dev/null; then
    echo "$prog: its BCR integrity: sha256-$(openssl dgst -sha256 -binary "$archive" | openssl base64 -A)"
  fi
}

table() {
  local v=$1 out=$2 base=$3 require_all=$4 p missing="" present=""
  [ -d "$out" ] || die "no directory $out"
  out="$(cd "$out" && pwd)"
  [ -n "$base" ] || base="$(default_base_url "$v")"
  base="${base%/}"
  for p in $RELEASE_PLATFORMS; do
    local name
    name="$(artifact "$v" "$p")"
    if [ ! -f "$out/$name" ]; then
      missing="$missing $p"
      continue
    fi
    # A .sha256 from the build job must still hold after the transfer.
    if [ -f "$out/$name.sha256" ] && [ "$(cut -d' ' -f1 "$out/$name.sha256")" != "$(sha256_of "$out/$name")" ]; then
      die "$name does not match $name.sha256"
    fi
    present="$present $p"
  done
  if [ -n "$missing" ]; then
    [ "$require_all" = 0 ] || die "no binary in $out for:$missing (want $(artifact "$v" '<os>_<cpu>') for each of: $RELEASE_PLATFORMS)"
    echo "$prog: warning: no binary for:$missing; the table leaves them out (builds for them fail, naming the ways out)" >&2
  fi
  [ -n "$present" ] || die "no release binary in $out"
  write_table "$v" "$out" "$base" > "$out/versions.bzl"
  echo "$prog: $out/versions.bzl: binaries for$present, from $base/"
  source_archive "$v" "$out" "$out/versions.bzl"
}

# --- command line --------------------------------------------------------------------

base_url="${RELEASE_BASE_URL:-}"
require_all=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --base-url) [ $# -ge 2 ] || die "--base-url needs a URL"; base_url=$2; shift 2 ;;
    --base-url=*) base_url=${1#*=}; shift ;;
    --require-all) require_all=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see $prog --help)" ;;
    *) args+=("$1"); shift ;;
  esac
done
set -- ${args[@]+"${args[@]}"}

case "${1:-}" in
  check) [ $# = 2 ] || die "usage: $prog check VERSION"; check "$2" ;;
  notes) [ $# = 2 ] || die "usage: $prog notes VERSION"; notes "$2" ;;
  build) [ $# = 4 ] || die "usage: $prog build VERSION OUTDIR PLATFORM"; build "$2" "$3" "$4" ;;
  table) [ $# = 3 ] || die "usage: $prog table [--base-url URL] [--require-all] VERSION OUTDIR"; table "$2" "$3" "$base_url" "$require_all" ;;
  checkout-table) [ $# = 1 ] || die "usage: $prog checkout-table"; checkout_table > "$root/rules/private/versions.bzl" ;;
  "") die "usage: $prog [--base-url URL] VERSION OUTDIR, or a step: check, build, table, notes, checkout-table (see --help)" ;;
  *)
    [ $# = 2 ] || die "usage: $prog [--base-url URL] VERSION OUTDIR (see --help)"
    check "$1"
    build "$1" "$2" linux_amd64
    table "$1" "$2" "$base_url" "$require_all"
    ;;
esac
