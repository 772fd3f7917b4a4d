"""The `oci-push` toolchain: which pusher binary a build uses.

Most users never touch this file: the `oci_push` module extension
(`//rules:extensions.bzl`) registers toolchains for the release binaries or for
the binary named in the root module. Load from here to declare a toolchain by
hand:

```starlark
load("@rules_oci_push//rules:toolchain.bzl", "oci_push_toolchain")

oci_push_toolchain(name = "my_pusher", pusher = "//tools:oci-push")

toolchain(
    name = "my_pusher_toolchain",
    toolchain = ":my_pusher",
    toolchain_type = "@rules_oci_push//rules:toolchain_type",
    target_compatible_with = ["@platforms//os:linux", "@platforms//cpu:x86_64"],
)
```

A toolchain's `target_compatible_with` states where its binary *runs*. The
`oci_push` rule resolves the toolchain twice: once for the target platform
(the binary that `bazel run` executes) and once for the execution platform
(the binary that checks the layout at build time).
"""

OciPushInfo = provider(
    doc = "The pusher binary of an `oci_push_toolchain`.",
    fields = {
        "binary": "File: the `oci-push` executable.",
        "runfiles": "runfiles: what the binary needs at run time (empty for a prebuilt binary).",
    },
)

def _oci_push_toolchain_impl(ctx):
    binary = ctx.executable.pusher
    runfiles = ctx.runfiles(files = [binary])
    runfiles = runfiles.merge(ctx.attr.pusher[DefaultInfo].default_runfiles)
    info = OciPushInfo(binary = binary, runfiles = runfiles)
    return [
        platform_common.ToolchainInfo(oci_push_info = info),
        DefaultInfo(files = depset([binary]), runfiles = runfiles),
    ]

oci_push_toolchain = rule(
    implementation = _oci_push_toolchain_impl,
    doc = "Declares an `oci-push` binary for use as a `@rules_oci_push//rules:toolchain_type` toolchain.",
    attrs = {
        "pusher": attr.label(
            doc = """The `oci-push` executable.

A prebuilt file (downloaded or checked in) or a binary target built from
source. It is built for the platform the toolchain is resolved for, so a
source-built pusher works for both `bazel run` and build-time checks.""",
            mandatory = True,
            executable = True,
            allow_files = True,
            cfg = "target",
        ),
    },
)

def _current_pusher_impl(ctx):
    toolchain = ctx.toolchains[Label("//rules:toolchain_type")]
    info = toolchain.oci_push_info
    return [
        toolchain,
        DefaultInfo(files = depset([info.binary]), runfiles = info.runfiles),
    ]

current_pusher = rule(
    implementation = _current_pusher_impl,
    doc = """Forwards the resolved `oci-push` toolchain of the current configuration.

Depend on it with `cfg = "exec"` to get the pusher for the execution platform
(a tool for actions), or in the target configuration to get the one for the
target platform (a file for runfiles).""",
    toolchains = [Label("//rules:toolchain_type")],
)
