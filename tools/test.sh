#!/usr/bin/env bash
# The project's whole test suite: formatting, lints, the pusher's tests against a real
# registry, then the Bazel end-to-end tests. Run tools/setup.sh once before.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
echo "== cargo build --release"
cargo build --release --locked
echo "== bazel e2e"
bash e2e/test.sh
