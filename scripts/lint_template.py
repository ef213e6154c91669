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
cfn = transform(sam, {}, NoManagedPolicies())
with open(translated, "w") as f:
    json.dump(cfn, f, indent=1)

# Checks that cfn-lint cannot make on the SAM form.
deliver = cfn["Resources"].get("DeliverFunction", {})
mappings = [r for r in cfn["Resources"].values() if r.get("Type") == "AWS::Lambda::EventSourceMapping"]
errors = []
if len(mappings) != 3:
    errors.append(f"expected 3 SQS event-source mappings (deliveries, the slow lane, events), found {len(mappings)}")
for m in mappings:
    if m["Properties"].get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
        errors.append(f"event-source mapping without ReportBatchItemFailures: {m['Properties']}")
for name in ("DeliveryQueue", "SlowDeliveryQueue", "EventsQueue"):
    q = cfn["Resources"][name]["Properties"]
    if "RedrivePolicy" not in q:
        errors.append(f"{name} has no redrive policy")
for name in ("DeliveryQueue", "SlowDeliveryQueue"):
    if cfn["Resources"][name]["Properties"]["RedrivePolicy"]["maxReceiveCount"] <= 20:
        errors.append(f"{name} maxReceiveCount must exceed the longest retry schedule (20 attempts)")
# The slow lane: its own function, the deliver binary with DELIVERY_LANE=slow,
# and the fast lane may move messages there.
slow = cfn["Resources"].get("DeliverSlowFunction", {}).get("Properties", {})
if slow.get("Environment", {}).get("Variables", {}).get("DELIVERY_LANE") != "slow":
    errors.append("DeliverSlowFunction must run with DELIVERY_LANE=slow")
if "SlowDeliveryQueue" not in json.dumps(cfn["Resources"].get("DeliverFunctionRole", {}).get("Properties", {}).get("Policies", [])):
    errors.append("DeliverFunction must be allowed to send to SlowDeliveryQueue")


def operability(cfn):
    """What issue 11 asks of the deployed stack, checked on the translation."""
    res = cfn["Resources"]
    out = []

    def of_type(t):
        return {k: v for k, v in res.items() if v.get("Type") == t}

    def ref_name(v):
        if isinstance(v, dict):
            if "Ref" in v:
                return v["Ref"]
            if "Fn::GetAtt" in v:
                return v["Fn::GetAtt"][0]
        return None

    # Alarms, each notifying the topic.
    alarms = of_type("AWS::CloudWatch::Alarm")
    expected = {
        "DeliveryDLQAlarm", "EventsDLQAlarm", "ApiErrorsAlarm", "ApiThrottlesAlarm", "Api5xxAlarm",
        "DeliverErrorsAlarm", "DeliverThrottlesAlarm", "EventsErrorsAlarm", "ReconcileErrorsAlarm",
        "DeliveryFailureRateAlarm", "OverdueDeliveriesAlarm", "ConfigurationErrorsAlarm", "PanicsAlarm",
        "DeliverSlowErrorsAlarm", "SlowLaneBacklogAlarm",
    }
    for name in sorted(expected - alarms.keys()):
        out.append(f"alarm {name} is missing")
    for name, a in alarms.items():
        actions = [ref_name(x) for x in a["Properties"].get("AlarmActions", [])]
        if "AlarmTopic" not in actions:
            out.append(f"alarm {name} does not notify AlarmTopic")
    if "AlarmTopic" not in of_type("AWS::SNS::Topic"):
        out.append("no SNS topic AlarmTopic")
    if res.get("OverdueDeliveriesAlarm", {}).get("Properties", {}).get("TreatMissingData") != "breaching":
        out.append("OverdueDeliveriesAlarm must treat a silent reconciler as breaching")
    # The dashboard shows the metrics the code emits.
    dashboards = of_type("AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboards)
    if not dashboards:
        out.append("no dashboard")
    for metric in ("Conversions", "Deliveries", "AttemptLatency", "OverdueDeliveries", "ConfigurationErrors", "Panics"):
        if f'\\"{metric}\\"' not in body and f'"{metric}"' not in body:
            out.append(f"the dashboard does not show {metric}")
    # Logs: every function writes to a log group of its own with a retention.
    groups = of_type("AWS::Logs::LogGroup")
    for name, f in of_type("AWS::Lambda::Function").items():
        lc = f["Properties"].get("LoggingConfig", {})
        group = ref_name(lc.get("LogGroup"))
        if lc.get("LogFormat") != "JSON" or "ApplicationLogLevel" not in lc:
            out.append(f"{name}: LoggingConfig must be JSON with an application log level")
        if group not in groups or "RetentionInDays" not in groups[group]["Properties"]:
            out.append(f"{name}: no log group with a retention")
        env = f["Properties"].get("Environment", {}).get("Variables", {})
        if "ADMIN_API_KEY" in env:
            out.append(f"{name}: the admin key must not be in the environment")
        if "RETENTION_DAYS" not in env or "METRICS_NAMESPACE" not in env:
            out.append(f"{name}: RETENTION_DAYS and METRICS_NAMESPACE must be set")
        if "TracingConfig" not in f["Properties"]:
            out.append(f"{name}: no tracing setting")
    api_env = res["ApiFunction"]["Properties"].get("Environment", {}).get("Variables", {})
    if ref_name(api_env.get("ADMIN_KEY_SECRET_ID")) != "AdminKeySecret":
        out.append("ApiFunction must read the admin key from AdminKeySecret")
    stages = of_type("AWS::ApiGatewayV2::Stage")
    if not any("AccessLogSettings" in s["Properties"] for s in stages.values()):
        out.append("the HTTP API has no access log")
    # Concurrency: the deliver trigger is capped; the reconciler runs alone.
    for m in of_type("AWS::Lambda::EventSourceMapping").values():
        if "MaximumConcurrency" not in m["Properties"].get("ScalingConfig", {}):
            out.append(f"event-source mapping without MaximumConcurrency: {m['Properties'].get('FunctionName')}")
    if res["ReconcileFunction"]["Properties"].get("ReservedConcurrentExecutions") != 1:
        out.append("ReconcileFunction must have a reserved concurrency of 1")
    # Data is kept.
    table = res["Table"]
    if table.get("DeletionPolicy") != "Retain" or table.get("UpdateReplacePolicy") != "Retain":
        out.append("Table must be retained on delete and replace")
    tp = table["Properties"]
    if tp.get("DeletionProtectionEnabled") is not True:
        out.append("Table must have deletion protection")
    if not tp.get("TimeToLiveSpecification", {}).get("Enabled"):
        out.append("Table must have TTL enabled")
    for q in ("DeliveryQueue", "SlowDeliveryQueue", "DeliveryDLQ", "EventsQueue", "EventsDLQ"):
        if "DeletionPolicy" not in res[q]:
            out.append(f"{q}: its deletion policy must be decided on purpose")
    for q in ("EventsQueue", "EventsDLQ"):
        if res[q].get("DeletionPolicy") != "Retain":
            out.append(f"{q} holds unrecorded events: retain it")
    for q in ("DeliveryQueue", "SlowDeliveryQueue", "DeliveryDLQ"):
        if res[q].get("DeletionPolicy") != "Retain" or res[q].get("UpdateReplacePolicy") != "Retain":
            out.append(f"{q} is the only record of deliveries queued before their write: retain it")
    # Gradual deploys rolled back by alarms.
    groups = of_type("AWS::CodeDeploy::DeploymentGroup")
    for fn in ("ApiFunction", "DeliverFunction", "DeliverSlowFunction", "EventsFunction"):
        g = groups.get(f"{fn}DeploymentGroup")
        if not g:
            out.append(f"{fn}: no CodeDeploy deployment group (AutoPublishAlias + DeploymentPreference)")
        elif not g["Properties"].get("AlarmConfiguration", {}).get("Alarms"):
            out.append(f"{fn}: its deployment is not rolled back by alarms")
    # Least privilege: grants nobody uses are gone.
    for name, role in of_type("AWS::IAM::Role").items():
        for pol in role["Properties"].get("Policies", []):
            text = json.dumps(pol)
            if name.startswith("ApiFunction") and "ConditionCheckItem" in text:
                out.append("ApiFunction needs no dynamodb:ConditionCheckItem")
            for st in pol["PolicyDocument"]["Statement"]:
                if not isinstance(st, dict) or "Action" not in st:
                    continue
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                resources = json.dumps(st.get("Resource"))
                if "sqs:ChangeMessageVisibility" in actions and "DLQ" in resources:
                    out.append(f"{name}: no visibility changes on a DLQ")
                # The deliver function reads the history index (GSI1) for a
                # recovery's steps, and no other index.
                if name.startswith("DeliverFunction") and "dynamodb:Query" in actions and (
                    "/index/*" in resources or "/index/GSI2" in resources
                ):
                    out.append("DeliverFunction queries no index but GSI1 (recovery steps)")
                if name.startswith("DeliverSlowFunction") and "dynamodb:Query" in actions and "/index/" in resources:
                    out.append("DeliverSlowFunction queries no index")
    # Outputs: every queue, DLQ, the dashboard and the alarm topic.
    outputs = cfn.get("Outputs", {})
    for o in ("ApiUrl", "DeliveryQueueUrl", "SlowDeliveryQueueUrl", "DeliveryDLQUrl", "EventsQueueUrl", "EventsDLQUrl",
              "DashboardUrl", "AlarmTopicArn", "AdminKeySecretArn"):
        if o not in outputs:
            out.append(f"output {o} is missing")
    return out


errors += operability(cfn)
for e in errors:
    print("template:", e, file=sys.stderr)

lint = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
rc = subprocess.call([lint, "--regions", "us-east-1", "--", source])
# SAM resolves some parameters while translating (DeploymentPreference's Type
# becomes a CodeDeploy config name), so the translation may leave them unused.
rc |= subprocess.call([lint, "--regions", "us-east-1", "--ignore-checks", "W2001", "--", translated])
print(f"cfn-lint: {'passed' if rc == 0 else 'FAILED'} on template.yaml and its translation ({translated})")
print(f"operability checks (alarms, dashboard, logs, retention, concurrency, deletion, deploys, grants): {'passed' if not errors else 'FAILED'}")
sys.exit(1 if errors or rc else 0)
