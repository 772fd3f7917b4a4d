"""Public API of rules_oci_push: the `oci_push` and `oci_artifact` rules.

```starlark
load("@rules_oci_push//rules:defs.bzl", "oci_artifact", "oci_push")
```

See `docs/oci_push.md` for the attributes, the run-time flags and the
toolchain set-up.
"""

load("@bazel_skylib//rules:write_file.bzl", "write_file")
load("//rules/private:artifact.bzl", _oci_artifact = "oci_artifact")
load("//rules/private:push.bzl", _oci_push = "oci_push")

# An OCI 1.1 artifact (SBOM, signature, attestation) whose subject is an image, for
# oci_push's `referrers`.
oci_artifact = _oci_artifact

# The rule itself, for callers that want no macro (for example to wrap it).
oci_push_rule = _oci_push

def oci_push(name, image, repository = None, repository_file = None, image_tags = None, remote_tags = None, **kwargs):
    """Pushes an OCI image layout to a registry when run with `bazel run`.

    A macro around `oci_push_rule` that also accepts the tags as a list.

    Args:
        name: A string. The name of the target; `bazel run :<name>` pushes.
        image: A label. A target whose single output is an OCI image layout
            directory (rules_oci's `oci_image` or `oci_image_index`, or any rule
            producing one).
        repository: A string. `host[:port]/path` to push to, without tag or
            digest. Exactly one of `repository`, `repository_file` and
            `repositories` (passed on in `**kwargs`).
        repository_file: A label. A file of destinations, one per line, for
            generated or stamped names.
        image_tags: A label or a list of strings. A file with one tag per line,
            or the tags themselves (the macro writes `<name>.tags.txt`).
            Optional: without tags the image is pushed by digest only.
        remote_tags: Same as `image_tags`, under the name rules_oci uses, to ease
            migration. Give at most one of the two.
        **kwargs: The rule's other attributes (`repositories`, `mount_from`,
            `referrers`) and common ones (`tags`, `visibility`, ...), passed on.
    """
    if image_tags != None and remote_tags != None:
        fail("oci_push %s: image_tags and remote_tags are the same setting; give one." % name)
    tags_value = image_tags if image_tags != None else remote_tags
    if type(tags_value) == type([]):
        write_file(
            name = name + "_image_tags",
            out = name + ".tags.txt",
            content = tags_value,
            tags = ["manual"],
            visibility = ["//visibility:private"],
            testonly = kwargs.get("testonly"),
        )
        tags_value = ":" + name + "_image_tags"
    _oci_push(
        name = name,
        image = image,
        repository = repository,
        repository_file = repository_file,
        image_tags = tags_value,
        **kwargs
    )
