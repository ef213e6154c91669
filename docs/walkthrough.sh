# The README's walk-through, as one script: `make test` runs this very file
# against the local runner, and checks that the README shows it unchanged.
# With `make dev` running and a receiver started in another terminal
# (python3 scripts/receiver.py 4000), run it whole (sh docs/walkthrough.sh)
# or paste it a block at a time. Every id is captured, none is copied by hand.
set -eu
B=${B:-http://127.0.0.1:3000}                # make dev's address
A="Authorization: Bearer ${ADMIN_API_KEY:-dev-admin-key-change-me}"
R=${RECEIVER:-http://127.0.0.1:4000}         # where the receiver listens
j() {  # one field of the JSON on stdin: j id, j items 0 delivery_id
  python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1:]:
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$@"
}
T=$(date -u +%H%M%S)                          # fresh transaction ids per run

curl -s $B/health; echo                       # {"status":"ok"}

# An advertiser's offer, a partner (its key is shown once), and the partner's
# endpoint: a GET postback with macros, invalidations on, sent at once and,
# on failure, again 5 s and then 10 s later (the schedule's first value is
# the wait before the first attempt).
OFFER=$(curl -s -XPOST $B/offers -H "$A" -d '{"name":"Loans","advertiser":"Acme",
  "landing_url":"https://acme.example/lp","default_payout":"10.00","security_token":"adv-token-123"}' | j id)
PARTNER=$(curl -s -XPOST $B/partners -H "$A" -d '{"name":"Publisher One"}')
P=$(echo "$PARTNER" | j id)
K="Authorization: Bearer $(echo "$PARTNER" | j api_key)"    # the partner's own key
MAIN=$(curl -s -XPOST $B/partners/$P/endpoints -H "$A" -d '{"name":"main",
  "url":"'$R'/pb?event={event}&payout={payout}&tx={transaction_id}&sub={sub1}",
  "invalidations":true,"retry_schedule":[0,5,10]}' | j id)

# A click (the 302 carries the click id to the landing page), then the
# advertiser's conversion on it. The receiver prints:
#   GET /pb?event=purchase&payout=49.99&tx=T…&sub=abc   idempotency-key: dlv_…
CLICK=$(curl -s -o /dev/null -w '%{redirect_url}' "$B/click?offer_id=$OFFER&partner_id=$P&sub1=abc" \
  | sed 's/.*click_id=//')
curl -s "$B/postback?click_id=$CLICK&event=purchase&payout=49.99&measurement=1&transaction_id=T$T&security_token=adv-token-123"
echo                                          # {"conversion_id":"evt_…","status":"recorded"}

# Our pipelines: a payout, its approval, then its reversal (the receiver gets
# event=invalidation&payout=-120.00).
curl -s -XPOST $B/events -H "$A" -d '{"transaction_id":"LN-'$T'","event":"payout","partner_id":"'$P'","payout":"120.00","status":"pending"}'; echo
curl -s -XPOST $B/events -H "$A" -d '{"transaction_id":"LN-'$T'","event":"payout","status":"approved"}'; echo
curl -s -XPOST $B/events -H "$A" -d '{"transaction_id":"LN-'$T'","event":"invalidation"}'; echo

# A partner's day, with its own key (another partner's ids answer 404).
# 1. Subscribe: a signed JSON postback for approved funded loans only.
LOANS=$(curl -s -XPOST $B/partners/$P/endpoints -H "$K" -d '{"name":"loans",
  "url":"'$R'/hook","method":"POST_JSON",
  "body":"{\"amount\": {payout}, \"user\": \"{user_id}\", \"tx\": \"{transaction_id}\"}",
  "secret":"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw","goals":["funded_loan"],"statuses":["approved"]}' | j id)

# 2. Try it: a test event now, the exact request (secrets masked), the
#    answer and the macros that rendered empty. Not a delivery.
curl -s -XPOST $B/partners/$P/endpoints/$LOANS/test -H "$K"; echo

# A funded loan from our pipelines: the loans endpoint's first delivery.
EVENT=$(curl -s -XPOST $B/events -H "$A" -d '{"transaction_id":"FL-'$T'","event":"payout",
  "partner_id":"'$P'","goal":"funded_loan","payout":"350.00","attributes":{"user_id":"u-42"}}' | j event_id)
for _ in 1 2 3 4 5 6 7 8 9 10; do              # the worker sends it (wait up to 10 s)
  curl -s "$B/partners/$P/deliveries?endpoint_id=$LOANS" -H "$K" | grep -q '"status":"delivered"' && break
  sleep 1
done

# 3. The history of this month, newest first; next_cursor pages on.
FROM=$(date -u +%Y-%m-01); TO=$(date -u +%Y-%m-%d)
curl -s "$B/partners/$P/deliveries?from=$FROM&to=$TO&limit=50" -H "$K"; echo
DELIVERY=$(curl -s "$B/partners/$P/deliveries?endpoint_id=$LOANS" -H "$K" | j items 0 delivery_id)

# 4. The month as one CSV (every page, a header row, quoted fields).
curl -s "$B/partners/$P/deliveries?from=$FROM&to=$TO" -H "$K" -H 'Accept: text/csv' -o deliveries.csv
head -2 deliveries.csv

# 5. Send a delivery again: a new round on the endpoint's schedule, logged as
#    manual (409 while it is still pending).
curl -s -XPOST $B/deliveries/$DELIVERY/retry -H "$K"; echo

# Pause while the partner's server is down: what arrives meanwhile waits, and
# re-activating sends it (an endpoint that answers 410 Gone is paused for
# you). PATCH changes only what it names; PUT replaces the whole endpoint.
curl -s -XPATCH $B/partners/$P/endpoints/$MAIN -H "$K" -d '{"active":false}'; echo
curl -s -XPATCH $B/partners/$P/endpoints/$MAIN -H "$K" -d '{"active":true}'; echo

# Back after a longer outage? Resend everything the endpoint missed since
# this morning (failed deliveries, oldest first, at most 20 a second): the
# count first, then the recovery, then its progress ("finished" at the end).
curl -s -XPOST $B/partners/$P/endpoints/$MAIN/recover -H "$K" -d '{"since":"'$TO'","dry_run":true}'; echo
RECOVERY=$(curl -s -XPOST $B/partners/$P/endpoints/$MAIN/recover -H "$K" -d '{"since":"'$TO'"}' | j recovery_id)
curl -s $B/partners/$P/endpoints/$MAIN/recover/$RECOVERY -H "$K"; echo

# Support (admin): every delivery of one event, with its attempts.
curl -s $B/events/$EVENT/deliveries -H "$A"; echo
