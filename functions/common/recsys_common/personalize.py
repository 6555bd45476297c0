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


def forward(events: list[dict], tracking_id: str) -> tuple[list[str], list[str]]:
    """PutEvents for stored events, ≤10 per call per (user, session). Returns (sent ids, failed ids)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for e in events:
        groups.setdefault((e["user_id"], e.get("session_id") or e["user_id"]), []).append(e)
    sent, failed = [], []
    for (user_id, session_id), group in groups.items():
        for start in range(0, len(group), MAX_EVENTS_PER_CALL):
            chunk = group[start : start + MAX_EVENTS_PER_CALL]
            ids = [e["event_id"] for e in chunk]
            try:
                events_client().put_events(
                    trackingId=tracking_id,
                    userId=user_id,
                    sessionId=session_id,
                    eventList=[_wire_event(e) for e in chunk],
                )
                sent.extend(ids)
            except Exception as exc:  # kept pending; event_replay re-sends
                logger.warning("PutEvents failed for %d events: %s", len(ids), exc)
                failed.extend(ids)
    return sent, failed
