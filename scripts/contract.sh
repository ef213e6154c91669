#!/usr/bin/env bash
# The public contract checked by its own field's tool: schemathesis fuzzes
# the local runner from openapi.yaml and fails on any failure of the checks
# below. Run by `make test` (the stand-ins must be up: .local/test/env).
#
#   CONTRACT_SECONDS  time budget of the fuzzing (default 100)
#   CONTRACT_SEED     hypothesis seed (default fixed, so CI runs are repeatable;
#                     CONTRACT_SEED=random picks one). Always printed.
#   CONTRACT_PORT     port of the runner under test (default 18401)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_BUDGET=${CONTRACT_SECONDS:-100}
SEED=${CONTRACT_SEED:-20261126}
if [ "$SEED" = random ]; then SEED=$((RANDOM * 32768 + RANDOM)); fi
PORT=${CONTRACT_PORT:-18401}
KEY=contract-admin-key-0123456789
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance
STATE=.local/contract
VENV=$(scripts/stack.sh venv)

mkdir -p "$STATE"
# shellcheck disable=SC1091
source .local/test/env
# shellcheck source=scripts/runner-lib.sh
source scripts/runner-lib.sh
require_port "$PORT" "set CONTRACT_PORT"

# The runner as `make dev` runs it, on its own table and queues, sending
# nowhere: the endpoint URLs schemathesis makes up are never contacted.
STACK_PREFIX="contract-$$" PORT=$PORT ADMIN_API_KEY=$KEY RUST_LOG=warn SEND_NOWHERE=true \
  ./target/debug/postback-local --provision >"$STATE/runner.log" 2>&1 &
RUNNER=$!
trap 'kill $RUNNER 2>/dev/null || true; wait $RUNNER 2>/dev/null || true' EXIT
wait_healthy "$PORT" "$RUNNER" "$STATE/runner.log"

# Real ids for the path parameters, and a real cursor for each list (a
# cursor is valid only where its list returned it), so the fuzzing reaches
# past the 404s.
B="http://127.0.0.1:$PORT"
A="Authorization: Bearer $KEY"
post() { curl -fsS -X POST "$B$1" -H "$A" -H 'content-type: application/json' -d "$2"; }
get() { curl -fsS "$B$1" -H "$A"; }
field() { "$VENV/bin/python" -c "import json,sys; v=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
for o in contract-offer contract-offer-2; do
  post /offers "{\"id\":\"$o\",\"name\":\"Contract\",\"advertiser\":\"Acme\",\"landing_url\":\"https://acme.example/lp\"}" >/dev/null
done
for p in contract-partner contract-partner-2; do
  post /partners "{\"id\":\"$p\",\"name\":\"Contract partner\"}" >/dev/null
done
EID=$(post /partners/contract-partner/endpoints '{"name":"contract","url":"https://partner.example/pb?tx={transaction_id}"}' | field 'v["id"]')
post /partners/contract-partner/endpoints '{"name":"second","url":"https://partner.example/two"}' >/dev/null
KID=$(get /partners/contract-partner/keys | field 'v["keys"][0]["id"]')
CLICK=$(post /clicks '{"offer_id":"contract-offer","partner_id":"contract-partner"}' | field 'v["click_id"]')
for tx in T1 T2; do get "/postback?click_id=$CLICK&transaction_id=$tx&payout=1.50" >/dev/null; done
OFFERS_CURSOR=$(get "/offers?limit=1" | field 'v["next_cursor"]')
PARTNERS_CURSOR=$(get "/partners?limit=1" | field 'v["next_cursor"]')
POSTBACKS_CURSOR=$(get "/offers/contract-offer/postbacks?limit=1" | field 'v["next_cursor"]')
HISTORY_CURSOR=$(get "/partners/contract-partner/deliveries?limit=1" | field 'v["next_cursor"]')

cat >"$STATE/schemathesis.toml" <<TOML
# Written by scripts/contract.sh.
[parameters]
"path.pid" = "contract-partner"
"path.eid" = "$EID"
"path.kid" = "$KID"
"path.id" = "contract-offer"

# A well-formed request that a rule refuses (a payout above the offer's
# maximum, a body with method GET, a secret header not among the headers)
# is a 422 by the contract, as a conflict with what is stored is a 409.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

# Schemathesis' list, with the two documented refusals of size: a body over
# 64 KiB (413) and a URI over 8 KiB (414).
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428", "429", "5xx"]

[[operations]]
include-name = "GET /offers"
parameters = { "query.cursor" = "$OFFERS_CURSOR" }

[[operations]]
include-name = "GET /partners"
parameters = { "query.cursor" = "$PARTNERS_CURSOR" }

[[operations]]
include-name = "GET /offers/{id}/postbacks"
parameters = { "query.cursor" = "$POSTBACKS_CURSOR" }

[[operations]]
include-name = "GET /partners/{pid}/deliveries"
parameters = { "query.cursor" = "$HISTORY_CURSOR" }
TOML

echo "[contract] schemathesis $("$VENV/bin/schemathesis" --version | awk '{print $NF}') against $B for ${SECONDS_BUDGET}s, seed $SEED (CONTRACT_SEED=$SEED reproduces)"
"$VENV/bin/schemathesis" --config-file "$STATE/schemathesis.toml" run openapi.yaml \
  --url "$B" \
  -H "Authorization: Bearer $KEY" \
  --checks "$CHECKS" \
  --max-time "$SECONDS_BUDGET" \
  --seed "$SEED" \
  --workers 1 \
  --generation-database none \
  --no-color \
  --report junit --report-dir "$STATE/report"
