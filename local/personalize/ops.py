"""The operation registry and what every family of operations shares: pagination, list summaries
shaped by the service model, the engine's limits."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from local.personalize.errors import InvalidNextToken
from local.personalize.protocol import service_model

OPERATIONS: dict[tuple[str, str], Callable] = {}

# Limits (LimitExceededException past them). Personalize's own quotas are larger for some; these
# keep a laptop's engine sane and match the service where it matters to callers (one event
# tracker per dataset group, 10 filters per dataset group).
LIMITS = {
    "dataset-group": 100,
    "schema": 500,
    "solution per dataset group": 20,
    "campaign": 50,
    "filter per dataset group": 10,
    "event-tracker per dataset group": 1,
    "running solution versions": 10,
}
PENDING_SECONDS = 0.2  # a short, visible CREATE PENDING / DELETE PENDING, as pollers expect


def operation(service: str, name: str | None = None):
    """Register `fn(engine, request) -> response` as an operation of a service."""

    def register(fn):
        OPERATIONS[(service, name or fn.__name__)] = fn
        return fn

    return register


def page(operation_name: str, key: str, records: list[dict], request: dict) -> dict:
    """One page of a List* response: summaries with exactly the members the list shape defines."""
    size = request.get("maxResults", 100)
    start = _decode(request.get("nextToken"), operation_name)
    shape = service_model("personalize").operation_model(operation_name).output_shape.members[key].member
    chosen = records[start : start + size]
    out = {key: [_members(shape, r) for r in chosen]}
    if start + size < len(records):
        out["nextToken"] = _encode(start + size, operation_name)
    return out


def _encode(offset: int, operation_name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"op": operation_name, "offset": offset}).encode()).decode()


def _decode(token: str | None, operation_name: str) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        if data["op"] == operation_name and isinstance(data["offset"], int) and data["offset"] >= 0:
            return data["offset"]
    except (ValueError, KeyError, TypeError):
        pass
    raise InvalidNextToken(
        f"The nextToken {token[:40]!r} was not returned by {operation_name}; start without one."
    )


def shaped(operation_name: str, key: str, record: dict) -> dict:
    """A Describe* body: the record's members that the output shape defines."""
    shape = service_model("personalize").operation_model(operation_name).output_shape.members[key]
    return {key: _members(shape, record)}


def summary(shape_name: str, record: dict) -> dict:
    """The record's members that a named shape (SolutionVersionSummary...) defines."""
    return _members(service_model("personalize").shape_for(shape_name), record)


def _members(shape, record: dict) -> dict:
    return {m: record[m] for m in shape.members if record.get(m) is not None}
