# Sourced by the project's shell test suites (e2e/, examples/): reading an OCI layout, and
# reading a registry back with curl, a client we did not write. Needs $REGISTRY (host:port, plain
# HTTP; tools/lib/registry.sh sets it) and $tmp, a scratch directory of the caller's.

OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
OCI_INDEX=application/vnd.oci.image.index.v1+json
DOCKER_MANIFEST=application/vnd.docker.distribution.manifest.v2+json
DOCKER_LIST=application/vnd.docker.distribution.manifest.list.v2+json
ACCEPT="$OCI_MANIFEST,$OCI_INDEX,$DOCKER_MANIFEST,$DOCKER_LIST"

# layout_digest DIR: the digest index.json of the layout DIR names.
layout_digest() { sed -n 's/.*"digest":"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' "$1/index.json"; }

# manifest REPO REF: GETs a manifest; sets $status, $digest (Docker-Content-Digest),
# $content_type, and leaves the body in $tmp/body.
manifest() {
  local headers="$tmp/headers"
  status="$(curl -sS -o "$tmp/body" -D "$headers" -w '%{http_code}' -H "Accept: $ACCEPT" \
    "http://$REGISTRY/v2/$1/manifests/$2")"
  digest="$(sed -n 's/^docker-content-digest: *\([^[:space:]]*\).*/\1/Ip' "$headers")"
  content_type="$(sed -n 's/^content-type: *\([^[:space:];]*\).*/\1/Ip' "$headers")"
}

# has_manifest REPO REF DIGEST MEDIA_TYPE: the registry serves REF with that digest and type, and
# the body hashes to DIGEST. The body is left in $tmp/body.
has_manifest() {
  manifest "$1" "$2"
  [ "$status" = 200 ] || { echo "GET $1:$2: HTTP $status: $(head -c 300 "$tmp/body")"; return 1; }
  [ "$digest" = "$3" ] || { echo "GET $1:$2: Docker-Content-Digest $digest, want $3"; return 1; }
  [ "$content_type" = "$4" ] || { echo "GET $1:$2: Content-Type $content_type, want $4"; return 1; }
  local body_digest
  body_digest="sha256:$(sha256sum "$tmp/body" | cut -d' ' -f1)"
  [ "$body_digest" = "$3" ] || { echo "GET $1:$2: body hashes to $body_digest, want $3"; return 1; }
}

# lacks_manifest REPO REF: the registry does not know REF.
lacks_manifest() {
  manifest "$1" "$2"
  [ "$status" = 404 ] || { echo "GET $1:$2: HTTP $status, want 404"; return 1; }
}

# has_blob REPO DIGEST: the registry has the blob in REPO (HEAD), and serves it (GET) with bytes
# that hash to DIGEST.
has_blob() {
  local status got
  status="$(curl -sS -o /dev/null -I -w '%{http_code}' "http://$REGISTRY/v2/$1/blobs/$2")"
  [ "$status" = 200 ] || { echo "HEAD $1 blob $2: HTTP $status"; return 1; }
  status="$(curl -sS -L -o "$tmp/blob" -w '%{http_code}' "http://$REGISTRY/v2/$1/blobs/$2")"
  [ "$status" = 200 ] || { echo "GET $1 blob $2: HTTP $status"; return 1; }
  got="sha256:$(sha256sum "$tmp/blob" | cut -d' ' -f1)"
  [ "$got" = "$2" ] || { echo "GET $1 blob $2: the bytes hash to $got"; return 1; }
}

# no_tags REPO: the repository has no tags (distribution answers NAME_UNKNOWN for a repository
# that holds manifests but no tags).
no_tags() {
  local body
  body="$(curl -sS "http://$REGISTRY/v2/$1/tags/list")"
  grep -Eq '"tags":(null|\[\])|"NAME_UNKNOWN"' <<<"$body" || { echo "tags/list: $body"; return 1; }
}
