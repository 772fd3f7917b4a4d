#!/usr/bin/env bash
# stamp.sh TEMPLATE [STATUS_FILE...]: prints TEMPLATE with each {KEY:-default} replaced by
# KEY's value in the workspace status files (bazel-out/stable-status.txt and
# volatile-status.txt, given in a --stamp build), or by the default when no file has KEY;
# a {KEY} without default and without value is an error. Lines starting with # are dropped.
set -euo pipefail
template=$1
shift
awk -v template="$template" '
  FILENAME != template {
    key = $1
    value = $0
    sub(/^[^ ]* ?/, "", value)
    status[key] = value
    next
  }
  /^#/ { next }
  {
    line = $0
    out = ""
    while ((open = index(line, "{")) > 0) {
      close_at = index(substr(line, open), "}")
      if (close_at == 0) break
      ref = substr(line, open + 1, close_at - 2)
      key = ref
      has_default = 0
      if ((d = index(ref, ":-")) > 0) {
        key = substr(ref, 1, d - 1)
        default_value = substr(ref, d + 2)
        has_default = 1
      }
      if (key in status) value = status[key]
      else if (has_default) value = default_value
      else {
        printf "stamp.sh: %s:%d: no value for {%s} (build with --stamp, or give a default: {%s:-...})\n", template, FNR, key, key > "/dev/stderr"
        failed = 1
        value = ""
      }
      out = out substr(line, 1, open - 1) value
      line = substr(line, open + close_at)
    }
    print out line
  }
  END { exit failed }
' "$@" "$template"
