#!/usr/bin/env bash
# Writes a small OCI image layout for image.bzl (a stand-in for rules_oci, see there).
# Portable to Linux and macOS (GNU or BSD tar, sha256sum or shasum).
#
#   image.sh image OUT OS ARCH DIR FILE...    one layer holding the FILEs in DIR (by basename)
#   image.sh index OUT LAYOUT:OS:ARCH...      an image index of such layouts
set -euo pipefail
export LC_ALL=C TZ=UTC

mode=$1 out=$2
shift 2
mkdir -p "$out/blobs/sha256"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

sha256() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# add_blob FILE: stores FILE under its digest; sets $digest and $size.
add_blob() {
  digest="sha256:$(sha256 "$1")"
  size="$(wc -c < "$1" | tr -d ' ')"
  [ -e "$out/blobs/sha256/${digest#sha256:}" ] || cp "$1" "$out/blobs/sha256/${digest#sha256:}"
}

# descriptor MEDIA_TYPE [EXTRA_JSON]: a descriptor of the last add_blob.
descriptor() {
  printf '{"mediaType":"%s","digest":"%s","size":%s%s}' "$1" "$digest" "$size" "${2:+,$2}"
}

# write_index_json MEDIA_TYPE: the layout's index.json, pointing at the last add_blob.
write_index_json() {
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}\n' \
    "$(descriptor "$1")" > "$out/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}\n' > "$out/oci-layout"
}

case "$mode" in
image)
  os=$1 arch=$2 dir=${3#/}
  shift 3
  mkdir -p "$tmp/root/$dir"
  for f in "$@"; do cp "$f" "$tmp/root/$dir/"; done
  # Same bytes on every run: fixed times, owners and modes.
  find "$tmp/root" -type d -exec chmod 755 {} + -o -type f -exec chmod 644 {} +
  find "$tmp/root" -exec touch -h -t 198001010000 {} +
  if tar --version 2>/dev/null | grep -q 'GNU tar'; then
    owner=(--owner=0 --group=0 --numeric-owner)
  else
    owner=(--uid 0 --gid 0 --numeric-owner)
  fi
  (cd "$tmp/root" && find . -mindepth 1 | sort > "$tmp/list" &&
    COPYFILE_DISABLE=1 tar --format=ustar "${owner[@]}" --no-recursion -cf "$tmp/layer.tar" -T "$tmp/list")
  diff_id="sha256:$(sha256 "$tmp/layer.tar")"
  gzip -n -9 -c "$tmp/layer.tar" > "$tmp/layer.tar.gz"
  add_blob "$tmp/layer.tar.gz"
  layer="$(descriptor application/vnd.oci.image.layer.v1.tar+gzip)"
  printf '{"architecture":"%s","os":"%s","config":{},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$arch" "$os" "$diff_id" > "$tmp/config.json"
  add_blob "$tmp/config.json"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
    "$(descriptor application/vnd.oci.image.config.v1+json)" "$layer" > "$tmp/manifest.json"
  add_blob "$tmp/manifest.json"
  write_index_json application/vnd.oci.image.manifest.v1+json
  ;;
index)
  manifests=""
  for spec in "$@"; do
    layout=${spec%%:*} platform=${spec#*:}
    for blob in "$layout"/blobs/sha256/*; do
      [ -e "$out/blobs/sha256/${blob##*/}" ] || cp "$blob" "$out/blobs/sha256/"
    done
    # The image's index.json is ours (write_index_json): one descriptor.
    digest="$(sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' "$layout/index.json")"
    size="$(sed -n 's/.*"size":\([0-9]*\).*/\1/p' "$layout/index.json")"
    manifests="$manifests${manifests:+,}$(descriptor application/vnd.oci.image.manifest.v1+json \
      "\"platform\":{\"architecture\":\"${platform#*:}\",\"os\":\"${platform%%:*}\"}")"
  done
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
    "$manifests" > "$tmp/index.json"
  add_blob "$tmp/index.json"
  write_index_json application/vnd.oci.image.index.v1+json
  ;;
*)
  echo "image.sh: unknown mode $mode" >&2
  exit 1
  ;;
esac
