"""Lints template.yaml: cfn-lint on the SAM template, then on its CloudFormation
translation (cfn-lint alone does not expand the SAM transform, so broken
references or a misspelt event property would pass it).

Run with the stand-ins' venv: scripts/stack.sh venv prints its path.
"""
import json
import os
import subprocess
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
source = os.path.join(root, "template.yaml")
out_dir = os.path.join(root, ".local")
os.makedirs(out_dir, exist_ok=True)
translated = os.path.join(out_dir, "template.cfn.json")


class NoManagedPolicies:
    """The template uses inline policies only: nothing to look up in IAM (offline)."""

    def load(self):
        return {}


with open(source) as f:
    sam = yaml_parse(f.read())
# `sam package` replaces local CodeUri folders with S3 objects; do the same.
for name, res in sam["Resources"].items():
    if res.get("Type") == "AWS::Serverless::Function":
        res["Properties"]["CodeUri"] = f"s3://packaged-artifacts/{name}.zip"
# The translator fills AWS::Region from the environment; no AWS call is made.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
cfn = transform(sam, {"AdminApiKey": "x" * 16}, NoManagedPolicies())
with open(translated, "w") as f:
    json.dump(cfn, f, indent=1)

# Checks that cfn-lint cannot make on the SAM form.
deliver = cfn["Resources"].get("DeliverFunction", {})
mappings = [r for r in cfn["Resources"].values() if r.get("Type") == "AWS::Lambda::EventSourceMapping"]
errors = []
if len(mappings) != 2:
    errors.append(f"expected 2 SQS event-source mappings, found {len(mappings)}")
for m in mappings:
    if m["Properties"].get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
        errors.append(f"event-source mapping without ReportBatchItemFailures: {m['Properties']}")
for name in ("DeliveryQueue", "EventsQueue"):
    q = cfn["Resources"][name]["Properties"]
    if "RedrivePolicy" not in q:
        errors.append(f"{name} has no redrive policy")
if cfn["Resources"]["DeliveryQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"] <= 20:
    errors.append("DeliveryQueue maxReceiveCount must exceed the longest retry schedule (20 attempts)")
for e in errors:
    print("template:", e, file=sys.stderr)

lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
rc = subprocess.call([lint, "--regions", "us-east-1", "--", source, translated])
print(f"cfn-lint: {'passed' if rc == 0 else 'FAILED'} on template.yaml and its translation ({translated})")
sys.exit(1 if errors or rc else 0)
