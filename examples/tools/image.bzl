"""Stand-ins for rules_oci's `oci_image` and `oci_image_index`, so this example builds offline.

Real projects build their images with rules_oci and push them with
rules_oci_push; only the load changes:

```starlark
load("@rules_oci//oci:defs.bzl", "oci_image", "oci_image_index")

oci_image(name = "image_amd64", base = "@distroless_static_linux_amd64", tars = [":app_layer"])
oci_image(name = "image_arm64", base = "@distroless_static_linux_arm64_v8", tars = [":app_layer"])
oci_image_index(name = "image", images = [":image_amd64", ":image_arm64"])
```

These rules write the same kind of output, an OCI image layout directory, from
a few files and no base image: `example_image` (one image manifest, one layer)
and `example_image_index` (an index of `example_image`s).
"""

ExampleImageInfo = provider(
    doc = "The platform of an example_image, for example_image_index.",
    fields = {"os": "A string.", "arch": "A string."},
)

_IMAGE_SH = attr.label(
    default = ":image.sh",
    executable = True,
    allow_single_file = True,
    cfg = "exec",
)

def _example_image_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    args = ctx.actions.args()
    args.add_all(["image", out.path, ctx.attr.os, ctx.attr.arch, ctx.attr.directory])
    args.add_all(ctx.files.srcs)
    ctx.actions.run(
        executable = ctx.executable._image_sh,
        arguments = [args],
        inputs = ctx.files.srcs,
        outputs = [out],
        mnemonic = "ExampleImage",
        progress_message = "Writing image layout %{label}",
    )
    return [
        DefaultInfo(files = depset([out])),
        ExampleImageInfo(os = ctx.attr.os, arch = ctx.attr.arch),
    ]

example_image = rule(
    implementation = _example_image_impl,
    doc = "An OCI image layout holding one image: one layer with `srcs` in `directory`.",
    attrs = {
        "srcs": attr.label_list(allow_files = True, mandatory = True, doc = "Files of the layer, placed by their base names."),
        "directory": attr.string(default = "/app", doc = "Where the files go in the image."),
        "os": attr.string(default = "linux", doc = "The image config's os."),
        "arch": attr.string(mandatory = True, doc = "The image config's architecture: amd64, arm64, ..."),
        "_image_sh": _IMAGE_SH,
    },
)

def _example_image_index_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    args = ctx.actions.args()
    args.add_all(["index", out.path])
    layouts = []
    for image in ctx.attr.images:
        layout = image[DefaultInfo].files.to_list()[0]
        info = image[ExampleImageInfo]
        args.add("%s:%s:%s" % (layout.path, info.os, info.arch))
        layouts.append(layout)
    ctx.actions.run(
        executable = ctx.executable._image_sh,
        arguments = [args],
        inputs = layouts,
        outputs = [out],
        mnemonic = "ExampleImageIndex",
        progress_message = "Writing image index layout %{label}",
    )
    return [DefaultInfo(files = depset([out]))]

example_image_index = rule(
    implementation = _example_image_index_impl,
    doc = "An OCI image layout holding an image index of `example_image`s (a multi-platform image).",
    attrs = {
        "images": attr.label_list(mandatory = True, providers = [ExampleImageInfo], doc = "One image per platform."),
        "_image_sh": _IMAGE_SH,
    },
)
