"""Security and wiring properties of template.yaml, so a careless edit fails CI.

The template is parsed with the local stack's CloudFormation-aware YAML loader (short tags
become their long forms); nothing is resolved, so the assertions look at what is declared.
Each check is a function of a template document; `test_checks_catch_broken_templates`
breaks a copy of the template once per property and asserts that the check then fails.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local.template import load_yaml

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
    "PrepareDataFunction",
    "QualityGateFunction",
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
        if rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
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
            if e.get("Type") == "ScheduleV2"
            and json.loads(e["Properties"]["Input"]) == {"trainingMode": mode}
        ]
        assert len(matching) == 1, f"one {mode} schedule expected, found {len(matching)}"
        schedule = matching[0]
        assert schedule["ScheduleExpression"] == {"Ref": parameter}, mode
        assert schedule["State"] == {"Fn::If": [condition, "ENABLED", "DISABLED"]}, f"{mode} state"
    conditions = doc["Conditions"]
    assert conditions["UpdateScheduleOn"] == {"Fn::Equals": [{"Ref": "EnableUpdateSchedule"}, "true"]}
    assert conditions["FullScheduleOn"] == {"Fn::Equals": [{"Ref": "EnableFullSchedule"}, "true"]}
    assert doc["Parameters"]["UpdateSchedule"]["Default"] == "rate(7 days)"
    assert doc["Parameters"]["FullSchedule"]["Default"] == "rate(30 days)"


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
    for key in ("PollSeconds", "MaxPolls", "ProjectPrefix", "PersonalizeRoleArn", "ExperimentsTable"):
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
        lambda d: d[R]["PersonalizeRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][
            0
        ].update(Action=["s3:Get*"]),
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
}


def sam_transform(doc: dict, monkeypatch) -> dict:
    """Expand the template with the SAM translator (offline; code URIs stand in as S3 URIs)."""
    from samtranslator.translator.transform import transform

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    doc = copy.deepcopy(doc)
    for spec in doc["Resources"].values():
        p = spec.get("Properties") or {}
        for key in ("CodeUri", "DefinitionUri", "ContentUri"):
            if isinstance(p.get(key), str):
                p[key] = f"s3://artifacts/{p[key]}"

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    return transform(doc, {}, NoManagedPolicies())


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
    from local import template as tmpl
    from local.provision import table_request

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
