"""Writes events/*.json: API Gateway HTTP API (v2) events for every route and
SQS events for the delivery and events queues. Ids match what README's curl
`make lambda-events` seeds (offer lambda-offer, partner lambda-partner); the admin key is make dev's
default. Tests replace the placeholders (__CLICK_ID__, ...) with live ids.

    python3 scripts/gen_events.py
"""
import json
import os
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN = "Bearer dev-admin-key-change-me"
PARTNER = "Bearer __PARTNER_KEY__"


def http(name, method, path, query="", body=None, auth=None, content_type="application/json"):
    headers = {"host": "abcd1234.execute-api.us-east-1.amazonaws.com", "user-agent": "curl/8.0", "x-forwarded-proto": "https"}
    if auth:
        headers["authorization"] = auth
    if body is not None:
        headers["content-type"] = content_type
        if not isinstance(body, str):
            body = json.dumps(body)
    event = {
        "version": "2.0",
        "routeKey": "ANY /{proxy+}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcd1234",
            "domainName": "abcd1234.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abcd1234",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "curl/8.0"},
            "requestId": f"req-{name}",
            "routeKey": "ANY /{proxy+}",
            "stage": "$default",
            "time": "23/Nov/2026:06:00:00 +0000",
            "timeEpoch": 1795413600000,
        },
        "pathParameters": {"proxy": path.lstrip("/")},
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(urllib.parse.parse_qsl(query))
    if body is not None:
        event["body"] = body
    write(f"http-{name}.json", event)


def sqs(name, queue, bodies, attributes=None):
    records = []
    for i, body in enumerate(bodies):
        records.append({
            "messageId": f"msg-{name}-{i}",
            "receiptHandle": f"receipt-{name}-{i}",
            "body": body if isinstance(body, str) else json.dumps(body),
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795413600000",
                           "SenderId": "123456789012", "ApproximateFirstReceiveTimestamp": "1795413600001"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
            "awsRegion": "us-east-1",
        })
    write(f"sqs-{name}.json", {"Records": records})


def write(file, event):
    with open(os.path.join(ROOT, "events", file), "w") as f:
        json.dump(event, f, indent=2)
        f.write("\n")


offer = {"id": "lambda-offer", "name": "Personal loans", "advertiser": "Acme Lending", "landing_url": "https://acme.example/lp",
         "default_payout": "10.00", "currency": "USD", "security_token": "adv-token-123", "attribution_window_days": 30}
http("health", "GET", "/health")
http("offers-create", "POST", "/offers", body=offer, auth=ADMIN)
http("offers-read", "GET", "/offers/lambda-offer", auth=ADMIN)
http("offers-update", "PUT", "/offers/lambda-offer", body={**offer, "name": "Personal loans (new)"}, auth=ADMIN)
http("offers-delete", "DELETE", "/offers/lambda-offer", auth=ADMIN)
http("partners-create", "POST", "/partners", body={"id": "lambda-partner", "name": "Publisher One"}, auth=ADMIN)
http("partners-read", "GET", "/partners/lambda-partner", auth=PARTNER)
endpoint = {"name": "main", "url": "https://partner.example/pb?payout={payout}&tx={transaction_id}&sub={sub1}",
            "events": ["*"], "retry_schedule": [0, 60, 90, 120, 150]}
http("endpoints-create", "POST", "/partners/lambda-partner/endpoints", body=endpoint, auth=PARTNER)
http("endpoints-list", "GET", "/partners/lambda-partner/endpoints", auth=PARTNER)
http("endpoints-read", "GET", "/partners/lambda-partner/endpoints/__ENDPOINT_ID__", auth=PARTNER)
http("endpoints-update", "PUT", "/partners/lambda-partner/endpoints/__ENDPOINT_ID__", body={**endpoint, "name": "main (v2)"}, auth=PARTNER)
http("endpoints-delete", "DELETE", "/partners/lambda-partner/endpoints/__ENDPOINT_ID__", auth=PARTNER)
http("click", "GET", "/click", query="offer_id=lambda-offer&partner_id=lambda-partner&sub1=campaign-7&sub2=banner")
http("clicks-create", "POST", "/clicks", body={"offer_id": "lambda-offer", "partner_id": "lambda-partner", "attributes": {"sub1": "campaign-7"}}, auth=ADMIN)
pb = "click_id=__CLICK_ID__&event=purchase&payout=49.99&measurement=1&transaction_id=T-1001&security_token=adv-token-123"
http("postback-get", "GET", "/postback", query=pb)
http("postback-post-form", "POST", "/postback", body=pb.replace("T-1001", "T-1002"), content_type="application/x-www-form-urlencoded")
http("postback-post-json", "POST", "/postback", body={"click_id": "__CLICK_ID__", "event": "lead", "payout": "5.00", "measurement": 1,
                                                       "security_token": "adv-token-123"})
payout = {"transaction_id": "LN-5001", "event": "payout", "partner_id": "lambda-partner", "offer_id": "lambda-offer", "goal": "funded_loan",
          "payout": "120.00", "currency": "USD", "status": "pending", "occurred_at": "2026-11-23T06:00:00Z",
          "attributes": {"user_id": "u-77", "payload": {"loan_id": "L-9"}}}
http("events-single", "POST", "/events", body=payout, auth=ADMIN)
http("events-batch", "POST", "/events", body=[
    {**payout, "transaction_id": "LN-5002"},
    {"transaction_id": "LN-5002", "event": "payout", "status": "approved", "occurred_at": "2026-11-23T12:00:00Z"},
    {"transaction_id": "LN-5002", "event": "invalidation", "occurred_at": "2026-11-24T09:00:00Z"},
    {"transaction_id": "RW-1", "event": "reward.created", "partner_id": "lambda-partner", "payout": "0.50"},
], auth=ADMIN)
http("endpoints-test", "POST", "/partners/lambda-partner/endpoints/__ENDPOINT_ID__/test", auth=PARTNER)
http("deliveries-history", "GET", "/partners/lambda-partner/deliveries", query="from=2026-11-01&to=2026-11-30&status=delivered&limit=50", auth=PARTNER)
http("deliveries-history-csv", "GET", "/partners/lambda-partner/deliveries", query="from=2026-11-01&format=csv", auth=PARTNER)
http("events-deliveries", "GET", "/events/__EVENT_ID__/deliveries", auth=ADMIN)
http("deliveries-retry", "POST", "/deliveries/__DELIVERY_ID__/retry", auth=PARTNER)
sqs("events-queue", "postback-dev-EventsQueue", [{**payout, "transaction_id": "LN-6001"}])
# The reconciler's form (ids only: the worker reads the event) and the fan-out's (it carries the event).
sqs("delivery", "postback-dev-DeliveryQueue", [{"delivery_id": "__DELIVERY_ID__", "partner_id": "lambda-partner", "endpoint_id": "__ENDPOINT_ID__"}])
sqs("delivery-fanout", "postback-dev-DeliveryQueue", [{
    "delivery_id": "__DELIVERY_ID__", "partner_id": "lambda-partner", "endpoint_id": "__ENDPOINT_ID__",
    "event": {"id": "__EVENT_ID__", "source": "postback", "event": "purchase", "status": "approved",
              "transaction_id": "T-1001", "partner_id": "lambda-partner", "click_id": "__CLICK_ID__",
              "payout": "49.99", "currency": "USD", "occurred_at": "2026-11-27T09:00:00Z",
              "recorded_at": "2026-11-27T09:00:00Z", "attributes": "{\"measurement\":\"1\"}",
              "delivery_ids": ["__DELIVERY_ID__"], "sequence": 1}}])
sqs("delivery-malformed", "postback-dev-DeliveryQueue", ["{\"delivery\": oops"])
sqs("slow-delivery", "postback-dev-SlowDeliveryQueue", [{"delivery_id": "__DELIVERY_ID__", "partner_id": "lambda-partner", "endpoint_id": "__ENDPOINT_ID__"}])
http("offers-list", "GET", "/offers", query="limit=50", auth=ADMIN)
http("partners-list", "GET", "/partners", auth=ADMIN)
http("offers-postbacks", "GET", "/offers/lambda-offer/postbacks", auth=ADMIN)
http("endpoints-patch", "PATCH", "/partners/lambda-partner/endpoints/__ENDPOINT_ID__", body={"active": False}, auth=PARTNER)
http("admin-dead-letters", "GET", "/admin/dead-letters", query="queue=deliveries", auth=ADMIN)
http("admin-redrive", "POST", "/admin/dead-letters/redrive", query="queue=deliveries", auth=ADMIN)
# The reconciler's trigger: an EventBridge Scheduler invocation (its payload is not read).
write("scheduled-reconcile.json", {"version": "0", "id": "6f6a1c1e-0000-4d6a-9c2f-000000000000",
      "detail-type": "Scheduled Event", "source": "aws.scheduler", "account": "123456789012",
      "time": "2026-11-23T12:00:00Z", "region": "us-east-1",
      "resources": ["arn:aws:scheduler:us-east-1:123456789012:schedule/default/postback-reconcile"], "detail": {}})
print("wrote", len(os.listdir(os.path.join(ROOT, "events"))), "events")
