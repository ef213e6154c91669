# Sourced by scripts that run the local runner beside the test stand-ins
# (contract.sh, walkthrough-check.sh).

# Fails when another process already listens on a port: require_port PORT HINT
require_port() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 is taken; $2" >&2
    exit 1
  fi
}

# Waits (up to 20 s) until the runner answers /health, or fails with its log
# when it died: wait_healthy PORT PID LOG
wait_healthy() {
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; exit 1; }
    sleep 0.2
  done
  echo "the runner on port $1 did not answer /health in 20 s" >&2
  cat "$3" >&2
  exit 1
}
