#!/usr/bin/env bash
# Bazel's --workspace_status_command (see ../.bazelrc): prints "KEY value" lines, which
# stamped actions read from bazel-out/stable-status.txt (STABLE_ keys: a change re-runs what
# reads them) and volatile-status.txt (the others). Runs before every build; it must not fail.
#
# STABLE_IMAGE_TAG   the tag to push: $IMAGE_TAG if set (CI: a version, a build number),
#                    else `git describe` of the workspace (v1.2.3, v1.2.3-4-gabc1234-dirty)
# STABLE_GIT_COMMIT  the commit checked out, when git knows
set -u
tag="${IMAGE_TAG:-$(git describe --tags --always --dirty 2>/dev/null)}"
[ -z "$tag" ] || echo "STABLE_IMAGE_TAG $tag"
commit="$(git rev-parse HEAD 2>/dev/null)" && echo "STABLE_GIT_COMMIT $commit"
exit 0
