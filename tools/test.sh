#!/usr/bin/env bash
# The project's whole test suite: formatting, lints, the pusher's tests against a real
# registry, then the Bazel end-to-end tests (with and without a remote cache), the release
# steps and the examples. Run
# tools/setup.sh once before.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== buildifier (Starlark format and lint)"
git ls-files -z -- '*.bzl' '*.bazel' | xargs -0 buildifier -mode=check -lint=warn
echo "== cargo test"
cargo test --locked
echo "== cargo build --release"
cargo build --release --locked
echo "== bazel e2e"
bash e2e/test.sh
echo "== bazel e2e with a remote cache (push without the bytes)"
bash e2e/remote_cache.sh
echo "== release: static binary, integrity table, source archive (tools/release.sh)"
bash tools/release/test.sh
echo "== examples/ from a release archive, pushing to a local registry"
bash examples/test.sh
