"""Sends one message to make dev's events queue, as our pipelines would.

    "$(scripts/stack.sh venv)/bin/python" scripts/send_event.py '{"transaction_id": ...}' [ENV_FILE]

Reads the queue URL, region and SQS endpoint from .local/dev/lambda.env
(written by make dev), so neither the AWS CLI nor any setting is needed.
Uses boto3 from the stack's venv (moto's dependency). Prints the message id.
"""
import pathlib
import sys

import boto3

env = {}
path = pathlib.Path(__file__).resolve().parent.parent / ".local/dev/lambda.env"
if len(sys.argv) > 2:  # another stack's env file (the walk-through check's)
    path = pathlib.Path(sys.argv[2])
if not path.exists():
    sys.exit("start the local stack first: make dev (in another terminal)")
for line in path.read_text().splitlines():
    if "=" in line and not line.startswith("#"):
        key, value = line.split("=", 1)
        env[key] = value
body = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
sqs = boto3.client(
    "sqs",
    region_name=env["AWS_REGION"],
    endpoint_url=env["AWS_ENDPOINT_URL_SQS"],
    aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
    aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
)
answer = sqs.send_message(QueueUrl=env["EVENTS_QUEUE_URL"], MessageBody=body)
print(answer["MessageId"])
