"""Test-only rules writing small OCI image layouts (tree artifacts).

rules_oci cannot be fetched here, so the e2e tests make their own layouts:
`test_image` (one manifest, a layer per string) and `test_index` (an image
index of `test_image`s). Outputs are deterministic: the same attributes give
the same digests on every machine.
"""

TestImageInfo = provider(
    doc = "The platform of a test_image, for test_index.",
    fields = {"os": "A string.", "arch": "A string."},
)

def _test_image_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    args = ctx.actions.args()
    args.add_all(["image", out.path, ctx.attr.os, ctx.attr.arch, "1" if ctx.attr.corrupt else "0", str(ctx.attr.layer_size)])
    args.add_all(ctx.attr.layers)
    ctx.actions.run(
        executable = ctx.executable._make_layout,
        arguments = [args],
        outputs = [out],
        mnemonic = "TestOciImage",
    )
    return [
        DefaultInfo(files = depset([out])),
        TestImageInfo(os = ctx.attr.os, arch = ctx.attr.arch),
    ]

_MAKE_LAYOUT = attr.label(
    default = ":make_layout.sh",
    executable = True,
    allow_single_file = True,
    cfg = "exec",
)

test_image = rule(
    implementation = _test_image_impl,
    doc = "An OCI layout directory holding one image manifest.",
    attrs = {
        "layers": attr.string_list(mandatory = True, doc = "One gzipped tar layer per string, holding the string as a file."),
        "os": attr.string(default = "linux", doc = "The config's os."),
        "arch": attr.string(default = "amd64", doc = "The config's architecture."),
        "corrupt": attr.bool(doc = "Damage the first layer blob after writing it (for failure tests)."),
        "layer_size": attr.int(doc = "0: gzipped layers of the strings; N: uncompressed layers of N bytes (the string repeated), for byte counts."),
        "_make_layout": _MAKE_LAYOUT,
    },
)

def _test_index_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    args = ctx.actions.args()
    args.add_all(["index", out.path])
    dirs = []
    for image in ctx.attr.images:
        layout = image[DefaultInfo].files.to_list()[0]
        info = image[TestImageInfo]
        args.add("%s:%s:%s" % (layout.path, info.os, info.arch))
        dirs.append(layout)
    ctx.actions.run(
        executable = ctx.executable._make_layout,
        arguments = [args],
        inputs = dirs,
        outputs = [out],
        mnemonic = "TestOciIndex",
    )
    return [DefaultInfo(files = depset([out]))]

test_index = rule(
    implementation = _test_index_impl,
    doc = "An OCI layout directory holding an image index of test_images (blobs shared, not copied twice).",
    attrs = {
        "images": attr.label_list(mandatory = True, providers = [TestImageInfo], doc = "The platform images."),
        "_make_layout": _MAKE_LAYOUT,
    },
)
