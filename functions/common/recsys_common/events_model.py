"""Validation of incoming events (POST /events), all-or-nothing, naming every bad field.

Limits follow Personalize's PutEvents shapes (ids ≤ 256, properties ≤ 1024 characters) so
that every accepted event can also be forwarded.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from datetime import datetime

MAX_EVENTS = 100
MAX_ID = 256
MAX_PROPERTIES = 1024
MAX_ABS_VALUE = 1e9
# DynamoDB numbers stop at 1e-130 and the aggregates store value² (and products): keep them far above
MIN_ABS_VALUE = 1e-6
EARLIEST = 946684800.0  # 2000-01-01: anything older is a unit or clock error
FUTURE_SLACK = 15 * 60  # client clocks run ahead a little, not more
FIELDS = {
    "event_id", "user_id", "item_id", "event_type", "session_id", "timestamp",
    "value", "recommendation_id", "properties",
}  # fmt: skip
REQUIRED = ("user_id", "item_id", "event_type")


class Invalid(Exception):
    def __init__(self, problems: list[dict]):
        super().__init__("; ".join(f"{p['field']}: {p['problem']}" for p in problems))
        self.problems = problems


def batch(body) -> tuple[list, bool]:
    """The list of raw events in a body: {"events": [...]} or one event object."""
    if isinstance(body, dict) and "events" in body:
        extra = sorted(set(body) - {"events"})
        if extra:
            raise Invalid([{"field": f, "problem": "unknown field next to 'events'"} for f in extra])
        events = body["events"]
        if not isinstance(events, list):
            raise Invalid([{"field": "events", "problem": "must be an array of event objects"}])
        if not 1 <= len(events) <= MAX_EVENTS:
            raise Invalid(
                [{"field": "events", "problem": f"must hold 1 to {MAX_EVENTS} events, got {len(events)}"}]
            )
        return events, True
    if isinstance(body, dict):
        return [body], False
    raise Invalid([{"field": "body", "problem": 'must be an event object or {"events": [...]}'}])


def _string(e: dict, key: str, where: str, problems: list, required: bool, max_len: int = MAX_ID):
    value = e.get(key)
    if value is None:
        if required:
            problems.append({"field": f"{where}{key}", "problem": "is required"})
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append({"field": f"{where}{key}", "problem": "must be a non-empty string"})
        return None
    if len(value) > max_len:
        problems.append({"field": f"{where}{key}", "problem": f"longer than {max_len} characters"})
        return None
    return value


def _timestamp(value, field: str, problems: list, now: float) -> float | None:
    if value is None:
        return now
    ts = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int | float) and math.isfinite(value):
        ts = float(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is not None:
                ts = parsed.timestamp()
            else:
                problems.append({"field": field, "problem": "ISO-8601 timestamps need a time zone (e.g. Z)"})
                return None
        except ValueError:
            pass
    if ts is None:
        problems.append({"field": field, "problem": "must be epoch seconds or an ISO-8601 date-time"})
        return None
    if ts > now + FUTURE_SLACK:
        hint = " (milliseconds? send seconds)" if ts > 1e11 else ""
        problems.append({"field": field, "problem": f"is in the future{hint}"})
        return None
    if ts < EARLIEST:
        problems.append({"field": field, "problem": "is before 2000-01-01"})
        return None
    return ts


def _value(value, field: str, problems: list) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append({"field": field, "problem": "must be a finite number"})
        return None
    if abs(value) > MAX_ABS_VALUE:
        problems.append({"field": field, "problem": f"must be within ±{MAX_ABS_VALUE:g}"})
        return None
    if value and abs(value) < MIN_ABS_VALUE:
        problems.append({"field": field, "problem": f"must be 0 or at least {MIN_ABS_VALUE:g} in magnitude"})
        return None
    return float(value)


def _properties(value, field: str, problems: list) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append({"field": field, "problem": "must be an object"})
        return None
    text = json.dumps(value, separators=(",", ":"), allow_nan=False) if _finite(value) else None
    if text is None:
        problems.append({"field": field, "problem": "must be JSON without NaN/Infinity"})
        return None
    if len(text) > MAX_PROPERTIES:
        problems.append({"field": field, "problem": f"longer than {MAX_PROPERTIES} characters as JSON"})
        return None
    return text


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def derive_id(e: dict) -> str:
    """A client retry of the same event (same timestamp) gets the same id, so it is not counted twice."""
    key = json.dumps([e[k] for k in ("user_id", "item_id", "event_type", "timestamp", "session_id",
                                     "recommendation_id", "value")])  # fmt: skip
    return "d-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def validate(raw_events: list, event_types: list[str], batched: bool, now: float | None = None) -> list[dict]:
    """Clean events, or Invalid listing every problem (nothing is written unless all are valid)."""
    now = time.time() if now is None else now
    problems: list[dict] = []
    clean = []
    for i, e in enumerate(raw_events):
        where = f"events[{i}]." if batched else ""
        if not isinstance(e, dict):
            problems.append({"field": where.rstrip(".") or "body", "problem": "must be an object"})
            continue
        for f in sorted(set(e) - FIELDS):
            problems.append({"field": f"{where}{f}", "problem": "unknown field"})
        out = {k: _string(e, k, where, problems, k in REQUIRED) for k in ("user_id", "item_id", "event_type")}
        out["event_id"] = _string(e, "event_id", where, problems, False)
        out["session_id"] = _string(e, "session_id", where, problems, False)
        out["recommendation_id"] = _string(e, "recommendation_id", where, problems, False, 64)
        if out["event_type"] is not None and out["event_type"] not in event_types:
            problems.append(
                {"field": f"{where}event_type", "problem": f"must be one of {', '.join(event_types)}"}
            )
        if out["event_id"] and out["event_id"].startswith("rec#"):
            problems.append({"field": f"{where}event_id", "problem": "must not start with 'rec#' (reserved)"})
        client_ts = e.get("timestamp")
        out["timestamp"] = _timestamp(client_ts, f"{where}timestamp", problems, now)
        out["value"] = _value(e.get("value"), f"{where}value", problems)
        out["properties"] = _properties(e.get("properties"), f"{where}properties", problems)
        if not out["event_id"] and out["timestamp"] is not None:
            out["event_id"] = derive_id(out) if client_ts is not None else "u-" + uuid.uuid4().hex
        clean.append(out)
    if problems:
        raise Invalid(problems)
    return clean
