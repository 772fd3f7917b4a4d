"""Implementation of `oci_push`. Load it from `//rules:defs.bzl`."""

load("@bazel_skylib//rules:common_settings.bzl", "BuildSettingInfo")
load(":layout.bzl", "ARTIFACT_LAYOUT", "layout_dir")

_DOC = """Pushes an OCI image layout (an image or an image index) to a registry.

`bazel run` of an `oci_push` target runs the `oci-push` binary from the
toolchain with the layout, the repository and the tags file of the target.

Authorization
=============

`oci-push` finds credentials the usual ways, first found wins: `--username`
with `--password-stdin` (or `OCI_PUSH_PASSWORD`), then
`OCI_PUSH_USERNAME`/`OCI_PUSH_PASSWORD`, `--credential-helper` (a Bazel
credential helper), Docker's `config.json` (`credHelpers`, `credsStore`,
`auths`), Podman's `auth.json`, else anonymous. So `docker login` or
`podman login` beforehand works. A refusal ends the push with exit code 2.

Behavior
========

The pusher uploads every blob, then the manifests by digest, and only then
applies the tags, so a failure never leaves a tag pointing at a half-pushed
image. The last line it prints is `REPOSITORY@sha256:...`.

At build time (output group `_validation`, run by `bazel build` unless
`--norun_validations`), `oci-push --verify` checks the layout (every blob
hashed against its digest), the tags file and the repository, offline. A
corrupt layout or a bad tag therefore fails `bazel build //...`, long before
anyone pushes, and the check is cached like any other action.

Referrers
=========

`referrers` attaches OCI 1.1 artifacts to the image: SBOMs, signatures,
provenance, each an artifact layout (see `oci_artifact`) whose `subject` is
the image's manifest or one of its platform manifests. A push sends the image
by digest, then the referrers, then the tags. The build-time check verifies
each referrer's subject too, so an SBOM of another image fails `bazel build`.
Registries without the referrers API get the fallback tag
`sha256-<hex of the subject's digest>` (an image index of the referrers).

Push without the bytes
======================

With `--@rules_oci_push//settings:remote_cache=URL` (Bazel's HTTP cache, the
one `--remote_cache` names), the runfiles hold only the layout's small files
(a thin layout: index.json, manifests, configs and the list of the layers with
their sizes), and the pusher streams each layer the registry lacks from
`URL/cas/<sha256>`. With `--remote_download_minimal` no layer is downloaded
for a push; one built on this machine is read from disk. See
docs/remote-cache.md.

Usage
=====

Flags after `--` go to the pusher and win over the target's values:

* `-r`/`--repository REPO` (repeatable: several destinations) replaces the
  rule's `repository` / `repository_file` / `repositories`;
* `-t`/`--tag TAG` (repeatable) replaces the tags of `image_tags`;
* `--referrer DIR` (repeatable) adds an artifact layout to `referrers`;
* `--digest-file FILE` writes `REPOSITORY@sha256:...` (a line per destination)
  to FILE. A relative path
  is taken from the directory `bazel run` was called from.

e.g. `bazel run //app:push -- -t v1.2.3 -r registry.example.com/team/app`

The target's executable also works outside `bazel run`, from any directory:
`bazel build //app:push && bazel-bin/app/push -t dev`.

Examples
========

```starlark
load("@rules_oci_push//rules:defs.bzl", "oci_push")

oci_push(
    name = "push",
    image = ":image",  # oci_image, oci_image_index, or any rule with one layout directory
    repository = "ghcr.io/acme/app",
    image_tags = ["latest"],  # or a label of a file with one tag per line
    referrers = [":sbom"],  # optional: oci_artifact targets whose subject is :image
)
```
"""

_ATTRS = {
    "image": attr.label(
        doc = """The image to push: a target whose single output is an OCI image layout directory.

rules_oci's `oci_image` and `oci_image_index` qualify, as does any rule that
outputs one directory holding `oci-layout`, `index.json` and `blobs/`.""",
        mandatory = True,
        allow_files = True,
    ),
    "repository": attr.string(
        doc = """The repository to push to: `host[:port]/path`, without tag or digest.

For example `ghcr.io/acme/app` or `localhost:5000/app`. Registries on
`localhost`, `127.0.0.0/8` and `[::1]` are asked over plain HTTP first (no
credentials) and get HTTPS when they answer like a TLS server; every other
registry gets HTTPS (`--plain-http` at run time forces plain HTTP). Exactly one
of `repository`, `repository_file` and `repositories` is required; `--repository`
at run time replaces it.""",
    ),
    "repository_file": attr.label(
        doc = """A file of destinations, for names that are generated or stamped.

One repository per line (blank lines ignored), each in the format of
`repository`; several lines are several destinations, as `repositories`.""",
        allow_single_file = True,
    ),
    "repositories": attr.string_list(
        doc = """Several destinations: the same image to each, in order.

Each in the format of `repository`. Each in turn gets the blobs, the manifests
by digest, then the tags; the first that fails ends the push, and the others
are not attempted. On one registry, each after the first mounts the blobs from
it, so a blob goes over the wire once per registry. Repeated `--repository`
flags at run time replace the list.""",
    ),
    "image_tags": attr.label(
        doc = """A text file with the tags to apply, one per line; optional.

Produced by `write_file`, `expand_template` (for stamped tags) or a genrule.
Blank lines are ignored. Without tags the image is pushed by digest only.
`--tag` at run time replaces these tags. (The `oci_push` macro also takes a
list of strings here and writes the file.)""",
        allow_single_file = True,
    ),
    "referrers": attr.label_list(
        doc = """Artifacts to attach to the image (OCI 1.1 referrers): SBOMs, signatures, attestations.

Each a target whose single output is an OCI artifact layout directory, such as
an `oci_artifact`: one manifest whose `subject` is the image's manifest (or,
for an image index, one of its platform manifests), or another referrer's (a
signature of the SBOM; it goes up after that one). The pusher sends the image
by digest, then the referrers, then the tags, so a tag never names an image
whose referrers are missing. A referrer whose subject is another image fails
the build-time check, before any push. On a registry without the referrers API
the pusher keeps the fallback tag `sha256-<hex of the subject's digest>` (an
image index of the referrers) up to date, adding to what it lists. `--referrer
DIR` at run time adds more. With the remote-cache setting the referrers stay
full layouts (only the image is thinned).""",
        allow_files = True,
    ),
    "mount_from": attr.string_list(
        doc = """Repositories of the same registry to mount missing blobs from, tried in order.

Each is `host[:port]/path`, like `repository`. Before uploading a blob the
registry does not have, the pusher asks it to link the blob from these
repositories (a cross-repository mount), which sends no bytes; a blob that
none of them has is uploaded as usual. Useful when images share a base that is
already in the registry. `--mount-from` at run time adds more. The layout's
`org.opencontainers.image.base.name` annotations that name the same registry
are tried too, after these.""",
    ),
    "_remote_cache": attr.label(
        default = Label("//settings:remote_cache"),
        providers = [BuildSettingInfo],
    ),
    "_template": attr.label(
        default = Label("//rules/private:push.sh.tpl"),
        allow_single_file = True,
    ),
    "_runfiles_lib": attr.label(
        default = Label("@bazel_tools//tools/bash/runfiles"),
    ),
    # The pusher for build-time actions: the toolchain resolved for the
    # execution platform. (The one in the runfiles comes from this rule's own
    # toolchain resolution, for the target platform.)
    "_exec_pusher": attr.label(
        default = Label("//rules/private:current_pusher"),
        cfg = "exec",
    ),
}

_TOOLCHAIN_TYPE = Label("//rules:toolchain_type")

def _shell_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"

def _flag_lines(flag, values, none):
    """Run-script lines `args+=(FLAG 'VALUE')`, one per value; the comment `none` without any."""
    return "\n".join(["args+=(%s %s)" % (flag, _shell_quote(v)) for v in values]) or none

def _located_flag_lines(ctx, var, flag, files, none):
    """Run-script lines passing each of `files`, found in the runfiles at run time, as `FLAG PATH`.

    Args:
        ctx: The rule context.
        var: A string, the shell variable each path is found into.
        flag: A string, the pusher's flag.
        files: A list of Files in the runfiles.
        none: A string, the comment standing in for no files.

    Returns:
        A string of run-script lines.
    """
    return "\n".join([
        '%s="$(locate %s)"\nargs+=(%s "$%s")' % (var, _shell_quote(_rlocation_path(ctx, f)), flag, var)
        for f in files
    ]) or none

def _rlocation_path(ctx, file):
    """The path of `file` for the runfiles library's `rlocation`."""
    if file.short_path.startswith("../"):
        return file.short_path[3:]
    return ctx.workspace_name + "/" + file.short_path

def _check_repository(label, repository):
    """Fails unless `repository` looks like host[:port]/path, without tag or digest."""
    where = "%s: repository %r" % (label, repository)
    if repository != repository.strip() or not repository:
        fail("%s: must not be empty or have surrounding whitespace." % where)
    if "://" in repository:
        fail("%s: expected host[:port]/path without a scheme." % where)
    if "@" in repository:
        fail("%s: must not contain a digest (@sha256:...): the pusher computes it." % where)
    if "/" not in repository:
        fail("%s: expected host[:port]/path, for example registry.example.com/team/app." % where)
    if ":" in repository.split("/")[-1]:
        fail("%s: must not contain a tag; put tags in image_tags or pass --tag." % where)

def _check_remote_cache(label, url):
    """Fails unless `url` is an http:// or https:// URL without credentials."""
    where = "%s: --@rules_oci_push//settings:remote_cache=%s" % (label, url)
    scheme = url.split("://")[0].lower() if "://" in url else ""
    if scheme in ["grpc", "grpcs"]:
        fail(("%s: gRPC remote caches are not supported yet; give the cache's HTTP endpoint " +
              "(https://..., as bazel-remote's --http_address serves) or leave the setting " +
              "empty to push full layouts (docs/remote-cache.md).") % where)
    if scheme not in ["http", "https"]:
        fail("%s: expected an http:// or https:// URL (Bazel's HTTP cache)." % where)
    if "@" in url.split("://")[1].split("/")[0]:
        fail(("%s: credentials do not belong in a build setting (they would be written into " +
              "the run-script and the cache); use ~/.netrc, a credential helper or " +
              "--remote-cache-header at run time (docs/remote-cache.md).") % where)

def _oci_push_impl(ctx):
    given = [
        name
        for name, value in [
            ("repository", ctx.attr.repository),
            ("repository_file", ctx.file.repository_file),
            ("repositories", ctx.attr.repositories),
        ]
        if value
    ]
    if len(given) != 1:
        fail("%s: set exactly one of repository, repository_file and repositories (got %s)." % (
            ctx.label,
            " and ".join(given) if given else "none",
        ))
    names = [ctx.attr.repository] if ctx.attr.repository else ctx.attr.repositories
    for name in names:
        _check_repository(ctx.label, name)
    full_layout = layout_dir(ctx.label, "image", ctx.attr.image)
    referrers = [layout_dir(ctx.label, "referrer", r, ARTIFACT_LAYOUT) for r in ctx.attr.referrers]
    pusher = ctx.toolchains[_TOOLCHAIN_TYPE].oci_push_info
    exec_pusher = ctx.attr._exec_pusher[platform_common.ToolchainInfo].oci_push_info
    remote_cache = ctx.attr._remote_cache[BuildSettingInfo].value

    executable = ctx.actions.declare_file(ctx.label.name)

    # With a remote cache, the push and its check take the thin layout: its action is the
    # only one that reads the layers (remotely, under remote execution), and hashes them.
    if remote_cache:
        _check_remote_cache(ctx.label, remote_cache)
        layout = ctx.actions.declare_directory(ctx.label.name + ".thin")
        thin_args = ctx.actions.args()
        thin_args.add_all(["--verify", "--layout", full_layout.path, "--write-thin-layout", layout.path])
        ctx.actions.run(
            executable = exec_pusher.binary,
            tools = exec_pusher.runfiles.files,
            arguments = [thin_args],
            inputs = [full_layout],
            outputs = [layout],
            mnemonic = "OciPushThinLayout",
            progress_message = "Verifying OCI layout of %{label} and writing its thin copy",
            toolchain = None,
        )
        cache_args = "\n".join([
            "args+=(--remote-cache %s)" % _shell_quote(remote_cache),
            # Where the full layout is when it was built (or downloaded) here: its blobs
            # beat fetching them. The run-script itself is in the execroot, its directory
            # this many levels below it; $0 may be a link to it (another binary's runfiles).
            'script="$0"',
            'while [[ -L "$script" ]]; do',
            '  link="$(readlink "$script")"',
            '  [[ "$link" == /* ]] || link="$(dirname "$script")/$link"',
            '  script="$link"',
            "done",
            'execroot="$(cd "$(dirname "$script")" && pwd -P)" || execroot=""',
            "for _ in %s; do execroot=\"${execroot%%/*}\"; done" % " ".join(
                [str(i) for i in range(len(executable.dirname.split("/")))],
            ),
            # A wrong guess costs nothing: the pusher then fetches what it does not find.
            'args+=(--local-layout "$execroot"/%s)' % _shell_quote(full_layout.path),
        ])
    else:
        layout = full_layout
        cache_args = "# (no remote cache)"

    # The run-script.
    files = [layout]

    # Defaults: --repository flags after `--` replace them.
    repository_files = [] if names else [ctx.file.repository_file]
    repository_args = _flag_lines("--default-repository", names, "") or _located_flag_lines(
        ctx,
        "repository_file",
        "--default-repository-file",
        repository_files,
        "",
    )
    tags_files = [ctx.file.image_tags] if ctx.file.image_tags else []
    tags_args = _located_flag_lines(ctx, "tags_file", "--tags-file", tags_files, "# (no image_tags)")
    mount_args = _flag_lines("--mount-from", ctx.attr.mount_from, "# (no mount_from)")

    # Referrers: full layouts even with a remote cache (they are small). `--referrer` flags
    # after `--` add to them.
    referrer_args = _located_flag_lines(ctx, "referrer", "--referrer", referrers, "# (no referrers)")
    files.extend(repository_files + tags_files + referrers)

    ctx.actions.expand_template(
        template = ctx.file._template,
        output = executable,
        is_executable = True,
        substitutions = {
            "{{label}}": str(ctx.label),
            "{{pusher}}": _shell_quote(_rlocation_path(ctx, pusher.binary)),
            "{{layout}}": _shell_quote(_rlocation_path(ctx, layout)),
            "{{repository_args}}": repository_args,
            "{{tags_args}}": tags_args,
            "{{mount_args}}": mount_args,
            "{{referrer_args}}": referrer_args,
            "{{cache_args}}": cache_args,
        },
    )
    runfiles = ctx.runfiles(files = files + [executable])
    runfiles = runfiles.merge(pusher.runfiles)
    runfiles = runfiles.merge(ctx.attr._runfiles_lib[DefaultInfo].default_runfiles)

    # The build-time check: offline, cached, on the execution platform.
    verified = ctx.actions.declare_file(ctx.label.name + ".digest")
    args = ctx.actions.args()
    args.add("--verify")
    args.add("--layout", layout.path)
    args.add_all(names, before_each = "--repository")
    args.add_all(repository_files, before_each = "--repository-file")
    args.add_all(tags_files, before_each = "--tags-file")
    args.add_all(referrers, before_each = "--referrer", expand_directories = False)

    # The pusher checks the cache's URL as `bazel run` will give it (analysis checked its
    # scheme and credentials only): a URL it refuses fails the build, not the push.
    if remote_cache:
        args.add("--remote-cache", remote_cache)
    args.add("--digest-file", verified)
    ctx.actions.run(
        executable = exec_pusher.binary,
        tools = exec_pusher.runfiles.files,
        arguments = [args],
        inputs = [layout] + repository_files + tags_files + referrers,
        outputs = [verified],
        mnemonic = "OciPushVerify",
        progress_message = "Verifying OCI layout, tags and referrers of %{label}",
        toolchain = None,
    )

    return [
        DefaultInfo(executable = executable, runfiles = runfiles),
        # The digest is known at build time: `--output_groups=digest` gives it to signing
        # and deployment steps without pushing.
        OutputGroupInfo(_validation = depset([verified]), digest = depset([verified])),
    ]

oci_push = rule(
    doc = _DOC,
    implementation = _oci_push_impl,
    attrs = _ATTRS,
    toolchains = [config_common.toolchain_type(_TOOLCHAIN_TYPE, mandatory = True)],
    executable = True,
)
