#!/usr/bin/env bash
# Install Debian's Bazel 7.7.1 (bazel-bootstrap, from Debian testing/sid) into a
# chroot on a bookworm host, fully offline apart from deb.debian.org, and put a
# `bazel` wrapper on the host PATH. Idempotent: re-running only re-checks.
# The host's own packages stay bookworm (only `debootstrap` is installed on it).
set -euo pipefail

R="${BAZEL_CHROOT:-/opt/bazel-chroot}"         # chroot location
SUITE="${BAZEL_SUITE:-forky}"                  # forky (testing) or sid; both ship 7.7.1+ds-8+b1
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WRAPPER="${BAZEL_WRAPPER:-/usr/local/bin/bazel}"
OUT_ROOT="${BAZEL_OUTPUT_USER_ROOT:-$R.out}"         # bazel output_user_root: same path inside and outside
export DEBIAN_FRONTEND=noninteractive
t0=$SECONDS
log() { echo "[bazel-chroot +$((SECONDS - t0))s] $*"; }

# 1. debootstrap on the host (a bookworm package).
if ! command -v debootstrap >/dev/null; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends debootstrap
fi

# 2. Minimal chroot (~27 s, ~225 MB). Marker file guards against half-done runs.
if [ ! -e "$R/.debootstrap-done" ]; then
  for m in dev sys proc; do umount -R "$R/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$R"
  mkdir -p "$R"
  # bookworm's debootstrap has no 'forky' script; the sid script handles testing too.
  debootstrap --variant=minbase "$SUITE" "$R" "$MIRROR" /usr/share/debootstrap/scripts/sid
  touch "$R/.debootstrap-done"
fi

# The mirror reachable here is a frozen snapshot: its Release files carry an
# expired Valid-Until, so apt inside the chroot must not check it.
echo 'Acquire::Check-Valid-Until "false";' > "$R/etc/apt/apt.conf.d/99no-valid-until"
cp -L /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true

mount_chroot() {
  mkdir -p "$R/proc" "$R/sys" "$R/dev" "$OUT_ROOT" "$R$OUT_ROOT"
  mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
  mountpoint -q "$R/sys"  || mount -t sysfs sysfs "$R/sys"
  mountpoint -q "$R/dev"  || { mount --rbind /dev "$R/dev"; mount --make-rslave "$R/dev"; }
  mountpoint -q "$R$OUT_ROOT" || mount --bind "$OUT_ROOT" "$R$OUT_ROOT"
}
mount_chroot

# 3. Bazel + Debian-packaged modules + JDK 25 (~32 s, 645 MB download, ~1.2 GB).
if ! chroot "$R" dpkg-query -W -f='${Status}' bazel-bootstrap 2>/dev/null | grep -q 'ok installed'; then
  chroot "$R" apt-get update -q
  chroot "$R" apt-get install -y -q --no-install-recommends bazel-bootstrap
  chroot "$R" apt-get clean
fi
chroot "$R" bazel --version | grep -q '^bazel 7\.' || { echo "unexpected bazel version" >&2; exit 1; }

# 4. Offline bzlmod: Debian's /etc/bazel/bazelrc already overrides platforms,
# bazel_skylib, rules_{cc,java,license,proto,python}, bazel_features with the
# packaged copies. @bazel_tools' MODULE.bazel also needs apple_support,
# protobuf, buildozer and zlib, which Debian doesn't ship: stub them the same
# way Debian's own autopkgtests do.
M=/usr/local/share/bazel-offline-stubs
for m in apple_support protobuf buildozer zlib; do
  mkdir -p "$R$M/$m"
  echo "module(name = \"$m\")" > "$R$M/$m/MODULE.bazel"
  : > "$R$M/$m/BUILD.bazel"
done
echo 'cc_library(name = "zlib", linkopts = ["-lz"], visibility = ["//visibility:public"])' > "$R$M/zlib/BUILD.bazel"
cat > "$R/etc/bazel.bazelrc" <<EOF
# try-imported by Debian's /etc/bazel/bazelrc
startup --output_user_root=$OUT_ROOT
startup --max_idle_secs=900
common --override_module=apple_support=$M/apple_support
common --override_module=protobuf=$M/protobuf
common --override_module=buildozer=$M/buildozer
common --override_module=zlib=$M/zlib
# Default WORKSPACE suffix would http_archive rules_cc etc. (no network).
common --noenable_workspace
common --lockfile_mode=off
EOF

# 5. Host-side wrapper: binds the current project (git top level, else $PWD) into
# the chroot at the same path, then runs bazel there with the caller's cwd/env.
cat > "$WRAPPER" <<EOF
#!/usr/bin/env bash
set -euo pipefail
R="$R"; OUT_ROOT="$OUT_ROOT"
EOF
cat >> "$WRAPPER" <<'EOF'
top="$(git -C "$PWD" rev-parse --show-toplevel 2>/dev/null || pwd -P)"
[ "$top" != / ] || { echo "bazel-chroot: refusing to bind /" >&2; exit 2; }
(
  flock 9
  mkdir -p "$R/proc" "$R/sys" "$R/dev" "$R$OUT_ROOT" "$OUT_ROOT" "$R$top"
  mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
  mountpoint -q "$R/sys"  || mount -t sysfs sysfs "$R/sys"
  mountpoint -q "$R/dev"  || { mount --rbind /dev "$R/dev"; mount --make-rslave "$R/dev"; }
  mountpoint -q "$R$OUT_ROOT" || mount --bind "$OUT_ROOT" "$R$OUT_ROOT"
  # bind DIR: DIR at the same path inside. A mount left from an earlier directory of the same
  # name (a checkout deleted and cloned again) still shows the old, deleted tree: replace it.
  bind() {
    if mountpoint -q "$R$1"; then
      [ "$(stat -c %d:%i "$1")" = "$(stat -c %d:%i "$R$1" 2>/dev/null)" ] && return 0
      umount -l "$R$1"
    fi
    mount --bind "$1" "$R$1"
  }
  bind "$top"
  for extra in ${BAZEL_CHROOT_BIND:+${BAZEL_CHROOT_BIND//:/ }}; do
    mkdir -p "$R$extra"; bind "$extra"
  done
) 9>"$R/.wrapper.lock"
unset JAVA_HOME LD_LIBRARY_PATH LD_PRELOAD
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
exec chroot "$R" /bin/bash -c 'cd "$1" && shift && exec /usr/bin/bazel "$@"' bazel "$PWD" "$@"
EOF
chmod +x "$WRAPPER"

# 5b. The install base at the same path on the host. Outputs' runfiles link into
# @bazel_tools, which Debian's Bazel keeps in its install base /usr/share/bazel;
# with this symlink, bazel-bin/... executables also run directly on the host.
# (Bookworm's own bazel-bootstrap would use that path; it is not installed.)
if [ ! -e /usr/share/bazel ] || [ "$(readlink /usr/share/bazel)" = "$R/usr/share/bazel" ]; then
  ln -sfn "$R/usr/share/bazel" /usr/share/bazel
else
  echo "warning: /usr/share/bazel exists on the host; bazel-bin/... outputs may not run outside the chroot" >&2
fi

# 6. Smoke test (bzlmod + skylib + custom executable rule + sh_test, offline).
S="$R/var/tmp/bazel-smoke"; rm -rf "$S"; mkdir -p "$S"
cat > "$S/MODULE.bazel" <<'EOF'
module(name = "smoke")
bazel_dep(name = "bazel_skylib", version = "1.7.1")
bazel_dep(name = "platforms", version = "0.0.10")
EOF
cat > "$S/defs.bzl" <<'EOF'
def _impl(ctx):
    out = ctx.actions.declare_file(ctx.label.name + ".sh")
    ctx.actions.write(out, "#!/usr/bin/env bash\necho smoke-ok \"$@\"\n", is_executable = True)
    return [DefaultInfo(executable = out, runfiles = ctx.runfiles(files = [out]))]
smoke = rule(implementation = _impl, executable = True)
EOF
cat > "$S/BUILD.bazel" <<'EOF'
load("@bazel_skylib//rules:write_file.bzl", "write_file")
load("//:defs.bzl", "smoke")
smoke(name = "run_me")
write_file(name = "t", out = "t.sh", content = ["#!/usr/bin/env bash", "./run_me.sh x | grep -q smoke-ok"], is_executable = True)
sh_test(name = "smoke_test", srcs = ["t.sh"], data = [":run_me"])
EOF
chroot "$R" /bin/bash -c 'cd /var/tmp/bazel-smoke && bazel run //:run_me -- arg && bazel test //:smoke_test && bazel shutdown'
log "bazel $(chroot "$R" bazel --version) ready in $R; wrapper: $WRAPPER"
