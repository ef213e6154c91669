#!/usr/bin/env bash
# Runs the README's walk-through (docs/walkthrough.sh) as a new user would:
# the local runner as `make dev` runs it, scripts/receiver.py as the
# partner's server, then checks what the receiver got. Run by `make test`
# (the stand-ins must be up: .local/test/env).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${WALKTHROUGH_PORT:-18402}
RECEIVER_PORT=${WALKTHROUGH_RECEIVER_PORT:-18403}
KEY=walkthrough-admin-key-0123456789
STATE=.local/walkthrough
mkdir -p "$STATE"
# shellcheck disable=SC1091
source .local/test/env
# shellcheck source=scripts/runner-lib.sh
source scripts/runner-lib.sh
require_port "$PORT" "set WALKTHROUGH_PORT"
require_port "$RECEIVER_PORT" "set WALKTHROUGH_RECEIVER_PORT"

STACK_PREFIX="walkthrough-$$" PORT=$PORT ADMIN_API_KEY=$KEY RUST_LOG=warn \
  ./target/debug/postback-local --provision --write-env "$STATE/lambda.env" >"$STATE/runner.log" 2>&1 &
RUNNER=$!
python3 scripts/receiver.py "$RECEIVER_PORT" >"$STATE/receiver.log" 2>&1 &
RECEIVER=$!
trap 'kill $RUNNER $RECEIVER 2>/dev/null || true; wait 2>/dev/null || true' EXIT
wait_healthy "$PORT" "$RUNNER" "$STATE/runner.log"

(cd "$STATE" && B="http://127.0.0.1:$PORT" ADMIN_API_KEY=$KEY RECEIVER="http://127.0.0.1:$RECEIVER_PORT" \
  sh ../../docs/walkthrough.sh) >"$STATE/out.txt" 2>&1 || {
  echo "[walkthrough] docs/walkthrough.sh failed:" >&2; cat "$STATE/out.txt" >&2; exit 1; }
# The README's events-queue recipe, on this runner's queue.
P=$(grep -o '"partner_id":"[^"]*"' "$STATE/out.txt" | head -1 | cut -d'"' -f4)
"$(scripts/stack.sh venv)/bin/python" scripts/send_event.py \
  '{"transaction_id": "Q-'"$$"'", "event": "payout", "partner_id": "'"$P"'", "payout": "100.00"}' \
  "$STATE/lambda.env" >/dev/null
# The last deliveries on their way: a transaction's changes go out in order,
# each after the one before, and a message that meets its delivery before
# the write looks again a second later. Wait for the last ones, up to 30 s.
for _ in $(seq 1 60); do
  if grep -q 'GET /pb?event=invalidation&payout=-120.00' "$STATE/receiver.log" \
    && grep -q "payout=100.00&tx=Q-$$" "$STATE/receiver.log" \
    && [ "$(grep -c 'POST /hook' "$STATE/receiver.log")" -ge 3 ]; then break; fi
  sleep 0.5
done
sleep 1

fail() { echo "[walkthrough] $*" >&2; echo "--- output" >&2; cat "$STATE/out.txt" >&2; echo "--- receiver" >&2; cat "$STATE/receiver.log" >&2; exit 1; }
out=$(cat "$STATE/out.txt"); got=$(cat "$STATE/receiver.log")
case "$out" in *'"status":"recorded"'*) ;; *) fail "the conversion was not recorded";; esac
echo "$got" | grep -q 'GET /pb?event=purchase&payout=49.99&tx=T[0-9]*&sub=abc' || fail "no conversion postback"
echo "$got" | grep -q 'GET /pb?event=invalidation&payout=-120.00' || fail "no invalidation postback"
echo "$got" | grep -q 'POST /hook' || fail "the loans endpoint got nothing"
echo "$got" | grep -q "payout=100.00&tx=Q-$$" || fail "the events-queue recipe's payout was not delivered"
echo "$got" | grep -q '"amount": 350.00, "user": "u-42"' || fail "the funded loan's body is not the template's"
head -1 "$STATE/deliveries.csv" | grep -q '^time,' || fail "the CSV has no header row"
case "$out" in *'"parked":'*'"attempts":['*) ;; *) fail "the support view shows no delivery";; esac
case "$out" in *'"dry_run":true'*'"recovery_id":"rcv_'*) ;; *) fail "the recover step showed no count or no recovery";; esac
# The test route, the funded loan's delivery, and its manual retry.
[ "$(echo "$got" | grep -c 'POST /hook')" -ge 3 ] || fail "the loans endpoint did not get the test, the delivery and its retry"
echo "[walkthrough] docs/walkthrough.sh ran as written: $(grep -c '^[0-9]' "$STATE/receiver.log") postbacks received"
