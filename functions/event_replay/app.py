"""Scheduled: re-send events whose PutEvents failed (or never ran), then clear their mark.

Events are stored with `forward_pending`; the events Lambda clears it once Personalize took
them. This function pages through the sparse GSI PendingForwardIndex (forward_pending,
received_at), skipping events younger than REPLAY_MIN_AGE_SECONDS (their own request may still
be forwarding them), and re-sends them through the experiment's event tracker. Invoked with
{"min_age_seconds": N} it takes events older than N seconds instead (0: everything pending).
Each run then publishes OldestPendingEventAgeSeconds, the age of the oldest event still waiting
(0 when none): EventsPendingAlarm watches it, so events that never reach Personalize (PutEvents
denied, throttled or unreachable run after run) page someone instead of piling up silently.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from recsys_common import config, ddb, personalize

logger = Logger()
tracer = Tracer()
metrics = Metrics()

INDEX = "PendingForwardIndex"
PAGE = 100
SAFETY_MS = 5000  # stop paging while this much of the invocation is left


def _cutoff(min_age: float) -> str:
    t = datetime.now(UTC) - timedelta(seconds=min_age)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _pages(min_age: float):
    kwargs = {
        "TableName": ddb.table_name("EVENTS_TABLE"),
        "IndexName": INDEX,
        "KeyConditionExpression": "forward_pending = :p AND received_at < :cut",
        "ExpressionAttributeValues": {":p": {"S": "1"}, ":cut": {"S": _cutoff(min_age)}},
        "Limit": PAGE,
    }
    while True:
        page = ddb.client().query(**kwargs)
        keys = [ddb.deserialize(i)["event_id"] for i in page.get("Items", [])]
        if keys:
            yield keys
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _clear(event_ids: list[str]) -> None:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for event_id in event_ids:
        ddb.client().update_item(
            TableName=ddb.table_name("EVENTS_TABLE"),
            Key={"event_id": {"S": event_id}},
            UpdateExpression="REMOVE forward_pending SET forwarded_at = :t",
            ConditionExpression="attribute_exists(event_id)",
            ExpressionAttributeValues={":t": {"S": now}},
        )


def oldest_pending_age_seconds(now: datetime | None = None) -> float:
    """Seconds since the oldest still-pending event was received (0.0 when none is pending)."""
    page = ddb.client().query(
        TableName=ddb.table_name("EVENTS_TABLE"),
        IndexName=INDEX,
        KeyConditionExpression="forward_pending = :p",
        ExpressionAttributeValues={":p": {"S": "1"}},
        ScanIndexForward=True,  # received_at ascending: the oldest first
        Limit=1,
        ProjectionExpression="received_at",
    )
    items = page.get("Items") or []
    if not items:
        return 0.0
    received = datetime.fromisoformat(items[0]["received_at"]["S"])
    return max(0.0, ((now or datetime.now(UTC)) - received).total_seconds())


def replay(remaining_ms=lambda: 900_000, min_age: float | None = None) -> dict:
    experiment = config.load()
    if not experiment.tracking_id:
        return {
            "sent": 0,
            "failed": 0,
            "rejected": 0,
            "skipped": "no event tracker in the experiment record yet",
        }
    min_age = float(os.environ.get("REPLAY_MIN_AGE_SECONDS", "60")) if min_age is None else min_age
    sent_total, failed_total, rejected_total = 0, 0, 0
    for keys in _pages(min_age):
        # Full items by key: the GSI's projection need not carry every attribute.
        found = ddb.batch_get("EVENTS_TABLE", "event_id", keys)
        events = [found[k] for k in keys if k in found and found[k].get("forward_pending")]
        sent, failed, rejected = personalize.forward(events, experiment.tracking_id)
        _clear(sent)
        personalize.mark_rejected(rejected)  # refused for good: they must not block the queue
        sent_total, failed_total = sent_total + len(sent), failed_total + len(failed)
        rejected_total += len(rejected)
        if failed or remaining_ms() < SAFETY_MS:
            break  # Personalize is still failing, or time is up: the next run continues
    return {"sent": sent_total, "failed": failed_total, "rejected": rejected_total}


def _min_age(event) -> float | None:
    """An operator may invoke with {"min_age_seconds": 0} to re-send everything pending now."""
    value = event.get("min_age_seconds") if isinstance(event, dict) else None
    if value is None:
        return None  # the schedule's invocation: REPLAY_MIN_AGE_SECONDS
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86400:
        raise ValueError(f"min_age_seconds must be a number of seconds from 0 to 86400, got {value!r}")
    return float(value)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context):
    start = time.perf_counter()
    result = replay(context.get_remaining_time_in_millis, _min_age(event))
    metrics.add_metric("EventsReplayed", MetricUnit.Count, result["sent"])
    if result["failed"]:
        metrics.add_metric("EventsForwardFailed", MetricUnit.Count, result["failed"])
    if result["rejected"]:
        metrics.add_metric("EventsForwardRejected", MetricUnit.Count, result["rejected"])
    if "skipped" not in result:  # before the first training there is no tracker to forward to
        age = oldest_pending_age_seconds()
        metrics.add_metric("OldestPendingEventAgeSeconds", MetricUnit.Seconds, age)
        result["oldest_pending_seconds"] = round(age, 3)
    logger.info("replay", extra={**result, "seconds": round(time.perf_counter() - start, 3)})
    return result
