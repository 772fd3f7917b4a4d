#!/usr/bin/env bash
# Writes a small OCI image layout, byte for byte the same on every run, for the
# e2e tests (test-only: real images come from rules_oci or similar).
#
#   make_layout.sh image OUT OS ARCH CORRUPT SIZE CONTENT...   one layer per CONTENT
#   make_layout.sh index OUT IMAGE_DIR:OS:ARCH...         an index of images
#
# CORRUPT=1 overwrites the last byte of the first layer blob after the fact:
# same size, wrong hash, a corrupt layout for the failure tests. SIZE=0 makes
# each layer a gzipped tar of CONTENT; SIZE=N an uncompressed tar of CONTENT
# repeated to N bytes (large layers that stay large, for byte counts).
set -euo pipefail
export LC_ALL=C TZ=UTC

mode=$1 out=$2
shift 2
mkdir -p "$out/blobs/sha256"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# add_blob FILE: stores FILE under its digest; sets $digest and $size.
add_blob() {
  digest="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  size="$(wc -c < "$1" | tr -d ' ')"
  cp "$1" "$out/blobs/sha256/${digest#sha256:}"
}

# descriptor MEDIA_TYPE [EXTRA_JSON]: a descriptor of the last add_blob.
descriptor() {
  printf '{"mediaType":"%s","digest":"%s","size":%s%s}' "$1" "$digest" "$size" "${2:+,$2}"
}

# write_index_json MEDIA_TYPE: index.json pointing at the last add_blob.
write_index_json() {
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}\n' \
    "$(descriptor "$1")" > "$out/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}\n' > "$out/oci-layout"
}

case "$mode" in
image)
  os=$1 arch=$2 corrupt=$3 size=$4
  shift 4
  layers="" diff_ids="" n=0 first_layer=""
  for content in "$@"; do
    n=$((n + 1))
    mkdir -p "$tmp/l$n"
    if [ "$size" = 0 ]; then
      printf '%s\n' "$content" > "$tmp/l$n/layer$n.txt"
    else
      # yes ends on SIGPIPE once head has its bytes: no failure of the pipeline's.
      { yes "$content" || true; } | head -c "$size" > "$tmp/l$n/layer$n.txt"
    fi
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=u=rw,go=r \
      -C "$tmp/l$n" -cf "$tmp/l$n.tar" "layer$n.txt"
    diff_ids+="${diff_ids:+,}\"sha256:$(sha256sum "$tmp/l$n.tar" | cut -d' ' -f1)\""
    if [ "$size" = 0 ]; then
      gzip -n -9 -c "$tmp/l$n.tar" > "$tmp/l$n.layer"
      media_type=application/vnd.oci.image.layer.v1.tar+gzip
    else
      mv "$tmp/l$n.tar" "$tmp/l$n.layer"
      media_type=application/vnd.oci.image.layer.v1.tar
    fi
    add_blob "$tmp/l$n.layer"
    first_layer="${first_layer:-$digest}"
    layers+="${layers:+,}$(descriptor "$media_type")"
  done
  printf '{"architecture":"%s","os":"%s","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$arch" "$os" "$diff_ids" > "$tmp/config.json"
  add_blob "$tmp/config.json"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
    "$(descriptor application/vnd.oci.image.config.v1+json)" "$layers" > "$tmp/manifest.json"
  add_blob "$tmp/manifest.json"
  write_index_json application/vnd.oci.image.manifest.v1+json
  if [ "$corrupt" = 1 ]; then
    f="$out/blobs/sha256/${first_layer#sha256:}"
    printf '\377' | dd of="$f" bs=1 seek=$(($(wc -c < "$f") - 1)) conv=notrunc status=none
  fi
  ;;
index)
  manifests=""
  for spec in "$@"; do
    dir=${spec%%:*} platform=${spec#*:}
    cp -n "$dir"/blobs/sha256/* "$out/blobs/sha256/"
    # The image's index.json is ours (see write_index_json): one descriptor.
    digest="$(sed -n 's/.*"digest":"\(sha256:[0-9a-f]*\)".*/\1/p' "$dir/index.json")"
    size="$(sed -n 's/.*"size":\([0-9]*\).*/\1/p' "$dir/index.json")"
    manifests+="${manifests:+,}$(descriptor application/vnd.oci.image.manifest.v1+json \
      "\"platform\":{\"architecture\":\"${platform#*:}\",\"os\":\"${platform%%:*}\"}")"
  done
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
    "$manifests" > "$tmp/index.json"
  add_blob "$tmp/index.json"
  write_index_json application/vnd.oci.image.index.v1+json
  ;;
*)
  echo "make_layout.sh: unknown mode $mode" >&2
  exit 1
  ;;
esac
