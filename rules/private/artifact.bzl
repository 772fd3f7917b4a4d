"""Implementation of `oci_artifact`. Load it from `//rules:defs.bzl`."""

load(":layout.bzl", "layout_dir")

_DOC = """An OCI 1.1 artifact about an image: an SBOM, a signature, an attestation.

Writes an OCI layout directory `<name>` holding one image manifest with the
given `artifactType`, the empty config (`application/vnd.oci.empty.v1+json`),
one layer per file of `files` (each titled with its file's basename, in the
annotation `org.opencontainers.image.title`), the `annotations`, and as its
`subject` the manifest of `subject` (with `subject_platform`, one platform's
manifest of an image index). Give it to `oci_push`'s `referrers`: the push
sends it after the image, and registries list it among the image's referrers
(`oras discover`, the referrers API, or the fallback tag
`sha256-<hex of the subject's digest>`).

The action runs `oci-push --write-artifact` on the execution platform, offline.
The same inputs give the same bytes, so the artifact's digest is stable: set no
time-dependent annotation unless it is stamped.

Example
=======

```starlark
load("@rules_oci_push//rules:defs.bzl", "oci_artifact", "oci_push")

oci_artifact(
    name = "sbom",
    subject = ":image",
    artifact_type = "application/spdx+json",
    files = {":sbom.spdx.json": "application/spdx+json"},
    annotations = {"org.opencontainers.image.description": "SPDX SBOM of :image"},
)

oci_push(
    name = "push",
    image = ":image",
    repository = "ghcr.io/acme/app",
    referrers = [":sbom"],
)
```
"""

_OCTET_STREAM = "application/octet-stream"

_ATTRS = {
    "subject": attr.label(
        doc = """The image the artifact is about: a target whose single output is an OCI image layout directory.

The same kind of target as `oci_push`'s `image` (rules_oci's `oci_image` or
`oci_image_index`, ...), or another `oci_artifact` (a signature of the SBOM:
give both to `oci_push`'s `referrers`). The artifact's `subject` is the manifest
that the layout's `index.json` names; for an image index, `subject_platform`
picks one of its platform manifests instead.""",
        mandatory = True,
        allow_files = True,
    ),
    "artifact_type": attr.string(
        doc = """The artifact's `artifactType`, a media type: what kind of artifact this is.

For example `application/spdx+json` (SPDX SBOM), `application/vnd.cyclonedx+json`
(CycloneDX SBOM), `application/vnd.in-toto+json` (in-toto attestation) or a type
of your own. Clients filter referrers by it (`oras discover --artifact-type`).""",
        mandatory = True,
    ),
    "files": attr.label_keyed_string_dict(
        doc = """The artifact's content: each file to its layer's media type.

One layer per entry, in the order written, each annotated with its file's
basename as `org.opencontainers.image.title`. Each label must give exactly one
file (not a directory), and no two files may share a basename. An empty media
type means `application/octet-stream`. Optional: without files the artifact's
one layer is the empty blob (`application/vnd.oci.empty.v1+json`), and its
annotations say it all.""",
        allow_files = True,
    ),
    "annotations": attr.string_dict(
        doc = """Annotations of the artifact's manifest, e.g. `org.opencontainers.image.created`.

Written in the order of their keys, so the manifest does not depend on the
order in the BUILD file.""",
    ),
    "subject_platform": attr.string(
        doc = """For a `subject` that is an image index: the platform whose manifest is the subject.

`os/arch` or `os/arch/variant`, e.g. `linux/arm64` or `linux/arm/v7`. Without
it the subject is the index itself. The index must have exactly that platform,
or the build fails.""",
    ),
    # The pusher for the action: the toolchain resolved for the execution platform.
    "_exec_pusher": attr.label(
        default = Label("//rules/private:current_pusher"),
        cfg = "exec",
    ),
}

# The characters RFC 6838 allows in a media type's type and subtype (the pusher's check).
_MEDIA_TYPE_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&-^_.+"

def _check_media_type(owner, what, value):
    """Fails unless `value` is a media type, type/subtype (no parameters)."""
    parts = value.split("/")
    if len(parts) != 2 or not all([
        part and len(part) <= 127 and not part.lstrip(_MEDIA_TYPE_CHARS)
        for part in parts
    ]):
        fail("%s: %s %r: expected a media type, type/subtype (e.g. application/spdx+json)." % (owner, what, value))

def _oci_artifact_impl(ctx):
    subject = layout_dir(ctx.label, "subject", ctx.attr.subject)
    _check_media_type(ctx.label, "artifact_type", ctx.attr.artifact_type)
    platform = ctx.attr.subject_platform
    if platform and not (len(platform.split("/")) in [2, 3] and all(platform.split("/"))):
        fail("%s: subject_platform %r: expected os/arch or os/arch/variant (e.g. linux/arm64)." % (ctx.label, platform))

    out = ctx.actions.declare_directory(ctx.label.name)
    args = ctx.actions.args()
    args.add("--write-artifact", out.path)
    args.add("--layout", subject.path)
    args.add("--artifact-type", ctx.attr.artifact_type)

    files = []
    titles = {}
    for target, media_type in ctx.attr.files.items():
        given = target[DefaultInfo].files.to_list()
        if len(given) != 1 or given[0].is_directory:
            fail("%s: files: %s gives %s; expected exactly one file (a layer each)." % (
                ctx.label,
                target.label,
                "the directory " + given[0].short_path if len(given) == 1 else "%d files" % len(given),
            ))
        file = given[0]
        if file.basename in titles:
            fail("%s: files: %s and %s are both named %s, the title of their layers; rename one." % (
                ctx.label,
                titles[file.basename],
                target.label,
                file.basename,
            ))
        titles[file.basename] = target.label
        media_type = media_type or _OCTET_STREAM
        _check_media_type(ctx.label, "files: the media type of %s," % target.label, media_type)
        args.add("--artifact-file", "%s:%s" % (file.path, media_type))
        files.append(file)

    for key in sorted(ctx.attr.annotations):
        if not key or "=" in key:
            fail("%s: annotations: key %r must be non-empty and hold no '='." % (ctx.label, key))
        args.add("--annotation", "%s=%s" % (key, ctx.attr.annotations[key]))
    if platform:
        args.add("--subject-platform", platform)

    pusher = ctx.attr._exec_pusher[platform_common.ToolchainInfo].oci_push_info
    ctx.actions.run(
        executable = pusher.binary,
        tools = pusher.runfiles.files,
        arguments = [args],
        inputs = [subject] + files,
        outputs = [out],
        mnemonic = "OciArtifact",
        progress_message = "Writing OCI artifact %{label} (" + ctx.attr.artifact_type + ")",
        toolchain = None,
    )
    return [DefaultInfo(files = depset([out]))]

oci_artifact = rule(
    doc = _DOC,
    implementation = _oci_artifact_impl,
    attrs = _ATTRS,
)
