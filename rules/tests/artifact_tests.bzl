"""Analysis tests of oci_artifact: the action's arguments, exec pusher, input checks."""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")
load("@bazel_skylib//rules:write_file.bzl", "write_file")
load("//rules:defs.bzl", "oci_artifact")
load(":common.bzl", "actions", "basenames", "failure_test", "fake_layout")

# --- failures -------------------------------------------------------------

file_subject_test = failure_test(
    "subject @@//rules/tests:tags.txt outputs the file rules/tests/tags.txt, not a directory; " +
    "expected a target whose single output is an OCI image layout directory",
)
two_files_test = failure_test("files: @@//rules/tests:two_layer_files gives 2 files; expected exactly one file")
directory_file_test = failure_test("files: @@//rules/tests:subject gives the directory rules/tests/subject; expected exactly one file")
same_basename_test = failure_test("are both named tags.txt, the title of their layers")
bad_artifact_type_test = failure_test("artifact_type \"spdx\": expected a media type")
bad_media_type_test = failure_test("the media type of @@//rules/tests:tags.txt, \"text\": expected a media type")

# The pusher refuses parameters too.
media_type_parameters_test = failure_test("the media type of @@//rules/tests:tags.txt, \"text/plain;charset=utf-8\": expected a media type")
bad_platform_test = failure_test("subject_platform \"arm64\": expected os/arch or os/arch/variant")
bad_annotation_test = failure_test("annotations: key \"a=b\" must be non-empty and hold no '='")

# --- success --------------------------------------------------------------

def _argv_test_impl(ctx):
    # One action, run by the exec pusher (also under a foreign target platform), whose
    # arguments are exactly these: files in the order written with their media types ("" is
    # application/octet-stream), annotations sorted by key, the subject's platform. The
    # target's output is the directory it writes.
    env = analysistest.begin(ctx)
    target = analysistest.target_under_test(env)
    action = actions(env, "OciArtifact")
    asserts.equals(env, 1, len(action))
    action = action[0]
    outputs = target[DefaultInfo].files.to_list()
    asserts.equals(env, [target.label.name], basenames(outputs))
    asserts.true(env, outputs[0].is_directory, "the output is not a directory")
    asserts.equals(env, outputs, action.outputs.to_list())

    inputs = {f.basename: f for f in action.inputs.to_list()}
    asserts.true(env, action.argv[0].endswith("/fake_pusher.sh"), "runs %s" % action.argv[0])
    want = ["--write-artifact", outputs[0].path, "--layout", inputs["subject"].path]
    want += ["--artifact-type", ctx.attr.artifact_type]
    for entry in ctx.attr.want_files:
        name, media_type = entry.split(":", 1)
        asserts.true(env, name in inputs, "inputs lack %s: %s" % (name, sorted(inputs)))
        if name in inputs:
            want += ["--artifact-file", "%s:%s" % (inputs[name].path, media_type)]
    for annotation in ctx.attr.want_annotations:
        want += ["--annotation", annotation]
    if ctx.attr.want_platform:
        want += ["--subject-platform", ctx.attr.want_platform]
    asserts.equals(env, want, action.argv[1:])
    return analysistest.end(env)

_ARGV_ATTRS = {
    "artifact_type": attr.string(mandatory = True),
    # BASENAME:MEDIA_TYPE, in the order of the layers.
    "want_files": attr.string_list(),
    "want_annotations": attr.string_list(),
    "want_platform": attr.string(),
}

argv_test = analysistest.make(_argv_test_impl, attrs = _ARGV_ATTRS)

argv_cross_platform_test = analysistest.make(
    _argv_test_impl,
    attrs = _ARGV_ATTRS,
    config_settings = {
        "//command_line_option:platforms": str(Label("//rules/tests:fake_windows")),
    },
)

# --- suite ------------------------------------------------------------------

def artifact_test_suite(name):
    """Declares the targets under test and the tests, plus a test_suite `name`.

    Args:
        name: A string. The name of the test_suite.
    """
    manual = ["manual"]
    fake_layout(name = "subject", tags = manual)
    native.filegroup(name = "two_layer_files", srcs = ["tags.txt", "repository.txt"], tags = manual)
    write_file(name = "other_tags", out = "other/tags.txt", content = ["x"], tags = manual)

    def artifact(name, subject = ":subject", artifact_type = "application/spdx+json", **kwargs):
        oci_artifact(name = name, subject = subject, artifact_type = artifact_type, tags = manual, **kwargs)

    artifact(
        name = "artifact",
        files = {
            "sbom.spdx.json": "application/spdx+json",
            "repository.txt": "",
        },
        annotations = {
            "org.example.z": "last",
            "org.example.a": "first=1",
        },
        subject_platform = "linux/arm64",
    )
    artifact(name = "minimal_artifact", artifact_type = "application/vnd.example.signature")
    artifact(name = "artifact_file_subject", subject = "tags.txt")
    artifact(name = "artifact_two_files", files = {":two_layer_files": ""})
    artifact(name = "artifact_directory_file", files = {":subject": ""})
    artifact(name = "artifact_same_basename", files = {"tags.txt": "", ":other_tags": ""})
    artifact(name = "artifact_bad_artifact_type", artifact_type = "spdx")
    artifact(name = "artifact_bad_media_type", files = {"tags.txt": "text"})
    artifact(name = "artifact_media_type_parameters", files = {"tags.txt": "text/plain;charset=utf-8"})
    artifact(name = "artifact_bad_platform", subject_platform = "arm64")
    artifact(name = "artifact_bad_annotation", annotations = {"a=b": "c"})

    failures = {
        "artifact_file_subject": file_subject_test,
        "artifact_two_files": two_files_test,
        "artifact_directory_file": directory_file_test,
        "artifact_same_basename": same_basename_test,
        "artifact_bad_artifact_type": bad_artifact_type_test,
        "artifact_bad_media_type": bad_media_type_test,
        "artifact_media_type_parameters": media_type_parameters_test,
        "artifact_bad_platform": bad_platform_test,
        "artifact_bad_annotation": bad_annotation_test,
    }
    for target, test in failures.items():
        test(name = target + "_test", target_under_test = ":" + target)

    full = {
        "artifact_type": "application/spdx+json",
        # As written, not sorted.
        "want_files": ["sbom.spdx.json:application/spdx+json", "repository.txt:application/octet-stream"],
        "want_annotations": ["org.example.a=first=1", "org.example.z=last"],
        "want_platform": "linux/arm64",
    }
    argv_test(name = "artifact_argv_test", target_under_test = ":artifact", **full)
    argv_cross_platform_test(name = "artifact_cross_platform_test", target_under_test = ":artifact", **full)
    argv_test(
        name = "minimal_artifact_argv_test",
        target_under_test = ":minimal_artifact",
        artifact_type = "application/vnd.example.signature",
    )
    tests = [":%s_test" % t for t in failures]
    tests += [":artifact_argv_test", ":artifact_cross_platform_test", ":minimal_artifact_argv_test"]
    native.test_suite(name = name, tests = tests)
