# Sourced by the project's scripts: start_cache DIR starts a Bazel HTTP remote cache (nginx with
# WebDAV, set up as Bazel's docs set one up: GET and PUT of /cas/<sha256 hex>) on a free
# 127.0.0.1 port, with its blobs in DIR/cache, its access log in DIR/cache-access.log and its
# config, error log and temp files beside them, and sets CACHE (http://127.0.0.1:PORT) and
# cache_pid; stop_cache (in the caller's EXIT trap) stops it. cache_fetches and
# cache_fetched_bytes read the access log back. Its nginx.conf is tools/lib/cache-nginx.conf, as
# tests/common/cache.rs's.

cache_pid=""
# This file's directory, for cache-nginx.conf beside it.
cache_lib_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

start_cache() {
  local dir=$1 try port nginx conf user=""
  # Debian's nginx is in /usr/sbin, which a non-root user's PATH may not have.
  nginx=$(command -v nginx || echo /usr/sbin/nginx)
  if [ ! -x "$nginx" ]; then
    echo "nginx is not installed: run tools/setup.sh (it installs nginx-light)" >&2
    return 1
  fi
  # As root, nginx otherwise makes its temp dirs nobody's.
  if [ "$(id -u)" = 0 ]; then user="user root;"; fi
  mkdir -p "$dir/cache" "$dir/cache-temp"
  for try in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 30000))
    # Skip ports something already listens on.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    # tools/lib/cache-nginx.conf, filled in (tests/common/cache.rs fills in the same).
    conf=$(<"$cache_lib_dir/cache-nginx.conf")
    conf=${conf//@USER@/$user}
    conf=${conf//@PID@/$dir/cache-nginx.pid}
    conf=${conf//@LOCK@/$dir/cache-nginx.lock}
    conf=${conf//@ERROR_LOG@/$dir/cache-error.log}
    conf=${conf//@TEMP@/$dir/cache-temp}
    conf=${conf//@ACCESS_LOG@/$dir/cache-access.log}
    conf=${conf//@PORT@/$port}
    conf=${conf//@ROOT@/$dir/cache}
    conf=${conf//@SERVER_EXTRA@/}
    printf '%s\n' "$conf" >"$dir/cache-nginx.conf"
    # -e: the error log from the start, never /var/log/nginx.
    : >"$dir/cache-error.log"
    "$nginx" -p "$dir" -c "$dir/cache-nginx.conf" -e "$dir/cache-error.log" \
      </dev/null >"$dir/cache-nginx.out" 2>&1 &
    cache_pid=$!
    for _ in $(seq 50); do
      if curl -fsS --noproxy '*' -o /dev/null "http://127.0.0.1:$port/.harness/ready" 2>/dev/null; then
        CACHE="http://127.0.0.1:$port"
        return 0
      fi
      kill -0 "$cache_pid" 2>/dev/null || break
      # A port taken since the check above: nginx would retry it for 2.5 s before exiting.
      grep -qs "Address already in use" "$dir/cache-error.log" && break
      sleep 0.1
    done
    # nginx may have exited already, which is no failure of the caller's under set -e.
    kill "$cache_pid" 2>/dev/null || true
    wait "$cache_pid" 2>/dev/null || true
    cache_pid=""
  done
  echo "could not start nginx as a cache:" >&2
  cat "$dir/cache-error.log" "$dir/cache-nginx.out" >&2
  return 1
}

# stop_cache: stops the cache start_cache started, if any, and waits for it to exit (so that its
# directory can be removed). Always succeeds: it runs in EXIT traps, under set -e too.
stop_cache() {
  if [ -n "${cache_pid:-}" ]; then
    kill "$cache_pid" 2>/dev/null || true
    wait "$cache_pid" 2>/dev/null || true
    cache_pid=""
  fi
  return 0
}

# cache_fetched_bytes LOG [HEX...]: the body bytes of the GETs of /cas/ that LOG (a
# cache-access.log) shows answered 200 or 206, of just the blobs HEX... when given. Error
# pages (401, 404, 416) have bodies too, and are not fetched blobs. nginx logs a request once it
# answered it: read the log after the client exited.
cache_fetched_bytes() {
  local log=$1
  shift
  awk -F'\t' -v hexes="$*" '
    BEGIN { n = split(hexes, h, " "); for (i = 1; i <= n; i++) want["/cas/" h[i]] = 1 }
    $1 == "GET" && ($3 == 200 || $3 == 206) && $2 ~ /^\/cas\// && (n == 0 || ($2 in want)) {
      sum += $4
    }
    END { printf "%.0f\n", sum }
  ' "$log"
}

# cache_sent_bytes LOG: the body bytes of every GET that LOG shows answered 200 or 206, of
# action results (/ac/) and blobs (/cas/) alike: all that crossed the cache towards its clients.
cache_sent_bytes() {
  awk -F'\t' '
    $1 == "GET" && ($3 == 200 || $3 == 206) && $2 !~ /^\/\.harness\// { sum += $4 }
    END { printf "%.0f\n", sum }
  ' "$1"
}
# cache_settle: returns once nginx has logged every request whose answer a client already
# read: on a kept-alive connection the line may come a moment after the answer. One request
# on a connection of its own goes after them through nginx's single event loop.
cache_settle() {
  curl -fsS --noproxy '*' -o /dev/null -H 'Connection: close' "$CACHE/.harness/settle" || true
}
# cache_fetches LOG HEX: how many GETs of /cas/HEX LOG shows answered 200 or 206.
cache_fetches() {
  awk -F'\t' -v path="/cas/$2" '
    $1 == "GET" && $2 == path && ($3 == 200 || $3 == 206) { n++ }
    END { printf "%.0f\n", n }
  ' "$1"
}
