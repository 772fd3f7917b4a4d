"""Release binaries of `oci-push`, one per platform, pinned by sha256.

The module extension (`//rules:extensions.bzl`) turns each entry into a
repository that downloads only when a build needs that platform's binary.
A release of rules_oci_push fills this table with the binaries built from the
same commit, so the module version and the binary version move together.
"""

# The oci-push version these binaries were built from.
PUSHER_VERSION = "0.0.0"

# Every platform a binary can be named for, with the constraint values a
# toolchain for it requires. Keys are `<os>_<cpu>`, as used by the extension's
# `platform` attribute and by this table.
PLATFORMS = {
    "linux_amd64": struct(os = "linux", cpu = "x86_64", exe = ""),
    "linux_arm64": struct(os = "linux", cpu = "aarch64", exe = ""),
    "macos_amd64": struct(os = "macos", cpu = "x86_64", exe = ""),
    "macos_arm64": struct(os = "macos", cpu = "aarch64", exe = ""),
    "windows_amd64": struct(os = "windows", cpu = "x86_64", exe = ".exe"),
    "windows_arm64": struct(os = "windows", cpu = "aarch64", exe = ".exe"),
}

# platform -> struct(url, sha256). Empty until the first release: every
# platform then falls through to the "no pusher" toolchain, whose error names
# the platform and the ways out (oci_push.pusher(url/sha256) or (label)).
#
# Example entry:
#   "linux_amd64": struct(
#       url = "https://github.com/OWNER/rules_oci_push/releases/download/v0.1.0/oci-push-linux-amd64",
#       sha256 = "<64 hex digits>",
#   ),
PUSHER_BINARIES = {
}
