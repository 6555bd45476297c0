"""Security and wiring properties of template.yaml, so a careless edit fails CI.

The template is parsed with the local stack's CloudFormation-aware YAML loader (short tags
become their long forms); nothing is resolved, so the assertions look at what is declared.
Each check is a function of a template document; `test_checks_catch_broken_templates`
breaks a copy of the template once per property and asserts that the check then fails.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local.sam.template import load_yaml

ROOT = Path(__file__).resolve().parents[2]
TABLES = (
    "UsersTable",
    "ItemsTable",
    "AssignmentsTable",
    "EventsTable",
    "ExperimentsTable",
    "AggregatesTable",
)
FUNCTIONS = (
    "RecommendationsFunction",
    "EventsFunction",
    "EventReplayFunction",
    "ExperimentsFunction",
    "AggregatorFunction",
    "PrepareDataFunction",
    "QualityGateFunction",
    "ModelMonitorFunction",
)
OUTPUTS = (
    "ApiUrl",
    "DataBucketName",
    "TrainingStateMachineArn",
    "PipelineTopicArn",
    "DataKeyArn",
    *(f"{t}Name" for t in TABLES),
)
DATA_KEY_ARN = {"Fn::GetAtt": ["DataKey", "Arn"]}
RUNTIME = "python3.13"  # Amazon Linux 2023; python3.11 runs on Amazon Linux 2 (issue 10, item 9)


@pytest.fixture(scope="module")
def doc() -> dict:
    return load_yaml((ROOT / "template.yaml").read_text())


def resources(doc: dict, rtype: str) -> dict[str, dict]:
    return {k: v for k, v in doc["Resources"].items() if v.get("Type") == rtype}


def props(doc: dict, logical_id: str) -> dict:
    return doc["Resources"][logical_id].get("Properties") or {}


def is_data_key(value: Any) -> bool:
    return value in (DATA_KEY_ARN, {"Ref": "DataKey"}, {"Fn::GetAtt": "DataKey.Arn"})


# --- checks (each raises AssertionError naming the offending place) --------------------------


def check_tables_encrypted_with_data_key(doc: dict) -> None:
    assert set(TABLES) <= set(resources(doc, "AWS::DynamoDB::Table")), "a table is missing"
    for name in TABLES:
        sse = props(doc, name).get("SSESpecification") or {}
        assert sse.get("SSEEnabled") is True and sse.get("SSEType") == "KMS", name
        assert is_data_key(sse.get("KMSMasterKeyId")), f"{name} is not encrypted with DataKey"


def check_tables_have_pitr(doc: dict) -> None:
    for name in TABLES:
        pitr = props(doc, name).get("PointInTimeRecoverySpecification") or {}
        assert pitr.get("PointInTimeRecoveryEnabled") is True, f"{name}: PITR off"


def check_table_keys(doc: dict) -> None:
    """Keys and indexes of docs/architecture.md (serving and pipeline code rely on them)."""
    expected = {
        "UsersTable": [("user_id", "HASH")],
        "ItemsTable": [("item_id", "HASH")],
        "AssignmentsTable": [("user_id", "HASH"), ("experiment_id", "RANGE")],
        "EventsTable": [("event_id", "HASH")],
        "ExperimentsTable": [("experiment_id", "HASH")],
        "AggregatesTable": [("experiment_id", "HASH"), ("slice", "RANGE")],
    }
    for name, keys in expected.items():
        got = [(k["AttributeName"], k["KeyType"]) for k in props(doc, name)["KeySchema"]]
        assert got == keys, f"{name} keys {got}"
    indexes = {
        "ItemsTable": ("CategoryIndex", [("category", "HASH"), ("item_id", "RANGE")]),
        "EventsTable": ("PendingForwardIndex", [("forward_pending", "HASH"), ("received_at", "RANGE")]),
    }
    for name, (index, keys) in indexes.items():
        gsis = {g["IndexName"]: g for g in props(doc, name).get("GlobalSecondaryIndexes", [])}
        assert index in gsis, f"{name}: no {index}"
        assert [(k["AttributeName"], k["KeyType"]) for k in gsis[index]["KeySchema"]] == keys
    ttl = props(doc, "EventsTable").get("TimeToLiveSpecification") or {}
    assert ttl == {"AttributeName": "expires_at", "Enabled": True}, "events TTL"


def check_billing_mode_from_parameter(doc: dict) -> None:
    for name in TABLES:
        p = props(doc, name)
        assert p.get("BillingMode") == {"Ref": "TableBillingMode"}, name
        assert "Fn::If" in p.get("ProvisionedThroughput", {}), f"{name}: capacity not conditional"


def check_bucket_encrypted_and_private(doc: dict) -> None:
    p = props(doc, "DataBucket")
    (rule,) = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    default = rule["ServerSideEncryptionByDefault"]
    assert default["SSEAlgorithm"] == "aws:kms" and is_data_key(default.get("KMSMasterKeyID")), "bucket SSE"
    assert rule.get("BucketKeyEnabled") is True
    block = p["PublicAccessBlockConfiguration"]
    for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
        assert block.get(flag) is True, f"public access: {flag}"
    assert p.get("VersioningConfiguration", {}).get("Status") == "Enabled", "versioning"


def _statements(policy_document: dict) -> list[dict]:
    statements = policy_document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else statements


def check_bucket_policy_denies_plain_http(doc: dict) -> None:
    (policy,) = resources(doc, "AWS::S3::BucketPolicy").values()
    assert policy["Properties"]["Bucket"] == {"Ref": "DataBucket"}
    denies = [
        s
        for s in _statements(policy["Properties"]["PolicyDocument"])
        if s.get("Effect") == "Deny"
        and str((s.get("Condition") or {}).get("Bool", {}).get("aws:SecureTransport")).lower() == "false"
        and s.get("Action") in ("s3:*", ["s3:*"])
        and s.get("Principal") in ("*", {"AWS": "*"})
    ]
    assert denies, "no Deny on aws:SecureTransport=false"
    resources_denied = json.dumps(denies[0]["Resource"])
    assert "DataBucket.Arn}/*" in resources_denied and "DataBucket" in resources_denied


def iam_statements(doc: dict) -> Iterator[tuple[str, dict]]:
    """Every IAM statement: roles' inline policies, managed policies, SAM policy statements."""
    for logical_id, spec in doc["Resources"].items():
        p = spec.get("Properties") or {}
        rtype = spec.get("Type")
        documents = []
        if rtype == "AWS::IAM::Role":
            documents += [pol["PolicyDocument"] for pol in p.get("Policies", [])]
        if rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            documents.append(p["PolicyDocument"])
        if rtype in ("AWS::Serverless::Function", "AWS::Serverless::StateMachine"):
            policies = p.get("Policies", [])
            for pol in policies if isinstance(policies, list) else [policies]:
                if isinstance(pol, dict) and "Statement" in pol:
                    documents.append(pol)
        for document in documents:
            for statement in _statements(document):
                yield logical_id, statement


def check_no_wildcard_actions(doc: dict) -> None:
    seen = 0
    for logical_id, statement in iam_statements(doc):
        actions = statement.get("Action", [])
        for action in [actions] if isinstance(actions, str) else actions:
            seen += 1
            assert isinstance(action, str), f"{logical_id}: computed action {action!r}"
            assert "*" not in action, f"{logical_id}: wildcard action {action!r}"
        assert "NotAction" not in statement, f"{logical_id}: NotAction"
    assert seen > 20, "no IAM statements found: the check looks in the wrong place"


def check_personalize_scoped_to_project(doc: dict) -> None:
    """Serving reaches only this project's campaigns (names carry ProjectName-Environment)."""
    found = False
    for logical_id, statement in iam_statements(doc):
        actions = statement.get("Action", [])
        if "personalize:GetRecommendations" in ([actions] if isinstance(actions, str) else actions):
            found = True
            text = json.dumps(statement["Resource"])
            assert "campaign/${ProjectName}-${Environment}-*" in text, f"{logical_id}: {text}"
    assert found, "no statement grants personalize:GetRecommendations"


def check_log_groups_retained_and_encrypted(doc: dict) -> None:
    groups = resources(doc, "AWS::Logs::LogGroup")
    assert len(groups) >= len(FUNCTIONS) + 2, "a log group is missing"
    for name, spec in groups.items():
        p = spec["Properties"]
        assert p.get("RetentionInDays") == {"Ref": "LogRetentionDays"}, f"{name}: retention"
        assert is_data_key(p.get("KmsKeyId")), f"{name}: not encrypted with DataKey"


def check_functions_have_own_log_groups(doc: dict) -> None:
    groups = resources(doc, "AWS::Logs::LogGroup")
    for name in FUNCTIONS:
        target = props(doc, name).get("LoggingConfig", {}).get("LogGroup", {}).get("Ref")
        assert target in groups, f"{name}: no explicit log group"


def check_schedules(doc: dict) -> None:
    events = props(doc, "TrainingStateMachine")["Events"]
    expected = {"UPDATE": ("UpdateSchedule", "UpdateScheduleOn"), "FULL": ("FullSchedule", "FullScheduleOn")}
    for mode, (parameter, condition) in expected.items():
        matching = [
            e["Properties"]
            for e in events.values()
            if e.get("Type") == "ScheduleV2" and json.loads(e["Properties"]["Input"])["trainingMode"] == mode
        ]
        assert len(matching) == 1, f"one {mode} schedule expected, found {len(matching)}"
        schedule = matching[0]
        assert schedule["ScheduleExpression"] == {"Ref": parameter}, mode
        assert schedule["State"] == {"Fn::If": [condition, "ENABLED", "DISABLED"]}, f"{mode} state"
    conditions = doc["Conditions"]
    assert conditions["UpdateScheduleOn"] == {"Fn::Equals": [{"Ref": "EnableUpdateSchedule"}, "true"]}
    assert conditions["FullScheduleOn"] == {"Fn::Equals": [{"Ref": "EnableFullSchedule"}, "true"]}
    # AWS: complete a FULL retraining weekly; UPDATE (which stops automatic updates) only on request
    assert doc["Parameters"]["FullSchedule"]["Default"] == "rate(7 days)"
    assert doc["Parameters"]["EnableFullSchedule"]["Default"] == "true"
    assert doc["Parameters"]["EnableUpdateSchedule"]["Default"] == "false"


def check_function_globals(doc: dict) -> None:
    glob = doc["Globals"]["Function"]
    assert glob.get("Runtime") == RUNTIME and glob.get("Tracing") == "Active", "Globals runtime/tracing"
    assert glob.get("Architectures") == [{"Ref": "LambdaArchitecture"}]
    for name in FUNCTIONS:
        p = props(doc, name)
        assert p.get("Runtime", RUNTIME) == RUNTIME, f"{name} overrides the runtime"
        assert p.get("Tracing", "Active") == "Active", f"{name} turns tracing off"
        assert p.get("Handler") == "app.lambda_handler", name
        assert {"Ref": "CommonLayer"} in p.get("Layers", []), (
            f"{name}: no CommonLayer (powertools, recsys_common)"
        )
        code = p.get("CodeUri", "")
        assert code.startswith("functions/") and code.endswith("/"), f"{name}: CodeUri {code!r}"
    env = glob["Environment"]["Variables"]
    for var in (
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "EXPERIMENT_ID",
        "VARIANT_WEIGHTS",
    ):
        assert var in env, f"Globals env lacks {var}"
    for table in TABLES:
        var = table.removesuffix("Table").upper() + "_TABLE"
        assert env.get(var) == {"Ref": table}, f"Globals env {var}"


def check_state_machine(doc: dict) -> None:
    p = props(doc, "TrainingStateMachine")
    assert p["DefinitionUri"] == "statemachines/training.asl.json"
    assert (ROOT / p["DefinitionUri"]).is_file()
    assert p.get("Tracing", {}).get("Enabled") is True, "state machine tracing"
    logging = p.get("Logging") or {}
    assert logging.get("Level") in ("ERROR", "ALL", "FATAL"), "state machine logging"
    subs = p["DefinitionSubstitutions"]
    for key in ("PollSchedule", "MaxPolls", "ProjectPrefix", "PersonalizeRoleArn", "ExperimentsTable"):
        assert key in subs, f"substitution {key} missing"


def check_outputs(doc: dict) -> None:
    missing = set(OUTPUTS) - set(doc.get("Outputs") or {})
    assert not missing, f"outputs missing: {sorted(missing)}"


def check_data_key(doc: dict) -> None:
    p = props(doc, "DataKey")
    assert p.get("EnableKeyRotation") is True, "key rotation"
    assert p.get("PendingWindowInDays") == {"Ref": "KmsDeletionWindowDays"}
    logs = [s for s in _statements(p["KeyPolicy"]) if "logs." in json.dumps(s.get("Principal"))]
    assert logs and all("kms:EncryptionContext:aws:logs:arn" in json.dumps(s.get("Condition")) for s in logs)


def _actions(statement: dict) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def _resources(statement: dict) -> list:
    resources = statement.get("Resource", [])
    return resources if isinstance(resources, list) else [resources]


def check_put_events_on_any_resource(doc: dict) -> None:
    """PutEvents has no resource type: the caller "must have permission to perform the
    personalize:PutEvents action with the wildcard * in the Resource element" (PutEvents API
    reference); anything narrower is denied on AWS (issue 10, item 1)."""
    granted = set()
    for logical_id, statement in iam_statements(doc):
        if "personalize:PutEvents" in _actions(statement):
            assert _resources(statement) == ["*"], f"{logical_id}: PutEvents on {_resources(statement)}"
            granted.add(logical_id)
    assert granted == {"EventsFunction", "EventReplayFunction"}, granted


def check_lint_rules_not_silenced(doc: dict) -> None:
    """cfn-lint runs with every rule: no ignore_checks in the template (or per resource)."""
    assert "cfn-lint" not in (doc.get("Metadata") or {}), "template-wide cfn-lint config"
    for logical_id, spec in doc["Resources"].items():
        assert "cfn-lint" not in (spec.get("Metadata") or {}), f"{logical_id}: cfn-lint config"


def check_lambda_build(doc: dict) -> None:
    """Every function and the layer build with functions/Makefile for LambdaArchitecture (python3.13
    wheels installed by pip; no hard-coded architecture, no python3.11 anywhere)."""
    makefile = {"BuildMethod": "makefile", "ContextPath": "functions"}
    for name in FUNCTIONS:
        metadata = doc["Resources"][name].get("Metadata") or {}
        assert {k: metadata.get(k) for k in makefile} == makefile, f"{name}: Metadata {metadata}"
        assert re.search(
            rf"^build-%Function:|^build-{name}:", (ROOT / "functions/Makefile").read_text(), re.M
        )
    layer = doc["Resources"]["CommonLayer"]
    assert {k: layer["Metadata"].get(k) for k in makefile} == makefile, "CommonLayer Metadata"
    assert layer["Metadata"].get("BuildArchitecture") == {"Ref": "LambdaArchitecture"}, "layer architecture"
    assert layer["Properties"].get("CompatibleArchitectures") == [{"Ref": "LambdaArchitecture"}]
    assert layer["Properties"].get("CompatibleRuntimes") == [RUNTIME], "layer runtimes"
    assert "python3.11" not in json.dumps(doc), "python3.11 left in the template"


# The Personalize KMS guide: "Your AWS KMS key policy and IAM policies must grant permissions for the
# following actions: Decrypt, GenerateDataKey, DescribeKey, CreateGrant (only required in key policy),
# ListGrants" (https://docs.aws.amazon.com/personalize/latest/dg/granting-personalize-key-access.html).
KMS_FOR_PERSONALIZE = {
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:DescribeKey",
    "kms:CreateGrant",
    "kms:ListGrants",
}
PERSONALIZE_ROLE_ARN = {"Fn::GetAtt": ["PersonalizeRole", "Arn"]}


def check_personalize_key_access(doc: dict) -> None:
    """DataKey's policy and PersonalizeRole grant what the guide lists, the role trusts Personalize
    with the confused-deputy conditions, and the state machine may pass only that role to it."""
    key_statements = _statements(props(doc, "DataKey")["KeyPolicy"])
    for principal in ({"AWS": PERSONALIZE_ROLE_ARN}, {"Service": "personalize.amazonaws.com"}):
        granted = set()
        for s in key_statements:
            if s.get("Effect") == "Allow" and s.get("Principal") == principal:
                granted |= set(_actions(s))
        assert granted == KMS_FOR_PERSONALIZE, f"key policy for {principal}: {sorted(granted)}"
    role_kms = set()
    for logical_id, statement in iam_statements(doc):
        if logical_id == "PersonalizeRolePolicy":
            role_kms |= {a for a in _actions(statement) if a.startswith("kms:")}
            if any(a.startswith("kms:") for a in _actions(statement)):
                assert _resources(statement) == [DATA_KEY_ARN], statement
    assert role_kms == KMS_FOR_PERSONALIZE - {"kms:CreateGrant"}, f"PersonalizeRole kms: {sorted(role_kms)}"
    assert props(doc, "PersonalizeRolePolicy")["RoleName"] == {"Ref": "PersonalizeRole"}
    (trust,) = _statements(props(doc, "PersonalizeRole")["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"Service": "personalize.amazonaws.com"}
    assert set(trust["Condition"]) == {"StringEquals", "ArnLike"}, "aws:SourceAccount and aws:SourceArn"
    passes = [s for lid, s in iam_statements(doc) if "iam:PassRole" in _actions(s)]
    assert [lid for lid, s in iam_statements(doc) if "iam:PassRole" in _actions(s)] == [
        "TrainingStateMachine"
    ]
    (passing,) = passes
    assert _resources(passing) == [PERSONALIZE_ROLE_ARN], passing
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "personalize.amazonaws.com"}}
    subs = props(doc, "TrainingStateMachine")["DefinitionSubstitutions"]
    assert subs["DataKeyArn"] == DATA_KEY_ARN and subs["PersonalizeRoleArn"] == PERSONALIZE_ROLE_ARN


def check_prepare_data_s3_is_what_it_calls(doc: dict) -> None:
    """app.py: GetObject raw/<kind>.csv (absent optional files need ListBucket to read as 404),
    PutObject training/ and reports/; nothing else (no ACLs, no lifecycle, no deletes)."""
    policies = props(doc, "PrepareDataFunction")["Policies"]
    assert not [p for p in policies if isinstance(p, dict) and any(k.startswith("S3") for k in p)], (
        "S3 template"
    )
    granted = {}
    for logical_id, statement in iam_statements(doc):
        if logical_id == "PrepareDataFunction":
            for action in _actions(statement):
                if action.startswith("s3:"):
                    granted.setdefault(action, []).extend(json.dumps(r) for r in _resources(statement))
    assert sorted(granted) == ["s3:GetObject", "s3:ListBucket", "s3:PutObject"], sorted(granted)
    assert granted["s3:GetObject"] == [json.dumps({"Fn::Sub": "${DataBucket.Arn}/raw/*"})]
    assert granted["s3:ListBucket"] == [json.dumps({"Fn::GetAtt": ["DataBucket", "Arn"]})]
    assert sorted(granted["s3:PutObject"]) == sorted(
        json.dumps({"Fn::Sub": f"${{DataBucket.Arn}}/{prefix}/*"}) for prefix in ("reports", "training")
    )


def _code_dir(function: str) -> Path:
    """functions/<snake_case> of a function's logical id (EventReplayFunction -> functions/event_replay)."""
    return ROOT / "functions" / re.sub(r"(?<!^)(?=[A-Z])", "_", function.removesuffix("Function")).lower()


def _called_operations() -> dict[str, set[str]]:
    """{role owner: IAM actions its code calls}: boto3 methods in a function's folder and the common
    layer; aws-sdk/optimised integrations in the state machine's definition."""
    import botocore.session

    session = botocore.session.get_session()
    to_action = {}
    for service in ("personalize", "personalize-runtime", "personalize-events", "s3"):
        model = session.get_service_model(service)
        prefix = model.signing_name if service == "s3" else "personalize"
        for op in model.operation_names:
            to_action[re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower()] = f"{prefix}:{op}"
    common = "".join(p.read_text() for p in (ROOT / "functions/common/recsys_common").glob("*.py"))
    called = {}
    for name in FUNCTIONS:
        code = common + "".join(p.read_text() for p in _code_dir(name).rglob("*.py"))
        called[name] = {to_action[m] for m in re.findall(r"\.(\w+)\(", code) if m in to_action}
    asl = (ROOT / "statemachines/training.asl.json").read_text()
    called["TrainingStateMachine"] = {
        f"{service}:{op[0].upper()}{op[1:]}"
        for service, op in re.findall(r"arn:aws:states:::aws-sdk:(\w+):(\w+)", asl)
    }
    return called


# Granted but not (yet) called, each with its reason. Everything else granted must be called.
NOT_CALLED = {
    ("PrepareDataFunction", "s3:ListBucket"): "turns GetObject of an absent optional raw file into a 404",
}


def check_granted_actions_are_called(doc: dict) -> None:
    """Personalize and S3 permissions of each function and the state machine are calls its code or
    definition makes (least privilege: issue 10, item 10), apart from NOT_CALLED's reasoned list."""
    called = _called_operations()
    for logical_id, statement in iam_statements(doc):
        for action in _actions(statement):
            if action.split(":")[0] in ("personalize", "s3") and logical_id in called:
                assert action in called[logical_id] or (logical_id, action) in NOT_CALLED, (
                    f"{logical_id} is granted {action} but never calls it"
                )


def check_vpc_parameters_guarded(doc: dict) -> None:
    """No resource gets an empty VPC id: UseVpc needs every VPC parameter, and the Rules make
    CloudFormation refuse EnableVpcEndpoints=true without them (instead of silently no VPC)."""
    use_vpc = json.dumps(doc["Conditions"]["UseVpc"])
    rules = json.dumps(doc.get("Rules") or {})
    for name in ("EnableVpcEndpoints", "VpcId", "SubnetIds", "SecurityGroupIds", "RouteTableIds"):
        assert f'{{"Ref": "{name}"}}' in use_vpc, f"UseVpc ignores {name}"
        assert f'{{"Ref": "{name}"}}' in rules, f"no rule on {name}"


def check_counting_off_the_request_path(doc: dict) -> None:
    """Issue 16: serving Lambdas cannot write the aggregates (no shared item on the request path);
    the aggregator reads the assignments stream with bisection, partial batch responses, bounded
    retries and an on-failure queue whose depth and the stream's iterator age raise alarms."""
    for name in ("RecommendationsFunction", "EventsFunction"):
        text = json.dumps(props(doc, name).get("Policies"))
        assert '"Ref": "AggregatesTable"' not in text, f"{name} may write the aggregates"
    stream = props(doc, "AssignmentsTable").get("StreamSpecification") or {}
    assert stream.get("StreamViewType") == "NEW_AND_OLD_IMAGES", "assignments stream: old and new images"
    (event,) = [e for e in props(doc, "AggregatorFunction")["Events"].values() if e["Type"] == "DynamoDB"]
    e = event["Properties"]
    assert e["Stream"] == {"Fn::GetAtt": ["AssignmentsTable", "StreamArn"]}
    assert e.get("BisectBatchOnFunctionError") is True and e.get("FunctionResponseTypes") == [
        "ReportBatchItemFailures"
    ]
    assert e.get("MaximumRetryAttempts", -1) >= 0, "unbounded retries block the shard for 24 h"
    queue = e["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    alarmed = {
        json.dumps(a["Properties"].get("Dimensions"))
        for a in resources(doc, "AWS::CloudWatch::Alarm").values()
    }
    assert any(queue in d for d in alarmed), "no alarm on the aggregator's DLQ"
    metrics = {a["Properties"].get("MetricName") for a in resources(doc, "AWS::CloudWatch::Alarm").values()}
    assert "IteratorAge" in metrics, "no alarm on the counts' lag (IteratorAge)"


def check_alarms_watch_published_metrics(doc: dict) -> None:
    """Every alarm on the project's namespace watches a metric the code really publishes, under the
    publishing function's service dimension; pending events have an alarm (issue 10, item 1)."""
    services = {props(doc, f)["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]: f for f in FUNCTIONS}
    asl = (ROOT / "statemachines/training.asl.json").read_text()
    watched = set()
    for name, alarm in resources(doc, "AWS::CloudWatch::Alarm").items():
        p = alarm["Properties"]
        stats = [m["MetricStat"]["Metric"] for m in p.get("Metrics", []) if "MetricStat" in m] or [p]
        for metric in stats:
            if metric.get("Namespace") != {"Fn::Sub": "${ProjectName}/${Environment}"}:
                continue
            watched.add(metric["MetricName"])
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            if "service" not in dims:  # published with explicit dimensions (PutMetricData) or by the ASL
                code = asl + "".join(p.read_text() for f in FUNCTIONS for p in _code_dir(f).rglob("*.py"))
                assert f'"{metric["MetricName"]}"' in code, f"{name}: nobody publishes {metric['MetricName']}"
                continue
            function = services.get(dims["service"])
            assert function, f"{name}: no function has service {dims['service']!r}"
            code = "".join(p.read_text() for p in _code_dir(function).rglob("*.py"))
            assert f'"{metric["MetricName"]}"' in code, (
                f"{name}: {function} never publishes {metric['MetricName']}"
            )
    assert "OldestPendingEventAgeSeconds" in watched, "no alarm on events that stay pending"


def _api_routes(doc: dict) -> set[tuple[str, str]]:
    return {
        (e["Properties"]["Method"].lower(), e["Properties"]["Path"])
        for spec in resources(doc, "AWS::Serverless::Function").values()
        for e in (spec["Properties"].get("Events") or {}).values()
        if e["Type"] == "HttpApi"
    }


def check_api_authorization(doc: dict) -> None:
    """Issue 14: every route but /health declares its security in the API's OpenAPI body (a route
    left out would be open in every mode); the experiments routes always require IAM; JWT needs an
    issuer and audience (Rules); CORS names no origin by default."""
    body = props(doc, "HttpApi")["DefinitionBody"]
    declared = {(m, p) for p, item in body["paths"].items() for m in item}
    assert _api_routes(doc) - {("get", "/health")} == declared, declared
    for path, item in body["paths"].items():
        security = item["get" if "get" in item else "post"]["security"]
        if path.startswith("/experiments/"):
            assert security == [{"AWS_IAM": []}], path
        else:
            assert security["Fn::If"][0] == "ServingJwt", path
    assert body["components"]["securitySchemes"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert doc["Parameters"]["ApiAuthorization"]["Default"] == "NONE"
    rule = (doc.get("Rules") or {}).get("JwtNeedsIssuerAndAudience")
    assert rule and rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiAuthorization"}, "JWT"]}
    asserted = json.dumps(rule["Assertions"])
    assert "JwtIssuer" in asserted and "JwtAudience" in asserted
    assert "*" not in str(doc["Parameters"]["CorsAllowOrigins"].get("Default", ""))


CHECKS: dict[str, Callable[[dict], None]] = {
    f.__name__: f
    for f in (
        check_tables_encrypted_with_data_key,
        check_tables_have_pitr,
        check_table_keys,
        check_billing_mode_from_parameter,
        check_bucket_encrypted_and_private,
        check_bucket_policy_denies_plain_http,
        check_no_wildcard_actions,
        check_personalize_scoped_to_project,
        check_log_groups_retained_and_encrypted,
        check_functions_have_own_log_groups,
        check_schedules,
        check_function_globals,
        check_state_machine,
        check_outputs,
        check_data_key,
        check_put_events_on_any_resource,
        check_lint_rules_not_silenced,
        check_lambda_build,
        check_personalize_key_access,
        check_prepare_data_s3_is_what_it_calls,
        check_granted_actions_are_called,
        check_vpc_parameters_guarded,
        check_counting_off_the_request_path,
        check_alarms_watch_published_metrics,
        check_api_authorization,
    )
}


@pytest.mark.parametrize("name", CHECKS)
def test_template_property(doc, name):
    CHECKS[name](doc)


# --- every check fails when its property is broken -----------------------------------------


def _set(path: list, value: Any) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value

    return edit


def _add_statement(logical_id: str, statement: dict) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        d["Resources"][logical_id]["Properties"]["Policies"].append({"Statement": [statement]})

    return edit


R = "Resources"
BREAKAGES: list[tuple[str, str, Callable[[dict], None]]] = [
    (
        "aws-managed table key",
        "check_tables_encrypted_with_data_key",
        _set([R, "EventsTable", "Properties", "SSESpecification", "KMSMasterKeyId"], "alias/aws/dynamodb"),
    ),
    (
        "table SSE off",
        "check_tables_encrypted_with_data_key",
        _set([R, "UsersTable", "Properties", "SSESpecification", "SSEEnabled"], False),
    ),
    (
        "PITR off",
        "check_tables_have_pitr",
        _set(
            [
                R,
                "AggregatesTable",
                "Properties",
                "PointInTimeRecoverySpecification",
                "PointInTimeRecoveryEnabled",
            ],
            False,
        ),
    ),
    (
        "TTL renamed",
        "check_table_keys",
        _set([R, "EventsTable", "Properties", "TimeToLiveSpecification", "AttributeName"], "ttl"),
    ),
    (
        "billing fixed",
        "check_billing_mode_from_parameter",
        _set([R, "ItemsTable", "Properties", "BillingMode"], "PROVISIONED"),
    ),
    (
        "bucket AES256",
        "check_bucket_encrypted_and_private",
        _set(
            [R, "DataBucket", "Properties", "BucketEncryption", "ServerSideEncryptionConfiguration"],
            [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}],
        ),
    ),
    (
        "public policy allowed",
        "check_bucket_encrypted_and_private",
        _set([R, "DataBucket", "Properties", "PublicAccessBlockConfiguration", "BlockPublicPolicy"], False),
    ),
    (
        "TLS deny dropped",
        "check_bucket_policy_denies_plain_http",
        lambda d: d[R]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"].pop(0),
    ),
    (
        "service wildcard",
        "check_no_wildcard_actions",
        _add_statement(
            "RecommendationsFunction", {"Effect": "Allow", "Action": "personalize:*", "Resource": "*"}
        ),
    ),
    (
        "prefix wildcard in a role",
        "check_no_wildcard_actions",
        lambda d: d[R]["PersonalizeRolePolicy"]["Properties"]["PolicyDocument"]["Statement"][0].update(
            Action=["s3:Get*"]
        ),
    ),
    (
        "star action on the state machine",
        "check_no_wildcard_actions",
        _add_statement("TrainingStateMachine", {"Effect": "Allow", "Action": ["*"], "Resource": "*"}),
    ),
    (
        "any campaign",
        "check_personalize_scoped_to_project",
        _add_statement(
            "RecommendationsFunction",
            {"Effect": "Allow", "Action": "personalize:GetRecommendations", "Resource": "*"},
        ),
    ),
    (
        "log retention dropped",
        "check_log_groups_retained_and_encrypted",
        lambda d: d[R]["AccessLogGroup"]["Properties"].pop("RetentionInDays"),
    ),
    (
        "log group unencrypted",
        "check_log_groups_retained_and_encrypted",
        lambda d: d[R]["StateMachineLogGroup"]["Properties"].pop("KmsKeyId"),
    ),
    (
        "function logs to the default group",
        "check_functions_have_own_log_groups",
        lambda d: d[R]["EventsFunction"]["Properties"].pop("LoggingConfig"),
    ),
    (
        "UPDATE schedule always on",
        "check_schedules",
        _set(
            [R, "TrainingStateMachine", "Properties", "Events", "UpdateSchedule", "Properties", "State"],
            "ENABLED",
        ),
    ),
    (
        "FULL schedule input wrong",
        "check_schedules",
        _set(
            [R, "TrainingStateMachine", "Properties", "Events", "FullSchedule", "Properties", "Input"],
            '{"trainingMode":"UPDATE"}',
        ),
    ),
    ("runtime changed", "check_function_globals", _set(["Globals", "Function", "Runtime"], "python3.9")),
    (
        "tracing off in one function",
        "check_function_globals",
        _set([R, "QualityGateFunction", "Properties", "Tracing"], "PassThrough"),
    ),
    (
        "function without the layer",
        "check_function_globals",
        lambda d: d[R]["EventReplayFunction"]["Properties"].pop("Layers"),
    ),
    (
        "state machine untraced",
        "check_state_machine",
        _set([R, "TrainingStateMachine", "Properties", "Tracing"], {"Enabled": False}),
    ),
    ("output dropped", "check_outputs", lambda d: d["Outputs"].pop("ApiUrl")),
    ("rotation off", "check_data_key", _set([R, "DataKey", "Properties", "EnableKeyRotation"], False)),
    (
        "PutEvents on the trackers' ARNs (main before issue 10)",
        "check_put_events_on_any_resource",
        _add_statement(
            "EventReplayFunction",
            {
                "Effect": "Allow",
                "Action": "personalize:PutEvents",
                "Resource": {
                    "Fn::Sub": "arn:${AWS::Partition}:personalize:${AWS::Region}:${AWS::AccountId}:event-tracker/*"
                },
            },
        ),
    ),
    (
        "E2533 silenced again",
        "check_lint_rules_not_silenced",
        lambda d: d["Metadata"].update({"cfn-lint": {"config": {"ignore_checks": ["E2533"]}}}),
    ),
    (
        "layer built for arm64 only",
        "check_lambda_build",
        _set([R, "CommonLayer", "Metadata", "BuildArchitecture"], "arm64"),
    ),
    (
        "layer on python3.11",
        "check_lambda_build",
        _set([R, "CommonLayer", "Properties", "CompatibleRuntimes"], ["python3.11"]),
    ),
    (
        "a function on SAM's python builder",
        "check_lambda_build",
        _set([R, "ExperimentsFunction", "Metadata"], {"BuildMethod": "python3.13"}),
    ),
    (
        "key policy without CreateGrant for the role",
        "check_personalize_key_access",
        lambda d: [
            s.update(Action=[a for a in s["Action"] if a != "kms:CreateGrant"])
            for s in d[R]["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
            if s.get("Sid") == "PersonalizeRoleUsesKey"
        ],
    ),
    (
        "role without ListGrants",
        "check_personalize_key_access",
        lambda d: [
            s.update(Action=[a for a in s["Action"] if a != "kms:ListGrants"])
            for s in d[R]["PersonalizeRolePolicy"]["Properties"]["PolicyDocument"]["Statement"]
            if s.get("Sid") == "UseDataKey"
        ],
    ),
    (
        "PassRole on any role",
        "check_personalize_key_access",
        lambda d: [
            s.update(Resource="*")
            for p in d[R]["TrainingStateMachine"]["Properties"]["Policies"]
            if isinstance(p, dict) and "Statement" in p
            for s in p["Statement"]
            if s.get("Sid") == "HandRoleToPersonalize"
        ],
    ),
    (
        "S3CrudPolicy back on PrepareData (main before issue 10)",
        "check_prepare_data_s3_is_what_it_calls",
        lambda d: d[R]["PrepareDataFunction"]["Properties"]["Policies"].append(
            {"S3CrudPolicy": {"BucketName": {"Ref": "DataBucket"}}}
        ),
    ),
    (
        "DescribeRecipe and TagResource granted (main before issue 10)",
        "check_granted_actions_are_called",
        _add_statement(
            "TrainingStateMachine",
            {
                "Effect": "Allow",
                "Action": ["personalize:DescribeRecipe", "personalize:TagResource"],
                "Resource": "*",
            },
        ),
    ),
    (
        "GetPersonalizedRanking granted to serving",
        "check_granted_actions_are_called",
        _add_statement(
            "RecommendationsFunction",
            {"Effect": "Allow", "Action": "personalize:GetPersonalizedRanking", "Resource": "*"},
        ),
    ),
    (
        "UseVpc on the switch alone (main before issue 10)",
        "check_vpc_parameters_guarded",
        _set(["Conditions", "UseVpc"], {"Fn::Equals": [{"Ref": "EnableVpcEndpoints"}, "true"]}),
    ),
    (
        "events write the aggregates again (main before issue 16)",
        "check_counting_off_the_request_path",
        lambda d: d[R]["EventsFunction"]["Properties"]["Policies"].append(
            {"DynamoDBCrudPolicy": {"TableName": {"Ref": "AggregatesTable"}}}
        ),
    ),
    (
        "aggregator DLQ without an alarm",
        "check_counting_off_the_request_path",
        lambda d: d[R].pop("AggregatorDeadLetterAlarm"),
    ),
    (
        "pending-events alarm dropped",
        "check_alarms_watch_published_metrics",
        lambda d: d[R].pop("EventsPendingAlarm"),
    ),
    (
        "alarm on a metric nobody publishes",
        "check_alarms_watch_published_metrics",
        _set([R, "EventsPendingAlarm", "Properties", "MetricName"], "EventsPending"),
    ),
    (
        "experiments route follows ApiAuthorization",
        "check_api_authorization",
        _set(
            [
                R,
                "HttpApi",
                "Properties",
                "DefinitionBody",
                "paths",
                "/experiments/{experimentId}",
                "get",
                "security",
            ],
            [],
        ),
    ),
    (
        "a route without declared security",
        "check_api_authorization",
        lambda d: d[R]["HttpApi"]["Properties"]["DefinitionBody"]["paths"].pop("/events"),
    ),
    (
        "CORS open to any origin",
        "check_api_authorization",
        _set(["Parameters", "CorsAllowOrigins", "Default"], "*"),
    ),
    (
        "JWT without the rule",
        "check_api_authorization",
        lambda d: d["Rules"].pop("JwtNeedsIssuerAndAudience"),
    ),
]


@pytest.mark.parametrize(("what", "check", "edit"), BREAKAGES, ids=[b[0] for b in BREAKAGES])
def test_checks_catch_broken_templates(doc, what, check, edit):
    broken = copy.deepcopy(doc)
    edit(broken)
    with pytest.raises(AssertionError):
        CHECKS[check](broken)


def test_every_check_has_a_breakage():
    assert set(CHECKS) <= {b[1] for b in BREAKAGES}


def test_readme_documents_every_parameter_and_output(doc):
    """The README's configuration reference must follow the template (the template is the source)."""
    readme = (ROOT / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`") for line in readme.splitlines() if line.startswith("| `")}
    missing = set(doc["Parameters"]) - rows
    assert not missing, f"README configuration reference lacks {sorted(missing)}"
    for name in doc["Outputs"]:
        assert f"`{name}`" in readme, f"README does not mention output {name}"


# --- after the SAM transform: what CloudFormation actually receives ---------------------------

ALLOWED_MANAGED_POLICIES = {
    "service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess",
    "service-role/AWSLambdaVPCAccessExecutionRole",  # SAM adds it whenever VpcConfig is declared
    # SAM adds it for a DynamoDB event (stream reads: DescribeStream, GetRecords, GetShardIterator,
    # ListStreams); the aggregator's own statements are scoped to its tables.
    "service-role/AWSLambdaDynamoDBExecutionRole",
}


def sam_transform(doc: dict, monkeypatch) -> dict:
    """Expand the template with the SAM translator, as the local stack's IAM does."""
    from local.iam.policies import sam_expand

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return sam_expand(doc)


def test_expanded_roles_are_least_privilege(doc, monkeypatch):
    expanded = sam_transform(doc, monkeypatch)
    roles = resources(expanded, "AWS::IAM::Role")
    assert len(roles) >= len(FUNCTIONS) + 4  # functions, state machine, schedules, Personalize
    for name, role in roles.items():
        p = role["Properties"]
        for arn in p.get("ManagedPolicyArns", []):
            assert arn.split(":policy/")[-1] in ALLOWED_MANAGED_POLICIES, f"{name}: {arn}"
        for policy in p.get("Policies", []):
            for statement in _statements(policy["PolicyDocument"]):
                actions = statement["Action"]
                for action in [actions] if isinstance(actions, str) else actions:
                    assert "*" not in action, f"{name}/{policy['PolicyName']}: {action}"
    schedule_roles = [r for n, r in roles.items() if n.startswith("TrainingStateMachine") and "Schedule" in n]
    assert len(schedule_roles) == 2
    for role in schedule_roles:
        (statement,) = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        assert statement["Action"] == "states:StartExecution"
        assert statement["Resource"] == {"Ref": "TrainingStateMachine"}


def test_expanded_functions_run_python313_traced_with_own_logs(doc, monkeypatch):
    expanded = sam_transform(doc, monkeypatch)
    (layer,) = resources(expanded, "AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["CompatibleRuntimes"] == [RUNTIME]
    for name in FUNCTIONS:
        p = expanded["Resources"][name]["Properties"]
        assert p["Runtime"] == RUNTIME and p["TracingConfig"] == {"Mode": "Active"}, name
        assert p["LoggingConfig"]["LogGroup"]["Ref"] in resources(doc, "AWS::Logs::LogGroup"), name


# --- resolved as the local stack resolves it ---------------------------------------------------


def test_dashboard_body_is_json_naming_real_resources():
    from local.stack import load_template

    t = load_template()
    body = json.loads(t.resolve(t.resources["Dashboard"].properties["DashboardBody"]))
    alarms = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert alarms and all(a.startswith("arn:aws:cloudwatch:") for a in alarms[0]["properties"]["alarms"])


def test_switches_resolve_both_ways():
    from local.sam import template as tmpl
    from local.sam.provision import table_request

    off = tmpl.load(ROOT / "template.yaml", {"Environment": "prod"})
    assert "ProvisionedThroughput" not in table_request(off, off.resources["ItemsTable"])
    assert not {"EmailSubscription", "S3GatewayEndpoint", "LogsEndpoint"} & set(off.resources)
    on = tmpl.load(
        ROOT / "template.yaml",
        {
            "TableBillingMode": "PROVISIONED",
            "ReadCapacity": 7,
            "EnableVpcEndpoints": "true",
            "VpcId": "vpc-0123456789abcdef0",
            "SubnetIds": "subnet-0a,subnet-0b",
            "SecurityGroupIds": "sg-0a",
            "RouteTableIds": "rtb-0a",
            "NotificationEmail": "ops@example.com",
            "EnableFullSchedule": "false",
            "EnableUpdateSchedule": "true",
        },
    )
    request = table_request(on, on.resources["ItemsTable"])
    assert request["ProvisionedThroughput"]["ReadCapacityUnits"] == 7
    assert request["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"]["ReadCapacityUnits"] == 7
    assert {"EmailSubscription", "S3GatewayEndpoint", "DynamoDbGatewayEndpoint", "LogsEndpoint"} <= set(
        on.resources
    )
    events = on.resolve(on.resources["TrainingStateMachine"].properties["Events"])
    assert events["FullSchedule"]["Properties"]["State"] == "DISABLED"
    assert events["UpdateSchedule"]["Properties"]["State"] == "ENABLED"
    assert set(on.resolve(on.resources["RecommendationsFunction"].properties["VpcConfig"])) == {
        "SubnetIds",
        "SecurityGroupIds",
    }
    assert off.resolve(off.resources["RecommendationsFunction"].properties["VpcConfig"]) is None
