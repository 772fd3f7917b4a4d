"""Helpers of the analysis tests: a fake layout, action lookup, failure tests."""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")

def _fake_layout_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    ctx.actions.run_shell(
        outputs = [out],
        command = "echo '{}' > \"$1/index.json\"",
        arguments = [out.path],
    )
    return [DefaultInfo(files = depset([out]))]

fake_layout = rule(
    implementation = _fake_layout_impl,
    doc = "A directory standing in for an OCI layout (never read: the pusher is fake).",
)

def actions(env, mnemonic):
    """The actions of the target under test with this mnemonic.

    Args:
        env: The analysistest environment.
        mnemonic: A string.

    Returns:
        A list of Actions.
    """
    return [a for a in analysistest.target_actions(env) if a.mnemonic == mnemonic]

def basenames(files):
    """The sorted basenames of `files`, a list of Files."""
    return sorted([f.basename for f in files])

def flag_values(argv, flag):
    """The values given to `flag` in `argv`, in order (`--flag VALUE` pairs)."""
    return [argv[i + 1] for i in range(len(argv) - 1) if argv[i] == flag]

def failure_test(message, config_settings = {}):
    """An analysis test expecting the target under test to fail with `message`.

    Args:
        message: A string the failure message must contain.
        config_settings: A dict, as analysistest.make's.

    Returns:
        An analysis test rule.
    """

    def _impl(ctx):
        env = analysistest.begin(ctx)
        asserts.expect_failure(env, message)
        return analysistest.end(env)

    return analysistest.make(_impl, expect_failure = True, config_settings = config_settings)
