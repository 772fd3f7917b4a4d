# Sourced by the project's scripts: start_registry DIR [--access-log] starts the CNCF
# distribution registry (Debian's docker-registry) on a free 127.0.0.1 port with its config,
# log and storage in DIR, and sets REGISTRY (host:port) and registry_pid; stop_registry (in the
# caller's EXIT trap) stops it. With --access-log, DIR/registry.log also has a line per request
# as the registry answered it (`"METHOD TARGET HTTP/1.1" STATUS ...`): registry_requests reads
# them back.
# (No REGISTRY_* variables here: docker-registry reads those as overrides of its config.)

registry_pid=""

start_registry() {
  local dir=$1 try port storage=$1/storage access_log=true
  [ "${2:-}" = --access-log ] && access_log=false
  for try in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 30000))
    # Skip ports something already listens on.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    cat >"$dir/registry.yml" <<EOT
version: 0.1
log:
  level: warn
  accesslog:
    disabled: $access_log
storage:
  filesystem:
    rootdirectory: $storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOT
    docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
    registry_pid=$!
    for _ in $(seq 50); do
      if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
        REGISTRY="127.0.0.1:$port"
        return 0
      fi
      kill -0 "$registry_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$registry_pid" 2>/dev/null
    registry_pid=""
  done
  echo "could not start docker-registry:" >&2
  cat "$dir/registry.log" >&2
  return 1
}

# stop_registry: stops the registry start_registry started, if any, and waits for it to exit (so
# that its directory can be removed). Always succeeds: it runs in EXIT traps, under set -e too.
stop_registry() {
  if [ -n "${registry_pid:-}" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=""
  fi
  return 0
}

# registry_requests DIR METHOD TARGET_PREFIX: the "STATUS TARGET" of each request of METHOD
# (* for any) whose target starts with TARGET_PREFIX, in the order the registry answered them
# (started with --access-log). The registry logs a request just after answering it: a request
# of our own, once logged, is the barrier after which every answered one is there.
registry_requests() {
  local barrier="/v2/?barrier=$RANDOM$RANDOM" _
  curl -fsS -o /dev/null "http://$REGISTRY$barrier" 2>/dev/null
  for _ in $(seq 50); do
    grep -qF "GET $barrier " "$1/registry.log" && break
    sleep 0.05
  done
  awk -v method="$2" -v prefix="$3" '
    (method == "*" || $6 == "\"" method) && index($7, prefix) == 1 { print $9, $7 }' "$1/registry.log"
}
