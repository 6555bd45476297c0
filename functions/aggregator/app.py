"""The experiment counters, off the request path: the assignments table's stream -> deltas ->
sharded aggregate slices, exactly once (docs/architecture.md, "Counting").

Delivery (AWS): DynamoDB Streams writes each change of an item exactly once and in order per item
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Streams.html); the Lambda event
source mapping delivers batches at least once, "duplicate processing of records can occur"
(https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventsourcemapping.html), and retries
from the lowest sequence number a partial batch response names
(https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-batchfailurereporting.html).
Exactness therefore comes from here: each user's watermark (fold.py) is written in the same
transaction as the deltas it covers, so a redelivered record counts nothing.

Invocations:
- a stream batch {"Records": [...]}: answers a partial batch response (ReportBatchItemFailures):
  the lowest sequence number of any record not counted, from which Lambda retries.
- {"reconcile": {"experiment_id": "...", "segment": 0, "total_segments": 1}} (operators,
  docs/operations.md): counts what the stream did not deliver and checks the counters against a
  recomputation from every user's totals.
"""

from __future__ import annotations

import time

import reconcile
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from boto3.dynamodb.types import TypeDeserializer
from fold import Image, image_of
from recsys_common import aggregates, config, ddb
from store import ChunkFailed, apply_chunk

logger = Logger()
tracer = Tracer()
metrics = Metrics()
CHUNK_USERS = 30  # + their slices (2 per variant and day): short transactions (split above 100 actions)
_DESER = TypeDeserializer()


def _images(record: dict) -> tuple[Image | None, Image | None]:
    """(new image, legacy base) of a stream record. The new image is None for REMOVE; the legacy
    base is the old image when it has no `rev`: totals the request path counted itself."""
    change = record.get("dynamodb") or {}
    if not change.get("NewImage"):
        return None, None
    created = change.get("ApproximateCreationDateTime") or time.time()
    day = time.strftime("%Y-%m-%d", time.gmtime(float(created)))
    new = image_of(_plain(change["NewImage"]), day)
    old = _plain(change.get("OldImage"))
    legacy = image_of({**old, "rev": 0}, day) if old and "rev" not in old else None
    return new, legacy


def _plain(image: dict | None) -> dict:
    return ddb.plain({k: _DESER.deserialize(v) for k, v in (image or {}).items()})


def count_records(records: list[dict]) -> dict:
    """Count a batch; {"batchItemFailures": [...]} names the first record not counted."""
    metric_names = aggregates.metric_names(config.event_types())
    by_user: dict[tuple[str, str], list[Image]] = {}
    first_seq: dict[tuple[str, str], str] = {}
    legacy: dict[tuple[str, str], Image] = {}
    for record in records:
        image, base = _images(record)
        if image is None:
            continue
        by_user.setdefault(image.key, []).append(image)
        first_seq.setdefault(image.key, record["dynamodb"]["SequenceNumber"])
        if base is not None:
            legacy.setdefault(image.key, base)
    users, failed, written, stale = sorted(by_user), [], 0, 0
    for start in range(0, len(users), CHUNK_USERS):
        chunk = {k: by_user[k] for k in users[start : start + CHUNK_USERS]}
        try:
            done = apply_chunk(chunk, metric_names, legacy)
            written, stale = written + done["users"], stale + done["stale"]
        except ChunkFailed:
            logger.exception("chunk not counted; Lambda retries it", extra={"users": len(chunk)})
            failed += [first_seq[k] for k in chunk]
    metrics.add_metric("UsersCounted", MetricUnit.Count, written)
    metrics.add_metric("StaleRecords", MetricUnit.Count, stale)  # redeliveries: counted before
    logger.info("batch", extra={"records": len(records), "users": len(users), "written": written,
                                "stale": stale, "failed_users": len(failed)})  # fmt: skip
    if not failed:
        return {"batchItemFailures": []}
    # Lambda retries from the lowest sequence number returned; counted users are no-ops then.
    return {"batchItemFailures": [{"itemIdentifier": min(failed, key=int)}]}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    if isinstance(event, dict) and "reconcile" in event:
        return reconcile.run(**(event["reconcile"] or {}))
    return count_records(event.get("Records") or [])
