#!/usr/bin/env bash
# End-to-end tests of rules_oci_push: real Bazel, a real registry
# (docker-registry, i.e. CNCF distribution, on 127.0.0.1) and checks made with
# curl and oras, clients we did not write.
#
#   cargo build --release && e2e/test.sh
#
# Needs: bazel, git, docker-registry, curl and python3 (tools/setup.sh installs them); oras
# at bench/.peers/oras (bash bench/get-peers.sh fetches it) or $ORAS; the
# pusher at target/release/oci-push (or $OCI_PUSH, a path inside the checkout:
# Bazel runs in a chroot that sees only the checkout). Prints one line per check
# and ends with "N passed, M failed"; exits non-zero if any check failed.
set -uo pipefail

root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)"
e2e="$root/e2e"
pusher="$(realpath "${OCI_PUSH:-$root/target/release/oci-push}")"

for tool in bazel git docker-registry curl python3; do
  command -v "$tool" >/dev/null || { echo "e2e: $tool not found (run tools/setup.sh)" >&2; exit 1; }
done
[ -x "$pusher" ] || { echo "e2e: no pusher at $pusher: run cargo build --release" >&2; exit 1; }
# The referrers' independent reader: a missing oras fails the run (no skipping).
oras="${ORAS:-$root/bench/.peers/oras}"
[ -x "$oras" ] || { echo "e2e: no oras at $oras: run bash bench/get-peers.sh (or set ORAS)" >&2; exit 1; }

# Host-only scratch (registry storage, logs) and, for files handed to
# `bazel run` targets, a folder inside the checkout (git-ignored).
tmp="$(mktemp -d)"
work="$e2e/.tmp/test"
rm -rf "$work" && mkdir -p "$work"

# shellcheck source=../tools/lib/checks.sh
source "$root/tools/lib/checks.sh"
# shellcheck source=../tools/lib/registry.sh
source "$root/tools/lib/registry.sh"
# shellcheck source=../tools/lib/oci.sh
source "$root/tools/lib/oci.sh"
cleanup() {
  stop_registry
  (cd "$e2e" && bazel shutdown) >/dev/null 2>&1
  (cd "$root" && bazel shutdown) >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

# --- registry ---------------------------------------------------------------

# With its access log: what reached the registry, read back from the registry itself.
start_registry "$tmp" --access-log || exit 1
echo "registry: http://$REGISTRY (storage $tmp/storage)"

# --- build --------------------------------------------------------------------

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
# json FILE EXPR: EXPR, a Python expression over `d`, the JSON value of FILE; a list prints a
# line per item.
json() {
  python3 - "$@" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
for x in v if isinstance(v, list) else [v]:
    print(x)
EOF
}

check "bazel build //... (layouts, run-scripts, build-time verification)" \
  bazel build //...

# The expected digests come from the layouts themselves (index.json of each).
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

# mount_from: e2e/mounted, a new repository, gets the blobs of e2e/image (pushed above) by
# cross-repository mount; the registry then serves them there, and no blob byte was sent.
check "bazel run //:push_mounted (mount_from = [\"$REGISTRY/e2e/image\"])" \
  bazel_run "$tmp/mounted.out" //:push_mounted
check "push_mounted prints REPO@DIGEST last" \
  equals "last line" "$(last_line "$tmp/mounted.out")" "$REGISTRY/e2e/mounted@$image_digest"
check "mount_from: registry has e2e/mounted:latest (OCI manifest)" \
  has_manifest e2e/mounted latest "$image_digest" "$OCI_MANIFEST"
image_blobs="$(grep -o 'sha256:[0-9a-f]\{64\}' "bazel-bin/image/blobs/sha256/${image_digest#sha256:}")"
check "the image has a config and two layers" equals "blobs" "$(grep -c . <<<"$image_blobs")" 3
for blob in $image_blobs; do
  check "mount_from: e2e/mounted serves blob ${blob:0:19}... (HEAD, and GET hashing to it)" \
    has_blob e2e/mounted "$blob"
  check "mount_from: the pusher mounted ${blob:0:19}... rather than uploading it" \
    grep -Eq "^ +mounted +$blob " "$tmp/mounted.out.err"
done
check "mount_from: the summary says 0 bytes sent, all 3 blobs mounted" \
  grep -Eq "^ +blobs: +sent 0 B \(0\), mounted [^(]+ \(3\), already there 0 B \(0\)$" "$tmp/mounted.out.err"

# repositories: each destination gets the image and its tags; the second mounts every blob
# from the first, so no blob byte goes up twice.
check "bazel run //:push_mirrors (repositories = [e2e/primary, e2e/mirror])" \
  bazel_run "$tmp/mirrors.out" //:push_mirrors
check "push_mirrors prints both references on its last line" \
  equals "last line" "$(last_line "$tmp/mirrors.out")" \
  "$REGISTRY/e2e/primary@$image_digest $REGISTRY/e2e/mirror@$image_digest"
for repo in e2e/primary e2e/mirror; do
  check "repositories: registry has $repo:mirrored" has_manifest "$repo" mirrored "$image_digest" "$OCI_MANIFEST"
done
check "repositories: the summary says the mirror mounted all 3 blobs from the primary" \
  grep -Eq "^ +blobs: +sent 0 B \(0\), mounted [^(]+ \(3\), already there 0 B \(0\)$" "$tmp/mirrors.out.err"
check "repositories: the registry's log has the mirror's 3 mounts from the primary (201), and no other upload" \
  equals "mirror uploads" "$(registry_requests "$tmp" "*" /v2/e2e/mirror/blobs/uploads/ |
    sed -E 's/mount=sha256(:|%3A)[0-9a-f]{64}/mount=DIGEST/')" \
  "$(printf '201 /v2/e2e/mirror/blobs/uploads/?mount=DIGEST&from=e2e%%2Fprimary\n%.0s' 1 2 3)"
check "repositories: one line says both were pushed" \
  grep -qx "destinations: pushed $REGISTRY/e2e/primary, $REGISTRY/e2e/mirror" "$tmp/mirrors.out.err"
check "bazel run //:push_mirrors -- -r e2e/only-a -r e2e/only-b (the flags replace the list)" \
  bazel_run "$tmp/mirrors-override.out" //:push_mirrors -- -r "$REGISTRY/e2e/only-a" -r "$REGISTRY/e2e/only-b" -t flags
for repo in e2e/only-a e2e/only-b; do
  check "override: registry has $repo:flags" has_manifest "$repo" flags "$image_digest" "$OCI_MANIFEST"
done
check "override: e2e/primary did not get the tag flags" lacks_manifest e2e/primary flags
check "bazel run //:push_repository_lines (a repository_file of two lines)" \
  bazel_run "$tmp/lines.out" //:push_repository_lines
for repo in e2e/file-one e2e/file-two; do
  check "repository_file lines: registry has $repo:lines" has_manifest "$repo" lines "$image_digest" "$OCI_MANIFEST"
done
file_requests="$(registry_requests "$tmp" "*" /v2/e2e/file- | wc -l)"
check "bazel run //:push_repository_lines -- -r e2e/instead (the flag replaces the file)" \
  bazel_run "$tmp/lines-override.out" //:push_repository_lines -- -r "$REGISTRY/e2e/instead"
check "override: registry has e2e/instead:lines" has_manifest e2e/instead lines "$image_digest" "$OCI_MANIFEST"
check "override: the last line names e2e/instead only" \
  equals "last line" "$(last_line "$tmp/lines-override.out")" "$REGISTRY/e2e/instead@$image_digest"
check "override: the registry's log has no request to the file's destinations since" \
  equals "requests" "$(registry_requests "$tmp" "*" /v2/e2e/file- | wc -l)" "$file_requests"

# --- referrers ------------------------------------------------------------------

# The SBOM and the provenance of :image (the rule's referrers), a signature (added at run time
# with --referrer), and an SBOM of the index's arm64 manifest. Each an artifact layout.
sbom_digest="$(layout_digest bazel-bin/sbom)"
provenance_digest="$(layout_digest bazel-bin/provenance)"
signature_digest="$(layout_digest bazel-bin/signature)"
arm64_sbom_digest="$(layout_digest bazel-bin/arm64_sbom)"
arm64_digest="$(layout_digest bazel-bin/image_arm64)"
image_hex="${image_digest#sha256:}"
# The referrers, as "DIGEST ARTIFACT_TYPE" lines, sorted: what each listing must show.
want_referrers="$(sort <<EOT
$sbom_digest application/spdx+json
$provenance_digest application/vnd.in-toto+json
EOT
)"
want_with_signature="$(sort <<EOT
$want_referrers
$signature_digest application/vnd.example.signature
EOT
)"
# discovered REPO@DIGEST: the referrers oras finds, in that form.
discovered() {
  "$oras" discover --plain-http --format json --depth 1 "$REGISTRY/$1" >"$tmp/discover.json" &&
    json "$tmp/discover.json" '["%s %s" % (r["digest"], r["artifactType"]) for r in d["referrers"]]' | sort
}
# fallback_index REPO SUBJECT: the referrers the fallback tag <alg>-<hex> of SUBJECT lists
# (curl: an OCI index), in that form; fails unless the tag names an OCI index.
fallback_index() {
  manifest "$1" "${2/:/-}"
  [ "$status" = 200 ] || { echo "GET $1:${2/:/-}: HTTP $status: $(head -c 300 "$tmp/body")"; return 1; }
  [ "$content_type" = "$OCI_INDEX" ] || { echo "GET $1:${2/:/-}: Content-Type $content_type, want $OCI_INDEX"; return 1; }
  json "$tmp/body" '["%s %s" % (m["digest"], m.get("artifactType")) for m in d["manifests"]]' | sort
}
# referrer_report JSON [FIELDS]: the pusher's --format json referrers, a line each with FIELDS
# (default: all but indexTag), sorted.
referrer_report() {
  local fields="${2:-digest artifactType subject outcome index indexChanged}"
  json "$1" "[' '.join(str(r[f]) for f in '$fields'.split()) for r in d['referrers']]" | sort
}

check "oci_artifact :sbom: artifactType, the empty config, one titled layer, annotation, subject :image" \
  equals "sbom manifest" "$(json "bazel-bin/sbom/blobs/sha256/${sbom_digest#sha256:}" \
    '[d["artifactType"], d["config"]["mediaType"], [(l["mediaType"], l["annotations"]) for l in d["layers"]], d["annotations"], d["subject"]["digest"]]')" \
  "$(printf '%s\n' application/spdx+json application/vnd.oci.empty.v1+json \
    "[('application/spdx+json', {'org.opencontainers.image.title': 'image.spdx.json'})]" \
    "{'org.opencontainers.image.description': 'SPDX SBOM of :image'}" "$image_digest")"
check "oci_artifact :arm64_sbom: the subject is the index's arm64 manifest, the layer application/octet-stream" \
  equals "arm64_sbom manifest" "$(json "bazel-bin/arm64_sbom/blobs/sha256/${arm64_sbom_digest#sha256:}" \
    '[d["subject"]["digest"], d["layers"][0]["mediaType"]]')" "$(printf '%s\n' "$arm64_digest" application/octet-stream)"

check "bazel run //:push_with_referrers -- --format json" \
  bazel_run "$tmp/referrers.json" //:push_with_referrers -- --format json
check "push_with_referrers: the JSON reports both referrers pushed, of :image, added to the fallback tag" \
  equals "referrers" "$(referrer_report "$tmp/referrers.json")" \
  "$(sed "s/\$/ $image_digest pushed tag True/" <<<"$want_referrers")"
check "push_with_referrers: the tag with-referrers names the image" \
  has_manifest e2e/referrers with-referrers "$image_digest" "$OCI_MANIFEST"
for referrer in "$sbom_digest" "$provenance_digest"; do
  check "registry has the referrer e2e/referrers@${referrer:0:19}... (OCI manifest)" \
    has_manifest e2e/referrers "$referrer" "$referrer" "$OCI_MANIFEST"
done
check "oras discover e2e/referrers@<image> lists the SBOM and the provenance, with their artifact types" \
  equals "oras discover" "$(discovered "e2e/referrers@$image_digest" 2>&1)" "$want_referrers"
check "curl: the fallback tag sha256-${image_hex:0:12}... is an OCI index of both referrers" \
  equals "fallback index" "$(fallback_index e2e/referrers "$image_digest" 2>&1)" "$want_referrers"
rm -rf "$tmp/pulled"
check "oras pull of the SBOM gives the genrule's file, by its title" \
  bash -c '"$1" pull --plain-http -o "$2" "$3" >/dev/null && cmp "$2/image.spdx.json" bazel-bin/image.spdx.json' \
  pull "$oras" "$tmp/pulled" "$REGISTRY/e2e/referrers@$sbom_digest"

check "re-run: bazel run //:push_with_referrers -- --format json" \
  bazel_run "$tmp/referrers-again.json" //:push_with_referrers -- --format json
# (The outcome is left out: a push PUTs a referrer's manifest again, and says "pushed".)
check "re-run: the JSON says the fallback index listed both already (indexChanged false)" \
  equals "referrers" "$(referrer_report "$tmp/referrers-again.json" "digest artifactType subject index indexChanged")" \
  "$(sed "s/\$/ $image_digest tag False/" <<<"$want_referrers")"
check "re-run: the fallback index still has 2 entries (no duplicates)" \
  equals "fallback index" "$(fallback_index e2e/referrers "$image_digest" 2>&1)" "$want_referrers"

check "bazel run //:push_with_referrers -- --dry-run --format json" \
  bazel_run "$tmp/referrers-dry.json" //:push_with_referrers -- --dry-run --format json
check "dry run: both referrers exist, and the fallback index would stay as it is" \
  equals "referrers" "$(referrer_report "$tmp/referrers-dry.json")" \
  "$(sed "s/\$/ $image_digest exists tag False/" <<<"$want_referrers")"
referrer_puts="$(registry_requests "$tmp" PUT /v2/e2e/referrers/ | wc -l)"
check "bazel run //:push_with_referrers -- --referrer bazel-bin/signature --dry-run" \
  bazel_run "$tmp/referrers-dry-signature.json" //:push_with_referrers -- \
  --referrer bazel-bin/signature --dry-run --format json
check "dry run: the signature would be pushed and added to the fallback index" \
  equals "signature" "$(referrer_report "$tmp/referrers-dry-signature.json" "digest outcome indexChanged" |
    grep "^$signature_digest ")" "$signature_digest wouldPush True"
check "dry run: the registry's log has no PUT since, and the signature is not there" \
  equals "PUTs" "$(registry_requests "$tmp" PUT /v2/e2e/referrers/ | wc -l)" "$referrer_puts"
check "dry run: the fallback index still lists the two" \
  equals "fallback index" "$(fallback_index e2e/referrers "$image_digest" 2>&1)" "$want_referrers"
check "dry run: no manifest e2e/referrers@<signature>" lacks_manifest e2e/referrers "$signature_digest"
check "bazel run //:push_with_referrers -- --referrer bazel-bin/signature (adds to the rule's)" \
  bazel_run "$tmp/referrers-added.json" //:push_with_referrers -- --referrer bazel-bin/signature --format json
check "--referrer: the JSON has the three, only the signature added to the fallback index" \
  equals "referrers" "$(referrer_report "$tmp/referrers-added.json" "digest artifactType subject index indexChanged")" \
  "$( (sed "s/\$/ $image_digest tag False/" <<<"$want_referrers"
    echo "$signature_digest application/vnd.example.signature $image_digest tag True") | sort)"
check "--referrer: the fallback index lists the three" \
  equals "fallback index" "$(fallback_index e2e/referrers "$image_digest" 2>&1)" "$want_with_signature"
check "--referrer: oras discover lists the three" \
  equals "oras discover" "$(discovered "e2e/referrers@$image_digest" 2>&1)" "$want_with_signature"

check "bazel run //:push_index_with_referrers -- --format json (an SBOM of the arm64 manifest)" \
  bazel_run "$tmp/index-referrers.json" //:push_index_with_referrers -- --format json
check "push_index_with_referrers: the SBOM's subject is the arm64 manifest" \
  equals "referrers" "$(referrer_report "$tmp/index-referrers.json")" \
  "$arm64_sbom_digest application/spdx+json $arm64_digest pushed tag True"
check "push_index_with_referrers: the tag multi names the index" \
  has_manifest e2e/index-referrers multi "$index_digest" "$OCI_INDEX"
check "oras discover e2e/index-referrers@<arm64 manifest> lists the SBOM" \
  equals "oras discover" "$(discovered "e2e/index-referrers@$arm64_digest" 2>&1)" \
  "$arm64_sbom_digest application/spdx+json"
check "curl: the arm64 manifest's fallback tag lists the SBOM" \
  equals "fallback index" "$(fallback_index e2e/index-referrers "$arm64_digest" 2>&1)" \
  "$arm64_sbom_digest application/spdx+json"
check "the index itself has no fallback tag (no referrer names it)" \
  lacks_manifest e2e/index-referrers "sha256-${index_digest#sha256:}"

sbom_signature_digest="$(layout_digest bazel-bin/sbom_signature)"
check "bazel run //:push_signed_sbom -- --format json (a signature of the SBOM, listed before it)" \
  bazel_run "$tmp/signed.json" //:push_signed_sbom -- --format json
check "push_signed_sbom: the SBOM's subject is the image, the signature's the SBOM" \
  equals "referrers" "$(referrer_report "$tmp/signed.json" "digest subject")" \
  "$(printf '%s\n' "$sbom_digest $image_digest" "$sbom_signature_digest $sbom_digest" | sort)"
check "push_signed_sbom: the JSON lists the SBOM before its signature" \
  equals "order" "$(json "$tmp/signed.json" '[r["digest"] for r in d["referrers"]]')" \
  "$(printf '%s\n' "$sbom_digest" "$sbom_signature_digest")"
check "push_signed_sbom: the registry's log has the SBOM's PUT before its signature's" \
  equals "order" "$(registry_requests "$tmp" PUT /v2/e2e/signed-sbom/manifests/sha256: |
    grep -E " /v2/e2e/signed-sbom/manifests/($sbom_digest|$sbom_signature_digest)\$" | cut -d' ' -f2 | sed 's|.*/||')" \
  "$(printf '%s\n' "$sbom_digest" "$sbom_signature_digest")"
check "oras discover e2e/signed-sbom@<image> lists the SBOM" \
  equals "oras discover" "$(discovered "e2e/signed-sbom@$image_digest" 2>&1)" \
  "$sbom_digest application/spdx+json"
check "oras discover e2e/signed-sbom@<sbom> lists the signature" \
  equals "oras discover" "$(discovered "e2e/signed-sbom@$sbom_digest" 2>&1)" \
  "$sbom_signature_digest application/vnd.example.signature"
check "curl: the SBOM's fallback tag lists the signature" \
  equals "fallback index" "$(fallback_index e2e/signed-sbom "$sbom_digest" 2>&1)" \
  "$sbom_signature_digest application/vnd.example.signature"

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

fails_with "bazel build //:push_bad_tags fails, naming the file, line and tag" \
  "bad_tags.txt:2: invalid tag 'no spaces allowed'" -- \
  bazel build //:push_bad_tags
fails_with "bazel build //:push_corrupt fails, naming the blob" \
  "blob sha256:[0-9a-f]{64} is corrupt" -- \
  bazel build //:push_corrupt
fails_with "a platform without a pusher fails, naming it and the ways out" \
  "no oci-push binary for platform @@//:linux_s390x \(os: linux, cpu: s390x\)" \
  'oci_push.pusher\(url = ' 'oci_push.pusher\(label = ' -- \
  bazel build --platforms=//:linux_s390x //:push_image
# This workspace uses the module from the checkout, whose release table is empty (the release
# table's own path is examples/test.sh's), and names one pusher by URL for linux_amd64.
fails_with "... and says the module is a source checkout, and the root module's tag covers other platforms" \
  'This rules_oci_push is a source checkout, not a release: it has no release binaries\.' \
  "The root module's oci_push.pusher tags cover other platforms only\." -- \
  bazel build --platforms=//:linux_s390x //:push_image

# A referrer of another image (:image_amd64): the build-time check fails, and at run time the
# pusher refuses it before any request.
fails_with "bazel build //:push_wrong_referrer fails: its referrer's subject is another image" \
  "its subject sha256:[0-9a-f]{64} is not a manifest of the image $image_digest" -- \
  bazel build //:push_wrong_referrer
check "bazel build //:other_sbom (the SBOM of :image_amd64)" bazel build //:other_sbom
bazel_run "$tmp/wrong-referrer.out" //:push_image -- --referrer bazel-bin/other_sbom -r "$REGISTRY/e2e/wrong-referrer"
check "bazel run //:push_image -- --referrer <SBOM of another image>: exit code 4" equals "exit code" "$?" 4
check "... saying the subject is not a manifest of the image" \
  grep -q "is not a manifest of the image $image_digest" "$tmp/wrong-referrer.out.err"
check "... before any request: the registry's log has none to e2e/wrong-referrer" \
  equals "requests" "$(registry_requests "$tmp" "*" /v2/e2e/wrong-referrer/)" ""
check "... and nothing in e2e/wrong-referrer" lacks_manifest e2e/wrong-referrer "$image_digest"
# A remote-cache URL the analysis lets through (its scheme is right) but the pusher would
# refuse at `bazel run`: the build-time check has the pusher judge it.
fails_with "bazel build //:push_image with a remote-cache URL holding a query fails at build time" \
  "--remote-cache https://cache.example.com/\\?x=1: a cache URL has no query, fragment or spaces" -- \
  bazel build //:push_image "--@rules_oci_push//settings:remote_cache=https://cache.example.com/?x=1"
fails_with "bazel build //:s390x_sbom fails: the index has no linux/s390x manifest" \
  "--subject-platform linux/s390x: the index $index_digest has no manifest for it \(it lists linux/amd64, linux/arm64\)" -- \
  bazel build //:s390x_sbom

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

# Every attribute of each rule has a row in its attribute table of docs/oci_push.md
# (| `name` | type | ...): oci_push's in "The rule", oci_artifact's in "Referrers"; every flag
# of `oci-push --help` one in its flag table
# (| `--flag ARG` | ... or, for a flag with a short form, | `-f`, `--flag ARG` | ...).
docs="$root/docs/oci_push.md"
# attributes BZL: the public attributes in the _ATTRS dict of BZL.
attributes() { sed -n '/^_ATTRS = {/,/^}/s/^    "\([a-z][a-z_]*\)": attr\..*/\1/p' "$1"; }
attrs="$(attributes "$root/rules/private/push.bzl")"
artifact_attrs="$(attributes "$root/rules/private/artifact.bzl")"
help="$("$pusher" --help)"
flags="$(grep -o -- '--[a-z][a-z-]*' <<<"$help" | sort -u)"
# section DOC TITLE: the lines of DOC's "## TITLE" section.
section() { awk -v title="## $2" '$0 == title { on = 1; next } /^## / { on = 0 } on' "$1"; }
# undocumented_attributes DOC, undocumented_flags DOC: those without their row, one a line.
undocumented_attributes() {
  local a rows
  rows="$(section "$1" "The rule")"
  for a in $attrs; do grep -Eq "^\| \`$a\` \|" <<<"$rows" || echo "$a"; done
  rows="$(section "$1" "Referrers")"
  for a in $artifact_attrs; do grep -Eq "^\| \`$a\` \|" <<<"$rows" || echo "$a"; done
}
undocumented_flags() {
  local f short rows
  rows="$(section "$1" "Run-time flags")"
  for f in $flags; do
    short="$(sed -n "s/^    \(-[A-Za-z]\), $f\( .*\)\{0,1\}$/\1/p" <<<"$help")"
    grep -Eq "^\| ${short:+\`$short\`, }\`$f( [^\`]+)?\` \|" <<<"$rows" || echo "$f"
  done
}
check "the attributes (push.bzl's and artifact.bzl's _ATTRS) and flags (oci-push --help) to look for were found" \
  test -n "$attrs" -a -n "$artifact_attrs" -a -n "$flags"
check "docs/oci_push.md has a row for every attribute ($(echo $attrs); $(echo $artifact_attrs))" \
  equals "undocumented" "$(undocumented_attributes "$docs" | tr '\n' ' ')" ""
check "docs/oci_push.md has a row for every flag of oci-push --help, with its short form" \
  equals "undocumented" "$(undocumented_flags "$docs" | tr '\n' ' ')" ""
# The same checks on a copy lacking the image, subject_platform and --tag rows, and -r in the
# --repository row.
sed -e '/^| `image` |/d' -e '/^| `subject_platform` |/d' -e '/^| `-t`, `--tag TAG` |/d' \
  -e 's/^| `-r`, `--repository REPO` |/| `--repository REPO` |/' \
  "$docs" >"$tmp/oci_push.md"
check "the docs checks notice a missing row or short form (on a copy lacking them)" \
  equals "undocumented in the copy" \
  "$(undocumented_attributes "$tmp/oci_push.md" | tr '\n' ' ')$(undocumented_flags "$tmp/oci_push.md" | tr '\n' ' ')" \
  "image subject_platform --repository --tag "

summary
