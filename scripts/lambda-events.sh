#!/usr/bin/env bash
# `make lambda-events` (with `make dev` running): seeds offer off1, partner p1,
# an endpoint, a click and a conversion in the dev stack, and writes
# events/*.json with those live ids (and the admin key) into .local/dev/events/,
# ready for `cargo lambda invoke --data-file`. Also refreshes
# .local/dev/lambda.env for `cargo lambda watch --env-file`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f .local/dev/env ]; then
  echo "start the local stack first: make dev (in another terminal)" >&2
  exit 1
fi
# shellcheck disable=SC1091
source .local/dev/env
export ADMIN_API_KEY=${ADMIN_API_KEY:-dev-admin-key-change-me}
cargo build --quiet -p postback-local
./target/debug/postback-local --provision --write-env .local/dev/lambda.env --fill-events .local/dev/events
cat <<TXT
  Next (the dev stack keeps running):
    cargo lambda watch -A 127.0.0.1 --env-file .local/dev/lambda.env
    cargo lambda invoke -A 127.0.0.1 api --data-file .local/dev/events/http-partners-read.json
TXT
