"""Personalize clients with serving budgets, and event forwarding (PutEvents) shared by the
events and event_replay Lambdas."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from functools import cache

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)
MAX_EVENTS_PER_CALL = 10  # PutEvents' limit
MAX_IMPRESSION = 25  # Event.impression's limit
MAX_RECOMMENDATION_ID = 40  # Event.recommendationId's limit


def timeout_seconds() -> float:
    return max(0.05, float(os.environ.get("PERSONALIZE_TIMEOUT_MS", "800")) / 1000)


@cache
def runtime():
    """GetRecommendations within PERSONALIZE_TIMEOUT_MS: one attempt, then the fallback serves."""
    t = timeout_seconds()
    config = Config(connect_timeout=t, read_timeout=t, retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.client("personalize-runtime", config=config)


@cache
def events_client():
    config = Config(connect_timeout=1, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 2})
    return boto3.client("personalize-events", config=config)


def _wire_event(e: dict) -> dict:
    out = {
        "eventId": e["event_id"],
        "eventType": e["event_type"],
        "itemId": e["item_id"],
        "sentAt": datetime.fromtimestamp(float(e["timestamp"]), UTC),
    }
    if e.get("value") is not None:
        out["eventValue"] = float(e["value"])
    rid = e.get("personalize_recommendation_id") or e.get("recommendation_id")
    if rid and len(rid) <= MAX_RECOMMENDATION_ID:
        out["recommendationId"] = rid
    if e.get("impression"):
        out["impression"] = [str(i) for i in e["impression"][:MAX_IMPRESSION]]
    if e.get("properties"):
        out["properties"] = (
            e["properties"] if isinstance(e["properties"], str) else json.dumps(e["properties"])
        )
    return out


def _put(tracking_id: str, user_id: str, session_id: str, chunk: list[dict]) -> None:
    events_client().put_events(
        trackingId=tracking_id,
        userId=user_id,
        sessionId=session_id,
        eventList=[_wire_event(e) for e in chunk],
    )


def _refused(exc: Exception) -> str | None:
    """Personalize's reason when it refuses the events themselves (retrying cannot help)."""
    if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "InvalidInputException":
        return exc.response["Error"].get("Message") or "InvalidInputException"
    return None


def forward(events: list[dict], tracking_id: str) -> tuple[list[str], list[str], dict[str, str]]:
    """PutEvents for stored events, ≤10 per call per (user, session).

    Returns (sent ids, failed ids: to retry later, rejected {id: reason}: refused by Personalize).
    A refused call is split into single events, so one bad event does not hold back nine good
    ones, and a rejected event never blocks the replay queue behind it. After a failure that is
    not a refusal (throttled, unreachable) the rest is not tried: it stays pending for the replay
    instead of spending the caller's time budget on more timeouts.
    """
    groups: dict[tuple[str, str], list[dict]] = {}
    for e in events:
        groups.setdefault((e["user_id"], e.get("session_id") or e["user_id"]), []).append(e)
    queue = [
        (user_id, session_id, group[start : start + MAX_EVENTS_PER_CALL])
        for (user_id, session_id), group in groups.items()
        for start in range(0, len(group), MAX_EVENTS_PER_CALL)
    ]
    sent, failed, rejected = [], [], {}
    while queue:
        user_id, session_id, chunk = queue.pop(0)
        try:
            _put(tracking_id, user_id, session_id, chunk)
            sent.extend(e["event_id"] for e in chunk)
            continue
        except Exception as exc:
            reason = _refused(exc)
            logger.warning("PutEvents failed for %d events: %s", len(chunk), exc)
        if reason is None:  # kept pending with everything after it; event_replay re-sends
            failed.extend(e["event_id"] for _, _, c in [(user_id, session_id, chunk), *queue] for e in c)
            break
        if len(chunk) == 1:
            rejected[chunk[0]["event_id"]] = reason
        else:  # one at a time, to find the refused ones
            queue[:0] = [(user_id, session_id, [e]) for e in chunk]
    return sent, failed, rejected


def mark_rejected(rejected: dict[str, str]) -> None:
    """Stop forwarding events Personalize refused; they stay stored, with the reason."""
    from recsys_common import ddb

    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    for event_id, reason in rejected.items():
        ddb.client().update_item(
            TableName=ddb.table_name("EVENTS_TABLE"),
            Key={"event_id": {"S": event_id}},
            UpdateExpression="REMOVE forward_pending SET forward_error = :e, forward_failed_at = :t",
            ConditionExpression="attribute_exists(event_id)",
            ExpressionAttributeValues={":e": {"S": reason[:500]}, ":t": {"S": now}},
        )
