"""Reconcile (operators, docs/operations.md): recompute an experiment's counters from every
user's totals, count what the stream did not deliver, and report what still differs.

1. Scan the experiment's assignment items (one segment of a parallel scan when asked) and apply
   each user's current totals through the same watermarked path as stream batches: users whose
   changes were lost (a batch sent to the DLQ, records past the stream's 24 h) are counted now,
   everyone else is a no-op.
2. Recompute the ALL slices from the scanned totals and compare them with the summed shards.
   Counters of users reassigned by a phase bump stay with their earlier variant (the totals of the
   earlier phase are gone), so after a phase bump the earlier variants legitimately differ.
"""

from __future__ import annotations

import time

from boto3.dynamodb.types import TypeDeserializer
from fold import delta, image_of
from recsys_common import aggregates, config, ddb
from store import apply_chunk

CHUNK_USERS = 30
_DESER = TypeDeserializer()


def _pages(experiment_id: str, segment: int, total_segments: int):
    kwargs = {
        "TableName": ddb.table_name("ASSIGNMENTS_TABLE"),
        "FilterExpression": "experiment_id = :e",
        "ExpressionAttributeValues": {":e": {"S": experiment_id}},
        "ConsistentRead": True,
    }
    if total_segments > 1:
        kwargs.update(Segment=segment, TotalSegments=total_segments)
    while True:
        page = ddb.client().scan(**kwargs)
        yield [ddb.plain({k: _DESER.deserialize(v) for k, v in item.items()}) for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def counted(experiment_id: str) -> dict[str, dict[str, float]]:
    """The ALL counters per variant, summed over shards (what the results endpoint reads)."""
    items = ddb.query_partition("AGGREGATES_TABLE", "experiment_id", experiment_id, consistent=True)
    return {v: t["all"] for v, t in aggregates.variant_totals(items).items()}


def run(experiment_id: str | None = None, segment: int = 0, total_segments: int = 1) -> dict:
    experiment_id = experiment_id or config.default_experiment_id()
    metrics = aggregates.metric_names(config.event_types())
    today = time.strftime("%Y-%m-%d", time.gmtime())
    expected: dict[str, dict[str, float]] = {}
    users = written = 0
    for items in _pages(experiment_id, int(segment), int(total_segments)):
        images = {}
        for item in items:
            image = image_of(item if "rev" in item else {**item, "rev": 0}, today)
            if image is None:
                continue
            users += 1
            target = expected.setdefault(image.variant, {})
            for k, v in delta(None, image, metrics).items():
                target[k] = target.get(k, 0.0) + v
            if "rev" in item:  # items without `rev` were counted by the request path itself
                images[image.key] = [image]
        keys = sorted(images)
        for start in range(0, len(keys), CHUNK_USERS):
            written += apply_chunk({k: images[k] for k in keys[start : start + CHUNK_USERS]}, metrics)[
                "users"
            ]
    report = {"experiment_id": experiment_id, "users": users, "caught_up": written}
    if int(total_segments) == 1:  # a full scan: the recomputation covers every user
        have = counted(experiment_id)
        differences = {}
        for variant in sorted(set(have) | set(expected)):
            a, b = have.get(variant, {}), expected.get(variant, {})
            diff = {k: {"counted": a.get(k, 0.0), "recomputed": b.get(k, 0.0)}
                    for k in sorted(set(a) | set(b)) if abs(a.get(k, 0.0) - b.get(k, 0.0)) > 1e-6 * max(1.0, abs(b.get(k, 0.0)))}  # fmt: skip
            if diff:
                differences[variant] = diff
        report.update(exact=not differences, differences=differences)
    return report
