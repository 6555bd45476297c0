"""The aggregator's DynamoDB side: per-user watermarks and sharded aggregate slices, written
together in one TransactWriteItems per chunk of users (exactly once: see fold.py).

Items in the aggregates table:
- slices: (experiment_id, '<variant>#<ALL|day>#<shard>'): counters ADDed by the aggregator, one of
  AGGREGATE_SHARDS copies chosen at random per transaction so that concurrent aggregator
  invocations (one per stream shard) rarely write the same item; readers sum the shards.
- watermarks: ('wm#<user_id>', '<experiment_id>'): the user's totals as already counted. The user
  is the partition key, so watermark writes spread over partitions like the users themselves.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence

from botocore.exceptions import ClientError
from fold import Image, UserPlan, merge, plan_user, slice_writes
from recsys_common import aggregates, ddb

MAX_ITEMS = 100  # TransactWriteItems' limit on actions per transaction
ATTEMPTS = 6
WATERMARK_PREFIX = "wm#"


class ChunkFailed(Exception):
    """A chunk could not be written (conflicts or throttling outlasted the retries)."""


def shards() -> int:
    return max(1, int(os.environ.get("AGGREGATE_SHARDS", "16")))


def watermark_key(experiment_id: str, user_id: str) -> dict:
    return {"experiment_id": WATERMARK_PREFIX + user_id, "slice": experiment_id}


def read_watermarks(keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Image]:
    """{(experiment_id, user_id): applied image}, read consistently (it is the condition's base)."""
    table, out = ddb.table_name("AGGREGATES_TABLE"), {}
    for start in range(0, len(keys), 100):
        request = {
            table: {
                "Keys": [ddb.serialize(watermark_key(e, u)) for e, u in keys[start : start + 100]],
                "ConsistentRead": True,
            }
        }
        for attempt in range(ATTEMPTS):
            resp = ddb.client().batch_get_item(RequestItems=request)
            for raw in resp.get("Responses", {}).get(table, []):
                item = ddb.deserialize(raw)
                image = _from_watermark(item)
                out[image.key] = image
            request = resp.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(0.05 * 2**attempt * random.random())
        if request:
            raise ChunkFailed("watermarks could not all be read (throttled)")
    return out


def _from_watermark(item: dict) -> Image:
    return Image(
        experiment_id=item["slice"],
        user_id=item["experiment_id"][len(WATERMARK_PREFIX) :],
        variant=item["variant"],
        phase=int(item["phase"]),
        rev=int(item["rev"]),
        values={k[2:]: float(v) for k, v in item.items() if k.startswith("t_")},
        day=item.get("day", aggregates.ALL),
    )


def _watermark_op(table: str, new: Image, applied: Image | None) -> dict:
    item = {
        **watermark_key(new.experiment_id, new.user_id),
        "variant": new.variant,
        "phase": new.phase,
        "rev": new.rev,
        "day": new.day,
        **{f"t_{k}": v for k, v in new.values.items()},
    }
    op = {"TableName": table, "Item": ddb.serialize(item)}
    if applied is None:
        op["ConditionExpression"] = "attribute_not_exists(experiment_id)"
    else:  # optimistic: still the image this chunk's deltas were computed from
        op["ConditionExpression"] = "#p = :p AND #r = :r"
        op["ExpressionAttributeNames"] = {"#p": "phase", "#r": "rev"}
        op["ExpressionAttributeValues"] = ddb.serialize({":p": applied.phase, ":r": applied.rev})
    return {"Put": op}


def _slice_op(table: str, experiment_id: str, name: str, deltas: dict, shard: int) -> dict:
    expression, names, values = aggregates.add_expression(deltas)
    variant_day = aggregates.parse_slice(name)
    return {
        "Update": {
            "TableName": table,
            "Key": ddb.serialize(
                {"experiment_id": experiment_id, "slice": aggregates.slice_key(*variant_day, shard)}
            ),
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {k: aggregates.number(v) for k, v in values.items()},
        }
    }


def build(plans: dict[tuple[str, str], tuple[Image | None, UserPlan]], shard: int) -> list[dict]:
    """The transaction for a chunk: each user's new watermark and the summed slice ADDs."""
    table = ddb.table_name("AGGREGATES_TABLE")
    ops, by_experiment = [], {}
    for (experiment_id, _), (applied, plan) in sorted(plans.items()):
        if plan.watermark is None:
            continue
        ops.append(_watermark_op(table, plan.watermark, applied))
        by_experiment.setdefault(experiment_id, []).append(plan.slices)
    for experiment_id, per_user in sorted(by_experiment.items()):
        for name, deltas in sorted(slice_writes(merge(per_user)).items()):
            ops.append(_slice_op(table, experiment_id, name, deltas, shard))
    return ops


def apply_chunk(
    images: dict[tuple[str, str], list[Image]], metrics: list[str], legacy: dict | None = None
) -> dict[str, int]:
    """Count one chunk of users exactly once; {"users": written, "stale": skipped images}.

    `legacy`: for users without a watermark, totals the request path counted itself before
    counting moved to the stream (an item without `rev`): the base their first delta starts from.

    Re-reads the watermarks and retries on a cancelled transaction (a concurrent aggregator or
    reconcile moved a watermark: ConditionalCheckFailed; or wrote the same slice shard at the same
    time: TransactionConflict). Splits itself when the transaction would exceed 100 actions.
    """
    keys = sorted(images)
    for attempt in range(ATTEMPTS):
        applied, legacy = read_watermarks(keys), legacy or {}
        plans = {
            k: (applied.get(k), plan_user(applied.get(k) or legacy.get(k), images[k], metrics)) for k in keys
        }
        ops = build(plans, random.randrange(shards()))
        stale = sum(p.stale for _, p in plans.values())
        if not ops:
            return {"users": 0, "stale": stale}
        if len(ops) > MAX_ITEMS:
            if len(keys) == 1:
                raise ChunkFailed(f"user {keys[0]} needs {len(ops)} actions in one transaction")
            half = len(keys) // 2
            first = apply_chunk({k: images[k] for k in keys[:half]}, metrics, legacy)
            second = apply_chunk({k: images[k] for k in keys[half:]}, metrics, legacy)
            return {n: first[n] + second[n] for n in first}
        try:
            ddb.client().transact_write_items(TransactItems=ops)
            return {"users": sum(1 for _, p in plans.values() if p.watermark is not None), "stale": stale}
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code not in ("TransactionCanceledException", "ThrottlingException",
                            "ProvisionedThroughputExceededException", "InternalServerError",
                            "TransactionInProgressException"):  # fmt: skip
                raise
            reasons = set(ddb.cancellation_codes(exc)) - {"None"}
            if reasons - {"ConditionalCheckFailed", "TransactionConflict", "ThrottlingError"}:
                raise  # a validation error: retrying cannot help
        time.sleep(min(1.0, 0.01 * 2**attempt) * random.random())
    raise ChunkFailed(f"{len(keys)} users not counted after {ATTEMPTS} attempts")
