"""The `oci_push` module extension: which `oci-push` binary builds use.

By default, nothing to do: rules_oci_push registers toolchains for its release
binaries (one per platform, downloaded by URL and checked against a sha256
pinned in `//rules/private:versions.bzl`), and Bazel fetches only the one a
build needs.

The root module can name other binaries, which take precedence:

```starlark
oci_push = use_extension("@rules_oci_push//rules:extensions.bzl", "oci_push")

# A binary you host (or build: a file:// URL works), pinned by its sha256.
oci_push.pusher(
    url = "https://example.com/oci-push-linux-amd64",
    sha256 = "<64 hex digits>",
    platform = "linux_amd64",
)

# A binary target (for example a rust_binary of this repository's src/) or a
# checked-in file, built for whichever platform needs it.
oci_push.pusher(label = "//tools:oci-push")
```

Platforms not covered by a tag fall back to the release binaries; a platform
with neither gets a toolchain that fails with a message naming the platform
and these ways out.
"""

load("@bazel_features//:features.bzl", "bazel_features")
load("//rules/private:toolchains_repo.bzl", "pusher_binary_repo", "pusher_toolchains_repo")
load("//rules/private:versions.bzl", "PLATFORMS", "PUSHER_BINARIES", "PUSHER_VERSION")

# The hub repository's name: rules_oci_push's MODULE.bazel registers
# `@oci_push_toolchains//:all`.
HUB_NAME = "oci_push_toolchains"

_pusher = tag_class(
    doc = """Names an `oci-push` binary; root module only.

Give either `url` and `sha256`, or `label`. Tags are tried in the order
written, before the release binaries.""",
    attrs = {
        "url": attr.string(
            doc = "A URL of the binary (`https://`, or `file://` for a local file). Needs `sha256`.",
        ),
        "sha256": attr.string(
            doc = "The SHA-256 of the file at `url`, 64 hex digits. The download fails on a mismatch.",
        ),
        "label": attr.label(
            doc = "A binary target or an executable file. Mutually exclusive with `url`.",
        ),
        "platform": attr.string(
            doc = """The platform the binary runs on, as `<os>_<cpu>`: one of {}.

Empty (the default) means any platform: right for a `label` built from source,
and for a `url` only if every machine that builds or runs pushes is alike.""".format(
                ", ".join(["`%s`" % p for p in PLATFORMS.keys()]),
            ),
            values = [""] + PLATFORMS.keys(),
        ),
    },
)

def _is_hex_sha256(s):
    return len(s) == 64 and not s.lower().strip("0123456789abcdef")

def _check_pusher_tag(mod, tag):
    where = "oci_push.pusher in module %s" % mod.name
    if not mod.is_root:
        fail("%s: only the root module may choose the oci-push binary; remove the tag (the root module can add it)." % where)
    if bool(tag.url) == bool(tag.label):
        fail("%s: give either url (with sha256) or label, not %s." % (where, "both" if tag.url else "neither"))
    if tag.url and not _is_hex_sha256(tag.sha256):
        fail("%s: url %s needs sha256 = \"<64 hex digits>\" (got %r)." % (where, tag.url, tag.sha256))
    if tag.label and tag.sha256:
        fail("%s: sha256 goes with url; a label needs none." % where)

def _oci_push_impl(mctx):
    # Parallel lists, in priority order: toolchain label, and its platform.
    toolchains = []
    platforms = []

    # Label-form tags become oci_push_toolchain targets inside the hub, which
    # only sees strings: name -> canonical label of the pusher.
    label_pushers = {}
    for mod in mctx.modules:
        for tag in mod.tags.pusher:
            _check_pusher_tag(mod, tag)
            n = len(toolchains)
            if tag.url:
                repo = "oci_push_pusher_%d" % n
                pusher_binary_repo(
                    name = repo,
                    urls = [tag.url],
                    sha256 = tag.sha256.lower(),
                    platform = tag.platform,
                )
                toolchains.append("@%s//:toolchain" % repo)
            else:
                label_pushers["pusher_%d" % n] = str(tag.label)
                toolchains.append(":pusher_%d" % n)
            platforms.append(tag.platform)

    for platform, binary in PUSHER_BINARIES.items():
        repo = "oci_push_%s" % platform
        pusher_binary_repo(
            name = repo,
            urls = [binary.url],
            sha256 = binary.sha256,
            platform = platform,
        )
        toolchains.append("@%s//:toolchain" % repo)
        platforms.append(platform)

    pusher_toolchains_repo(
        name = HUB_NAME,
        toolchains = toolchains,
        platforms = platforms,
        label_pushers = label_pushers,
        release_version = PUSHER_VERSION,
        release_platforms = PUSHER_BINARIES.keys(),
    )

    # Every download is pinned by sha256, so the result is reproducible and
    # need not be recorded in MODULE.bazel.lock.
    if bazel_features.external_deps.extension_metadata_has_reproducible:
        return mctx.extension_metadata(reproducible = True)
    return None

oci_push = module_extension(
    implementation = _oci_push_impl,
    doc = "Chooses the `oci-push` binaries that `oci_push` targets use. See the module docstring.",
    tag_classes = {"pusher": _pusher},
)
