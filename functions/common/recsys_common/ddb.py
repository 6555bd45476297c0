"""DynamoDB access shared by the serving Lambdas: clients with tight timeouts, type conversion."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Iterator
from decimal import Decimal
from functools import cache

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config

# DynamoDB answers in single-digit ms; a stuck connection must not eat the Lambda's budget.
_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 3})
_SER, _DESER = TypeSerializer(), TypeDeserializer()


@cache
def client():
    return boto3.client("dynamodb", config=_CONFIG)


@cache
def table_name(env_var: str) -> str:
    try:
        return os.environ[env_var]
    except KeyError:
        raise RuntimeError(f"environment variable {env_var} is not set (see template.yaml)") from None


def to_dynamo(value):
    """Python value -> DynamoDB-ready (floats as Decimal; NaN/inf refused)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | Decimal):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite numbers cannot be stored")
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    raise TypeError(f"cannot store {type(value).__name__}")


def plain(value):
    """DynamoDB value -> JSON-ready (Decimal -> int/float, sets -> lists)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [plain(v) for v in value]
    return value


def serialize(item: dict) -> dict:
    """Python item -> low-level attribute values (for the client API and transactions)."""
    return {k: _SER.serialize(to_dynamo(v)) for k, v in item.items() if v is not None}


def deserialize(item: dict | None) -> dict | None:
    if item is None:
        return None
    return plain({k: _DESER.deserialize(v) for k, v in item.items()})


def query_partition(env_var: str, key_name: str, value: str, consistent: bool = False) -> Iterator[dict]:
    """Every item of one partition (a Query, followed page by page), as plain Python."""
    kwargs: dict = {}
    while True:
        page = client().query(
            TableName=table_name(env_var),
            KeyConditionExpression=f"{key_name} = :k",
            ExpressionAttributeValues={":k": {"S": value}},
            ConsistentRead=consistent,
            **kwargs,
        )
        yield from map(deserialize, page["Items"])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def get_item(env_var: str, key: dict, consistent: bool = False) -> dict | None:
    resp = client().get_item(TableName=table_name(env_var), Key=serialize(key), ConsistentRead=consistent)
    return deserialize(resp.get("Item"))


def batch_get_keys(
    env_var: str, keys: list[dict], consistent: bool = False, attempts: int = 5
) -> tuple[list[dict], list[dict]]:
    """(items found, keys still unprocessed after `attempts`): one BatchGetItem per 100 keys.
    Unprocessed keys are retried with exponential backoff, as the BatchGetItem reference asks
    (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html)."""
    name, found, left = table_name(env_var), [], []
    for start in range(0, len(keys), 100):
        chunk = [serialize(k) for k in keys[start : start + 100]]
        request = {name: {"Keys": chunk, "ConsistentRead": consistent}}
        for attempt in range(attempts):
            resp = client().batch_get_item(RequestItems=request)
            found += [deserialize(raw) for raw in resp.get("Responses", {}).get(name, [])]
            request = resp.get("UnprocessedKeys") or {}
            if not request or attempt + 1 == attempts:
                break
            time.sleep(0.02 * 2**attempt * random.random())
        if request:
            left += [deserialize(k) for k in request[name]["Keys"]]
    return found, left


def batch_get(env_var: str, key_name: str, ids: list[str], attempts: int = 5) -> dict[str, dict]:
    """{id: item} for the ids that exist (keys DynamoDB left unprocessed count as absent)."""
    found, _ = batch_get_keys(env_var, [{key_name: i} for i in dict.fromkeys(ids)], attempts=attempts)
    return {item[key_name]: item for item in found}


def cancellation_codes(exc) -> list[str]:
    """Per-item codes of a TransactionCanceledException ('None', 'ConditionalCheckFailed', ...)."""
    reasons = exc.response.get("CancellationReasons") or []
    return [r.get("Code", "None") for r in reasons]
