"""Validation of incoming events (POST /events), all-or-nothing, naming every bad field.

The shapes and limits are docs/openapi.yaml's (schemas Event and EventBatch, through
recsys_common.contract): ids ≤ 256 characters, as Personalize's PutEvents takes them, so that every
accepted event can also be forwarded. Here only what a schema cannot state: the stack's event
types, timestamps against the clock, the smallest magnitude of a value, the size of properties as
JSON. A field the schema already rejected is not checked again.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from datetime import datetime

from recsys_common import contract

MAX_PROPERTIES = 1024
# DynamoDB numbers stop at 1e-130 and the aggregates store value² (and products): keep them far above
MIN_ABS_VALUE = 1e-6
EARLIEST = 946684800.0  # 2000-01-01: anything older is a unit or clock error
FUTURE_SLACK = 15 * 60  # client clocks run ahead a little, not more


class Invalid(Exception):
    def __init__(self, problems: list[dict]):
        problems = contract.public(problems)
        super().__init__("; ".join(f"{p['field']}: {p['problem']}" for p in problems))
        self.problems = problems


def batch(body) -> tuple[list, bool]:
    """The list of raw events in a body: {"events": [...]} (schema EventBatch) or one event object."""
    if isinstance(body, dict) and "events" in body:
        _, problems = contract.shape("EventBatch").check(body)  # each event: validate()
        if problems:
            raise Invalid(problems)
        return body["events"], True
    if isinstance(body, dict):
        return [body], False
    raise Invalid([{"field": "body", "problem": 'must be an event object or {"events": [...]}'}])


def _timestamp(value, field: str, problems: list, now: float) -> float | None:
    """Epoch seconds from a number or an ISO-8601 date-time with a zone (the schema's oneOf)."""
    if value is None:
        return now
    ts = (
        float(value)
        if isinstance(value, int | float)
        else datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    )
    if ts > now + FUTURE_SLACK:
        hint = " (milliseconds? send seconds)" if ts > 1e11 else ""
        problems.append({"field": field, "problem": f"is in the future{hint}"})
        return None
    if ts < EARLIEST:
        problems.append({"field": field, "problem": "is before 2000-01-01"})
        return None
    return ts


def _value(value, field: str, problems: list) -> float | None:
    if value and abs(value) < MIN_ABS_VALUE:
        problems.append({"field": field, "problem": f"must be 0 or at least {MIN_ABS_VALUE:g} in magnitude"})
        return None
    return None if value is None else float(value)


def _properties(value, field: str, problems: list) -> str | None:
    if value is None:
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


def _rules(e: dict, prefix: str, bad: set[str], event_types: list[str], now: float, problems: list) -> dict:
    """The clean event after the rules a schema cannot state (fields the schema rejected are skipped)."""
    out = {k: e.get(k) for k in ("user_id", "item_id", "event_type", "event_id", "session_id",
                                 "recommendation_id")}  # fmt: skip
    if out["event_type"] not in (None, *event_types) and f"{prefix}event_type" not in bad:
        problems.append(
            {"field": f"{prefix}event_type", "problem": f"must be one of {', '.join(event_types)}"}
        )
    skip = {k for k in ("timestamp", "value", "properties") if prefix + k in bad}
    out["timestamp"] = (
        None if "timestamp" in skip else _timestamp(e.get("timestamp"), f"{prefix}timestamp", problems, now)
    )
    out["value"] = None if "value" in skip else _value(e.get("value"), f"{prefix}value", problems)
    out["properties"] = (
        None if "properties" in skip else _properties(e.get("properties"), f"{prefix}properties", problems)
    )
    return out


def validate(raw_events: list, event_types: list[str], batched: bool, now: float | None = None) -> list[dict]:
    """Clean events, or Invalid listing every problem (nothing is written unless all are valid)."""
    now = time.time() if now is None else now
    problems: list[dict] = []
    clean = []
    for i, raw in enumerate(raw_events):
        where = f"events[{i}]" if batched else ""
        e, found = contract.schema("Event").check(raw, where)
        problems += found
        if not isinstance(e, dict):
            continue
        out = _rules(e, f"{where}." if where else "", {p["field"] for p in found}, event_types, now, problems)
        if not out["event_id"] and out["timestamp"] is not None:
            out["event_id"] = derive_id(out) if e.get("timestamp") is not None else "u-" + uuid.uuid4().hex
        clean.append(out)
    if problems:
        raise Invalid(problems)
    return clean
