#!/usr/bin/env bash
# `make dev`: install what is missing, start the stand-ins, create the table and
# queues of template.yaml, and run the local runner on 127.0.0.1:$PORT (API +
# SQS event-source mapping). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

DDB_PORT=${DEV_DDB_PORT:-8000}
SQS_PORT=${DEV_SQS_PORT:-9324}
export PORT=${PORT:-3000}
export ADMIN_API_KEY=${ADMIN_API_KEY:-dev-admin-key-change-me}
export RUST_LOG=${RUST_LOG:-info}

scripts/stack.sh start dev "$DDB_PORT" "$SQS_PORT"
trap 'scripts/stack.sh stop dev' EXIT
# shellcheck disable=SC1091
source .local/dev/env

cargo build --quiet -p postback-local

B="http://127.0.0.1:$PORT"
A="Authorization: Bearer $ADMIN_API_KEY"
cat <<TXT

  Postback service (local) on $B   admin key: $ADMIN_API_KEY
  Web console (Postback Explorer): $B/console   (sign in with the admin key or a partner key)
  DynamoDB Local 127.0.0.1:$DDB_PORT, SQS (moto) 127.0.0.1:$SQS_PORT; data lives until you stop.

  Try it: start a receiver in another terminal (python3 scripts/receiver.py 4000),
  then run the README's walk-through, whole or a block at a time:
    ADMIN_API_KEY=$ADMIN_API_KEY B=$B sh docs/walkthrough.sh
  Or by hand:  curl -s $B/health    curl -s $B/offers -H '$A'

  Metrics: the JSON lines starting {"_aws": ...} are the CloudWatch EMF documents Lambda would ship.
  cargo lambda: make lambda-events, then cargo lambda watch -A 127.0.0.1 --env-file .local/dev/lambda.env

TXT
./target/debug/postback-local --provision --write-env .local/dev/lambda.env
