"""Analysis tests of oci_push: input checks, run-script wiring, exec vs target pusher."""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")
load("//rules:defs.bzl", "oci_push", "oci_push_rule")
load(
    ":common.bzl",
    "fake_layout",
    _actions = "actions",
    _basenames = "basenames",
    _failure_test = "failure_test",
    _flag_values = "flag_values",
)

# --- failures -------------------------------------------------------------

both_repository_test = _failure_test("set exactly one of repository, repository_file and repositories (got repository and repository_file)")
no_repository_test = _failure_test("set exactly one of repository, repository_file and repositories (got none)")
list_and_repository_test = _failure_test("set exactly one of repository, repository_file and repositories (got repository and repositories)")
tagged_in_list_test = _failure_test('repository "r.example.com/b:v1": must not contain a tag')
file_image_test = _failure_test("not a directory; expected a target whose single output is an OCI image layout directory")
two_outputs_image_test = _failure_test("has 2 outputs")
tagged_repository_test = _failure_test("must not contain a tag")
digest_repository_test = _failure_test("must not contain a digest")
hostless_repository_test = _failure_test("expected host[:port]/path")
file_referrer_test = _failure_test(
    "referrer @@//rules/tests:tags.txt outputs the file rules/tests/tags.txt, not a directory; " +
    "expected a target whose single output is an OCI artifact layout directory",
)
two_outputs_referrer_test = _failure_test("referrer @@//rules/tests:two_files has 2 outputs")

# --- success --------------------------------------------------------------

def _wiring_test_impl(ctx):
    env = analysistest.begin(ctx)
    target = analysistest.target_under_test(env)
    info = target[DefaultInfo]
    asserts.equals(env, "push", info.files_to_run.executable.basename)
    runfiles = _basenames(info.default_runfiles.files.to_list())
    for want in ["layout", "tags.txt", "fake_pusher.sh", "runfiles.bash"]:
        asserts.true(env, want in runfiles, "runfiles lack %s: %s" % (want, runfiles))

    validation = target[OutputGroupInfo]._validation.to_list()
    asserts.equals(env, ["push.digest"], _basenames(validation))
    verify = _actions(env, "OciPushVerify")
    asserts.equals(env, 1, len(verify))
    argv = verify[0].argv
    asserts.true(env, argv[0].endswith("fake_pusher.sh"), "verify runs %s" % argv[0])
    for flag in ["--verify", "--layout", "--repository", "--tags-file", "--digest-file"]:
        asserts.true(env, flag in argv, "verify argv lacks %s: %s" % (flag, argv))
    asserts.true(env, "registry.example.com/team/app" in argv)
    return analysistest.end(env)

wiring_test = analysistest.make(_wiring_test_impl)

def _repository_file_test_impl(ctx):
    env = analysistest.begin(ctx)
    verify = _actions(env, "OciPushVerify")
    argv = verify[0].argv
    asserts.true(env, "--repository-file" in argv, "verify argv: %s" % argv)
    expand = _actions(env, "TemplateExpand")[0]
    repository_args = expand.substitutions["{{repository_args}}"]
    asserts.true(
        env,
        'args+=(--default-repository-file "$repository_file")' in repository_args,
        "the run-script must pass the file as a default, which -r replaces: %s" % repository_args,
    )
    asserts.false(env, "--tags-file" in argv, "verify argv: %s" % argv)
    runfiles = _basenames(analysistest.target_under_test(env)[DefaultInfo].default_runfiles.files.to_list())
    asserts.true(env, "repository.txt" in runfiles, "runfiles: %s" % runfiles)
    return analysistest.end(env)

repository_file_test = analysistest.make(_repository_file_test_impl)

def _cross_platform_test_impl(ctx):
    # Target platform: fake Windows; exec platform: the host. The run-script's
    # runfiles must carry the Windows pusher, the build-time check must run
    # the host one.
    env = analysistest.begin(ctx)
    target = analysistest.target_under_test(env)
    runfiles = _basenames(target[DefaultInfo].default_runfiles.files.to_list())
    asserts.true(env, "fake_pusher_windows.sh" in runfiles, "runfiles: %s" % runfiles)
    asserts.false(env, "fake_pusher.sh" in runfiles, "runfiles: %s" % runfiles)
    verify = _actions(env, "OciPushVerify")
    asserts.true(env, verify[0].argv[0].endswith("/fake_pusher.sh"), "verify runs %s" % verify[0].argv[0])
    return analysistest.end(env)

cross_platform_test = analysistest.make(
    _cross_platform_test_impl,
    config_settings = {
        "//command_line_option:platforms": str(Label("//rules/tests:fake_windows")),
    },
)

def _mount_from_test_impl(ctx):
    # mount_from becomes --mount-from flags of the run-script, in order and shell-quoted; the
    # build-time check (offline) gets none.
    env = analysistest.begin(ctx)
    expand = _actions(env, "TemplateExpand")
    asserts.equals(env, 1, len(expand))
    asserts.equals(env, ctx.attr.want_mount_args, expand[0].substitutions["{{mount_args}}"])
    verify = _actions(env, "OciPushVerify")
    asserts.false(env, "--mount-from" in verify[0].argv, "verify argv: %s" % verify[0].argv)
    return analysistest.end(env)

mount_from_test = analysistest.make(
    _mount_from_test_impl,
    attrs = {"want_mount_args": attr.string(mandatory = True)},
)

def _repositories_test_impl(ctx):
    # Each destination is a default of the run-script, in order (flags after `--` replace
    # them), and a --repository of the build-time check.
    env = analysistest.begin(ctx)
    expand = _actions(env, "TemplateExpand")[0]
    asserts.equals(
        env,
        "args+=(--default-repository 'r.example.com/a')\nargs+=(--default-repository 'r.example.com/a-mirror')",
        expand.substitutions["{{repository_args}}"],
    )
    argv = _actions(env, "OciPushVerify")[0].argv
    asserts.equals(env, ["r.example.com/a", "r.example.com/a-mirror"], _flag_values(argv, "--repository"))
    return analysistest.end(env)

repositories_test = analysistest.make(_repositories_test_impl)

def _list_tags_test_impl(ctx):
    # The macro wrote the list to <name>.tags.txt and passed it as image_tags.
    env = analysistest.begin(ctx)
    target = analysistest.target_under_test(env)
    want = target.label.name + ".tags.txt"
    runfiles = _basenames(target[DefaultInfo].default_runfiles.files.to_list())
    asserts.true(env, want in runfiles, "runfiles lack %s: %s" % (want, runfiles))
    return analysistest.end(env)

list_tags_test = analysistest.make(_list_tags_test_impl)

_REMOTE_CACHE = str(Label("//settings:remote_cache"))

def _with_remote_cache(url):
    return {_REMOTE_CACHE: url}

def _remote_cache_failure_test(message, url):
    return _failure_test(message, config_settings = _with_remote_cache(url))

grpc_cache_test = _remote_cache_failure_test(
    "gRPC remote caches are not supported yet",
    "grpcs://remote.example.com",
)
credentials_in_cache_url_test = _remote_cache_failure_test(
    "credentials do not belong in a build setting",
    "https://alice:secret@cache.example.com",
)
scheme_of_cache_test = _remote_cache_failure_test(
    "expected an http:// or https:// URL",
    "cache.example.com",
)

def _remote_cache_test_impl(ctx):
    # With the setting, the runfiles and the build-time check take the thin layout: no
    # action but the thin layout's own has the full layout as an input, so Bazel never
    # downloads it for them. The run-script passes the cache and where the full layout is.
    env = analysistest.begin(ctx)
    target = analysistest.target_under_test(env)
    full = _actions(env, "OciPushThinLayout")
    asserts.equals(env, 1, len(full))
    thin = full[0].outputs.to_list()
    asserts.equals(env, ["push.thin"], _basenames(thin))
    asserts.true(env, "layout" in _basenames(full[0].inputs.to_list()), "the thin layout's inputs")
    for flag in ["--verify", "--layout", "--write-thin-layout"]:
        asserts.true(env, flag in full[0].argv, "thin layout argv lacks %s: %s" % (flag, full[0].argv))

    runfiles = _basenames(target[DefaultInfo].default_runfiles.files.to_list())
    asserts.true(env, "push.thin" in runfiles, "runfiles lack the thin layout: %s" % runfiles)
    asserts.false(env, "layout" in runfiles, "runfiles hold the full layout: %s" % runfiles)

    verify = _actions(env, "OciPushVerify")
    inputs = _basenames(verify[0].inputs.to_list())
    asserts.true(env, "push.thin" in inputs, "verify inputs: %s" % inputs)
    asserts.false(env, "layout" in inputs, "verify reads the full layout: %s" % inputs)

    # The build-time check has the pusher check the cache's URL, as `bazel run` passes it.
    asserts.equals(env, ["http://127.0.0.1:9090/cache"], _flag_values(verify[0].argv, "--remote-cache"))

    expand = _actions(env, "TemplateExpand")[0]
    cache_args = expand.substitutions["{{cache_args}}"]
    asserts.true(
        env,
        "args+=(--remote-cache 'http://127.0.0.1:9090/cache')" in cache_args,
        "cache args: %s" % cache_args,
    )
    layout = [f for f in full[0].inputs.to_list() if f.basename == "layout"][0]
    local = "args+=(--local-layout \"$execroot\"/'%s')" % layout.path
    asserts.true(env, local in cache_args, "cache args lack %s: %s" % (local, cache_args))
    return analysistest.end(env)

remote_cache_test = analysistest.make(
    _remote_cache_test_impl,
    config_settings = _with_remote_cache("http://127.0.0.1:9090/cache"),
)

def _no_remote_cache_test_impl(ctx):
    env = analysistest.begin(ctx)
    asserts.equals(env, [], _actions(env, "OciPushThinLayout"))
    expand = _actions(env, "TemplateExpand")[0]
    asserts.equals(env, "# (no remote cache)", expand.substitutions["{{cache_args}}"])
    asserts.false(env, "--remote-cache" in _actions(env, "OciPushVerify")[0].argv)
    return analysistest.end(env)

no_remote_cache_test = analysistest.make(_no_remote_cache_test_impl)

def _referrers_test_impl(ctx):
    # Each referrer is a --referrer of the run-script, in order and before "$@" (so flags after
    # `--` add to them), is in the runfiles, and is an input and a --referrer of the build-time
    # check. With the remote-cache setting they stay full layouts: only the image is thinned.
    # (The referrers are matched by short_path: this test's own `referrers` are built in
    # another configuration than the target's.)
    env = analysistest.begin(ctx)
    target = analysistest.target_under_test(env)
    referrers = [r[DefaultInfo].files.to_list()[0].short_path for r in ctx.attr.referrers]

    expand = _actions(env, "TemplateExpand")
    asserts.equals(env, 1, len(expand))
    asserts.equals(
        env,
        "\n".join([
            "referrer=\"$(locate '%s/%s')\"\nargs+=(--referrer \"$referrer\")" % (ctx.workspace_name, r)
            for r in referrers
        ]),
        expand[0].substitutions["{{referrer_args}}"],
    )

    runfiles = {f.short_path: f for f in target[DefaultInfo].default_runfiles.files.to_list()}
    for referrer in referrers:
        asserts.true(env, referrer in runfiles, "runfiles lack %s: %s" % (referrer, sorted(runfiles)))
        if referrer in runfiles:
            asserts.true(env, runfiles[referrer].is_directory, "%s is not a directory" % referrer)

    verify = _actions(env, "OciPushVerify")[0]
    inputs = {f.short_path: f for f in verify.inputs.to_list()}
    asserts.equals(
        env,
        [inputs[r].path if r in inputs else "(%s not an input)" % r for r in referrers],
        _flag_values(verify.argv, "--referrer"),
    )

    thin = _actions(env, "OciPushThinLayout")
    asserts.equals(env, 1 if ctx.attr.remote_cache else 0, len(thin))
    for action in thin:
        inputs = [f.short_path for f in action.inputs.to_list()]
        asserts.true(env, "rules/tests/layout" in inputs, "the thin layout's inputs: %s" % inputs)
        for referrer in referrers:
            asserts.false(env, referrer in inputs, "the thin layout reads %s" % referrer)
        asserts.false(env, "--referrer" in action.argv, "thin layout argv: %s" % action.argv)
    if ctx.attr.remote_cache:
        asserts.true(env, "rules/tests/with_referrers.thin" in runfiles, "runfiles: %s" % sorted(runfiles))
        asserts.false(env, "rules/tests/layout" in runfiles, "runfiles hold the full image: %s" % sorted(runfiles))
    return analysistest.end(env)

referrers_test = analysistest.make(
    _referrers_test_impl,
    # The target's referrers, in order.
    attrs = {"referrers": attr.label_list(), "remote_cache": attr.bool()},
)

referrers_remote_cache_test = analysistest.make(
    _referrers_test_impl,
    attrs = {"referrers": attr.label_list(), "remote_cache": attr.bool(default = True)},
    config_settings = _with_remote_cache("http://127.0.0.1:9090/cache"),
)

def _no_referrers_test_impl(ctx):
    env = analysistest.begin(ctx)
    expand = _actions(env, "TemplateExpand")[0]
    asserts.equals(env, "# (no referrers)", expand.substitutions["{{referrer_args}}"])
    argv = _actions(env, "OciPushVerify")[0].argv
    asserts.false(env, "--referrer" in argv, "verify argv: %s" % argv)
    return analysistest.end(env)

no_referrers_test = analysistest.make(_no_referrers_test_impl)

# --- suite ------------------------------------------------------------------

def push_test_suite(name):
    """Declares the targets under test and the tests, plus a test_suite `name`.

    Args:
        name: A string. The name of the test_suite.
    """
    manual = ["manual"]
    fake_layout(name = "layout", tags = manual)
    fake_layout(name = "sbom_layout", tags = manual)
    fake_layout(name = "signature_layout", tags = manual)
    native.filegroup(name = "two_files", srcs = ["tags.txt", "repository.txt"], tags = manual)

    def push(name, **kwargs):
        oci_push_rule(name = name, tags = manual, **kwargs)

    push("both_repository", image = ":layout", repository = "r.example.com/a", repository_file = "repository.txt")
    push("no_repository", image = ":layout")
    push("file_image", image = "tags.txt", repository = "r.example.com/a")
    push("two_outputs_image", image = ":two_files", repository = "r.example.com/a")
    push("tagged_repository", image = ":layout", repository = "r.example.com/a:v1")
    push("digest_repository", image = ":layout", repository = "r.example.com/a@sha256:" + "0" * 64)
    push("hostless_repository", image = ":layout", repository = "app")
    push("push", image = ":layout", repository = "registry.example.com/team/app", image_tags = "tags.txt")
    push("with_repository_file", image = ":layout", repository_file = "repository.txt")
    push("with_repositories", image = ":layout", repositories = ["r.example.com/a", "r.example.com/a-mirror"])
    push("list_and_repository", image = ":layout", repository = "r.example.com/a", repositories = ["r.example.com/b"])
    push("tagged_in_list", image = ":layout", repositories = ["r.example.com/a", "r.example.com/b:v1"])
    push("file_referrer", image = ":layout", repository = "r.example.com/a", referrers = ["tags.txt"])
    push("two_outputs_referrer", image = ":layout", repository = "r.example.com/a", referrers = [":two_files"])
    push(
        "with_referrers",
        image = ":layout",
        repository = "r.example.com/a",
        image_tags = "tags.txt",
        referrers = [":sbom_layout", ":signature_layout"],
    )
    oci_push(name = "list_tags", image = ":layout", repository = "r.example.com/a", image_tags = ["a", "b"], tags = manual)
    oci_push(name = "remote_tags_alias", image = ":layout", repository = "r.example.com/a", remote_tags = ["a"], tags = manual)
    oci_push(
        name = "with_mount_from",
        image = ":layout",
        repository = "r.example.com/a",
        mount_from = ["r.example.com/base", "r.example.com/it's"],
        tags = manual,
    )

    tests = {
        "both_repository": both_repository_test,
        "no_repository": no_repository_test,
        "file_image": file_image_test,
        "two_outputs_image": two_outputs_image_test,
        "tagged_repository": tagged_repository_test,
        "digest_repository": digest_repository_test,
        "hostless_repository": hostless_repository_test,
        "push": wiring_test,
        "with_repository_file": repository_file_test,
        "with_repositories": repositories_test,
        "list_and_repository": list_and_repository_test,
        "tagged_in_list": tagged_in_list_test,
        "file_referrer": file_referrer_test,
        "two_outputs_referrer": two_outputs_referrer_test,
        "list_tags": list_tags_test,
        "remote_tags_alias": list_tags_test,
    }
    for target, test in tests.items():
        test(name = target + "_test", target_under_test = ":" + target)
    cross_platform_test(name = "cross_platform_test", target_under_test = ":push")
    mount_from_test(
        name = "mount_from_test",
        target_under_test = ":with_mount_from",
        want_mount_args = "args+=(--mount-from 'r.example.com/base')\nargs+=(--mount-from 'r.example.com/it'\\''s')",
    )
    mount_from_test(
        name = "no_mount_from_test",
        target_under_test = ":push",
        want_mount_args = "# (no mount_from)",
    )
    remote_cache_tests = {
        "grpc_cache_test": grpc_cache_test,
        "credentials_in_cache_url_test": credentials_in_cache_url_test,
        "scheme_of_cache_test": scheme_of_cache_test,
        "remote_cache_test": remote_cache_test,
        "no_remote_cache_test": no_remote_cache_test,
    }
    for test_name, test in remote_cache_tests.items():
        test(name = test_name, target_under_test = ":push")
    referrers = [":sbom_layout", ":signature_layout"]
    referrers_test(name = "with_referrers_test", target_under_test = ":with_referrers", referrers = referrers)
    referrers_remote_cache_test(name = "referrers_remote_cache_test", target_under_test = ":with_referrers", referrers = referrers)
    no_referrers_test(name = "no_referrers_test", target_under_test = ":push")
    extra = [
        ":cross_platform_test",
        ":mount_from_test",
        ":no_mount_from_test",
        ":with_referrers_test",
        ":referrers_remote_cache_test",
        ":no_referrers_test",
    ]
    extra += [":" + t for t in remote_cache_tests]
    native.test_suite(name = name, tests = [":%s_test" % t for t in tests] + extra)
