# Sourced by the project's scripts: start_registry DIR starts the CNCF distribution registry
# (Debian's docker-registry) on a free 127.0.0.1 port with its config, log and storage in DIR,
# and sets REGISTRY (host:port) and registry_pid. The caller stops it (kill "$registry_pid").
# (No REGISTRY_* variables here: docker-registry reads those as overrides of its config.)

start_registry() {
  local dir=$1 try port storage=$1/storage
  for try in 1 2 3 4 5 6 7 8 9 10; do
    port=$((20000 + RANDOM % 30000))
    # Skip ports something already listens on.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    cat >"$dir/registry.yml" <<EOT
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
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
