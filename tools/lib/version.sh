# Sourced by the project's scripts (tools/release.sh, its test, examples/test.sh):
# module_version FILE prints the version in the module() call of FILE, a MODULE.bazel.
# Plain sed: tools/release.sh also runs on macOS runners (bash 3.2, BSD sed).

module_version() { sed -n '/^module(/,/^)/s/^ *version = "\(.*\)",$/\1/p' "$1" | head -n 1; }
