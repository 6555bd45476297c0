"""Create the template's resources in moto, through boto3, from the resolved template.

Each supported resource type has one small function. Creation is idempotent (a restart
against restored state, or a second call, changes nothing). Types that mean nothing
offline (VPC endpoints, alarms' actions, dashboards, permissions...) are reported as
skipped rather than silently ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from local.sam.template import Resource, Template

ClientFactory = Callable[[str], Any]


@dataclass
class Provisioned:
    created: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # logical id -> type


def _exists(exc: ClientError, *codes: str) -> bool:
    return exc.response["Error"]["Code"] in codes


# --- DynamoDB -----------------------------------------------------------------------------

_TABLE_KEYS = (
    "KeySchema",
    "AttributeDefinitions",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
    "StreamSpecification",
    "Tags",
)


def table_request(t: Template, r: Resource) -> dict:
    """CreateTable arguments from an AWS::DynamoDB::Table (or SimpleTable)."""
    props = t.resolve(r.properties)
    if r.type == "AWS::Serverless::SimpleTable":
        pk = props.get("PrimaryKey", {"Name": "id", "Type": "String"})
        kind = {"String": "S", "Number": "N", "Binary": "B"}[pk.get("Type", "String")]
        props = {
            "KeySchema": [{"AttributeName": pk["Name"], "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": pk["Name"], "AttributeType": kind}],
            "BillingMode": "PAY_PER_REQUEST" if "ProvisionedThroughput" not in props else "PROVISIONED",
            **{k: v for k, v in props.items() if k == "ProvisionedThroughput"},
        }
    request = {k: props[k] for k in _TABLE_KEYS if k in props}
    request["TableName"] = r.physical_name
    if request.get("BillingMode", "PROVISIONED") == "PAY_PER_REQUEST":
        request.pop("ProvisionedThroughput", None)
        for gsi in request.get("GlobalSecondaryIndexes", []):
            gsi.pop("ProvisionedThroughput", None)
    if (
        "StreamSpecification" in request
    ):  # CloudFormation names only the view type; the API also StreamEnabled
        request["StreamSpecification"] = {"StreamEnabled": True, **request["StreamSpecification"]}
    sse = props.get("SSESpecification")
    if sse:  # CloudFormation spells it SSEEnabled/KMSMasterKeyId; the API Enabled/KMSMasterKeyId
        request["SSESpecification"] = {
            "Enabled": bool(sse.get("SSEEnabled", True)),
            **({"SSEType": sse["SSEType"]} if "SSEType" in sse else {}),
            **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {}),
        }
    return request


def create_table(t: Template, r: Resource, client: ClientFactory) -> None:
    ddb = client("dynamodb")
    try:
        ddb.create_table(**table_request(t, r))
    except ClientError as exc:
        if not _exists(exc, "ResourceInUseException"):
            raise
    ttl = t.resolve(r.properties.get("TimeToLiveSpecification"))
    if ttl and ttl.get("Enabled"):
        ddb.update_time_to_live(
            TableName=r.physical_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
        )


# --- S3, KMS, SNS, Logs, IAM ---------------------------------------------------------------


def create_bucket(t: Template, r: Resource, client: ClientFactory) -> None:
    s3 = client("s3")
    props = t.resolve(r.properties)
    try:
        s3.create_bucket(Bucket=r.physical_name)
    except ClientError as exc:
        if not _exists(exc, "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    if props.get("VersioningConfiguration"):
        s3.put_bucket_versioning(
            Bucket=r.physical_name,
            VersioningConfiguration={"Status": props["VersioningConfiguration"].get("Status", "Enabled")},
        )
    block = props.get("PublicAccessBlockConfiguration")
    if block:
        s3.put_public_access_block(Bucket=r.physical_name, PublicAccessBlockConfiguration=block)
    # Encryption: moto records it but has no real KMS behind objects; keys are not enforced locally.
    encryption = props.get("BucketEncryption")
    if encryption:
        rules = [  # CloudFormation says ServerSideEncryptionByDefault, the API ApplyServerSideEncryptionByDefault
            {
                **({"BucketKeyEnabled": rule["BucketKeyEnabled"]} if "BucketKeyEnabled" in rule else {}),
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
            }
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=r.physical_name, ServerSideEncryptionConfiguration={"Rules": rules})


def create_bucket_policy(t: Template, r: Resource, client: ClientFactory) -> None:
    """The policy minus statements on aws:SecureTransport: loopback traffic is plain HTTP, and
    moto evaluates bucket policies, so a TLS-only Deny would refuse every local request."""
    props = t.resolve(r.properties)
    document = dict(props["PolicyDocument"])
    statements = document.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    document["Statement"] = [
        s for s in statements if "aws:SecureTransport" not in json.dumps(s.get("Condition", {}))
    ]
    if document["Statement"]:
        client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(document))


def create_topic(t: Template, r: Resource, client: ClientFactory) -> None:
    client("sns").create_topic(Name=r.physical_name)  # idempotent by name


def create_queue(t: Template, r: Resource, client: ClientFactory) -> None:
    """An SQS queue by name (idempotent); its KMS key is recorded by moto, not enforced."""
    props = t.resolve(r.properties)
    attributes = {
        k: str(props[k])
        for k in ("MessageRetentionPeriod", "VisibilityTimeout", "DelaySeconds")
        if k in props
    }
    client("sqs").create_queue(QueueName=r.physical_name, Attributes=attributes)


def create_log_group(t: Template, r: Resource, client: ClientFactory) -> None:
    logs = client("logs")
    try:
        logs.create_log_group(logGroupName=r.physical_name)
    except ClientError as exc:
        if not _exists(exc, "ResourceAlreadyExistsException"):
            raise


def create_key(t: Template, r: Resource, client: ClientFactory) -> None:
    # moto generates its own key ids; the template's Ref value stays a stable local id.
    kms = client("kms")
    alias = f"alias/local/{r.logical_id}"
    existing = {a["AliasName"] for a in kms.list_aliases()["Aliases"]}
    if alias not in existing:
        key_id = kms.create_key(Description=f"{t.stack_name} {r.logical_id}")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=alias, TargetKeyId=key_id)


# --- Step Functions ------------------------------------------------------------------------


def state_machine_definition(t: Template, r: Resource) -> str:
    """The ASL text with DefinitionSubstitutions applied (textually, as CloudFormation does)."""
    props = r.properties
    if "Definition" in props:
        text = json.dumps(t.resolve(props["Definition"]))
    elif "DefinitionUri" in props:
        uri = t.resolve(props["DefinitionUri"])
        if not isinstance(uri, str):
            raise ValueError(f"{r.logical_id}: DefinitionUri must be a local path to run locally")
        path = t.root / uri
        if not path.is_file():
            raise FileNotFoundError(f"{r.logical_id}: definition {path} not found")
        text = path.read_text()
    else:
        raise ValueError(f"{r.logical_id}: neither Definition nor DefinitionUri")
    for key, value in (t.resolve(props.get("DefinitionSubstitutions")) or {}).items():
        text = text.replace("${" + key + "}", _substitution_text(value))
    json.loads(text)  # a broken substitution fails here, naming the machine, not at StartExecution
    return text


def _substitution_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def create_state_machine(t: Template, r: Resource, client: ClientFactory) -> None:
    sfn = client("stepfunctions")
    definition = state_machine_definition(t, r)
    role = t.resolve(r.properties.get("Role")) or f"arn:aws:iam::{t.account_id}:role/{r.physical_name}-role"
    arn = t.resolve({"Ref": r.logical_id})
    try:
        sfn.describe_state_machine(stateMachineArn=arn)
        sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role)
    except ClientError as exc:
        if not _exists(exc, "StateMachineDoesNotExist"):
            raise
        kind = t.resolve(r.properties.get("Type")) or "STANDARD"
        sfn.create_state_machine(name=r.physical_name, definition=definition, roleArn=role, type=kind)


def create_schedules(t: Template, r: Resource, client: ClientFactory) -> None:
    """ScheduleV2 events of a state machine or function, recorded in moto's EventBridge Scheduler.

    moto stores schedules but never fires them: locally, retraining is started by hand.
    """
    scheduler = client("scheduler")
    target_arn = t.resolve({"Ref": r.logical_id}) if "StateMachine" in r.type else t.arn(r)
    for name, event in (r.properties.get("Events") or {}).items():
        if event.get("Type") != "ScheduleV2":
            continue
        props = t.resolve(event.get("Properties") or {})
        schedule_name = props.get("Name") or f"{r.physical_name}-{name}"[:64]
        target = {
            "Arn": target_arn,
            "RoleArn": props.get("RoleArn") or f"arn:aws:iam::{t.account_id}:role/{schedule_name}-role",
            "Input": props.get("Input", "{}"),
        }
        try:
            scheduler.create_schedule(
                Name=schedule_name,
                ScheduleExpression=props["ScheduleExpression"],
                FlexibleTimeWindow=props.get("FlexibleTimeWindow") or {"Mode": "OFF"},
                State=props.get("State", "ENABLED"),
                Target=target,
            )
        except ClientError as exc:
            if not _exists(exc, "ConflictException"):
                raise


# --- Orchestration ---------------------------------------------------------------------------

PROVISIONERS: dict[str, Callable[[Template, Resource, ClientFactory], None]] = {
    "AWS::KMS::Key": create_key,
    "AWS::DynamoDB::Table": create_table,
    "AWS::Serverless::SimpleTable": create_table,
    "AWS::S3::Bucket": create_bucket,
    "AWS::S3::BucketPolicy": create_bucket_policy,
    "AWS::SNS::Topic": create_topic,
    "AWS::SQS::Queue": create_queue,
    "AWS::Logs::LogGroup": create_log_group,
    "AWS::Serverless::StateMachine": create_state_machine,
    "AWS::StepFunctions::StateMachine": create_state_machine,
}
# Served by the stack's own processes rather than created in moto.
SERVED_LOCALLY = {"AWS::Serverless::Function", "AWS::Serverless::HttpApi", "AWS::Serverless::LayerVersion"}
_ORDER = list(PROVISIONERS)  # keys before tables and buckets, buckets before policies


def provision(t: Template, client: ClientFactory) -> Provisioned:
    result = Provisioned()
    resources = sorted(
        t.resources.values(),
        key=lambda r: _ORDER.index(r.type) if r.type in _ORDER else len(_ORDER),
    )
    for r in resources:
        make = PROVISIONERS.get(r.type)
        if make is not None:
            make(t, r, client)
            result.created.append(r.logical_id)
        elif r.type not in SERVED_LOCALLY:
            result.skipped[r.logical_id] = r.type
        if r.type in ("AWS::Serverless::StateMachine", "AWS::Serverless::Function"):
            create_schedules(t, r, client)
    return result


def upload_directory(client: ClientFactory, bucket: str, prefix: str, source: Path) -> list[str]:
    """Upload every file under source to s3://bucket/prefix/..., keeping relative paths."""
    s3 = client("s3")
    keys = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source).as_posix()
        key = f"{prefix.rstrip('/')}/{relative}" if prefix.strip("/") else relative
        s3.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys
