"""Live progress of a Step Functions execution, state by state, from GetExecutionHistory."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

_FAILURE_EVENTS = ("Failed", "TimedOut", "Aborted")
# Lines are printed for the states that do work (Task, Map, Parallel). Pass/Choice/Wait states
# and the Describe step of a Wait + Describe + Choice loop are bookkeeping: a poll loop shows as
# the time between the call that started the work and the next line.
_SHOWN_TYPES = ("Task", "Map", "Parallel")
_POLL_SUFFIX = ": describe"


def shown(event_type: str, state: str) -> bool:
    """Whether a finished state gets its own progress line."""
    return event_type.startswith(_SHOWN_TYPES) and not state.endswith(_POLL_SUFFIX)


@dataclass
class Outcome:
    status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    seconds: float
    output: Any = None
    error: str | None = None
    cause: str | None = None
    failed_state: str | None = None
    states: list[tuple[str, float]] = field(default_factory=list)  # (state, seconds) as exited


def readable_cause(cause: str | None) -> str | None:
    """Lambda and SDK causes are often JSON; show their message, not the wrapper."""
    if not cause:
        return cause
    try:
        data = json.loads(cause)
    except (TypeError, ValueError):
        return cause
    if isinstance(data, dict):
        for key in ("errorMessage", "Message", "message", "Cause", "cause"):
            if data.get(key):
                return readable_cause(str(data[key]))
    return cause


class ProgressPrinter:
    """Turns history events into one line per finished working state, with elapsed times."""

    def __init__(self, out: TextIO = sys.stdout):
        self.out = out
        self.entered: dict[tuple[str, int], float] = {}  # (state, enteredEventId) -> time
        self.open_by_name: dict[str, list[int]] = {}
        self.started: float | None = None
        self.outcome = Outcome(status="RUNNING", seconds=0.0)
        self.last_failed_state: str | None = None

    def feed(self, event: dict) -> None:
        kind = event["type"]
        when = event["timestamp"].timestamp()
        if self.started is None:
            self.started = when
        elapsed = when - self.started
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            self.open_by_name.setdefault(name, []).append(event["id"])
            self.entered[(name, event["id"])] = when
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            opened = self.open_by_name.get(name) or []
            began = self.entered.pop((name, opened.pop()), when) if opened else when
            self.outcome.states.append((name, when - began))
            if shown(kind, name):
                self._line(f"[{elapsed:6.1f}s] ✓ {name} ({when - began:.1f}s)")
        elif kind.endswith(_FAILURE_EVENTS) and not kind.startswith("Execution"):
            details = next((v for k, v in event.items() if k.endswith("EventDetails")), {}) or {}
            open_states = [n for n, ids in self.open_by_name.items() if ids]
            self.last_failed_state = open_states[-1] if open_states else None
            self._line(
                f"[{elapsed:6.1f}s] ✗ {self.last_failed_state or kind}: {details.get('error', '')} "
                f"{readable_cause(details.get('cause')) or ''}".rstrip()
            )
        elif kind.startswith("Execution") and kind != "ExecutionStarted":
            details = next((v for k, v in event.items() if k.endswith("EventDetails")), {}) or {}
            self.outcome.seconds = elapsed
            self.outcome.error = details.get("error")
            self.outcome.cause = readable_cause(details.get("cause"))
            if kind == "ExecutionSucceeded" and details.get("output"):
                self.outcome.output = json.loads(details["output"])

    def _line(self, text: str) -> None:
        print(f"  {text}", file=self.out, flush=True)


def follow(
    sfn: Any, execution_arn: str, out: TextIO = sys.stdout, poll: float = 0.5, timeout: float = 3600
) -> Outcome:
    """Print the execution's states as they finish; return when it ends (or timeout passes)."""
    printer = ProgressPrinter(out)
    seen = 0
    deadline = time.monotonic() + timeout
    while True:
        status = sfn.describe_execution(executionArn=execution_arn)["status"]
        events = _history(sfn, execution_arn)
        for event in events[seen:]:
            printer.feed(event)
        seen = len(events)
        if status != "RUNNING":
            printer.outcome.status = status
            printer.outcome.failed_state = printer.last_failed_state
            return printer.outcome
        if time.monotonic() > deadline:
            printer.outcome.status = "RUNNING"
            printer.outcome.error = f"still running after {timeout:.0f}s"
            return printer.outcome
        time.sleep(poll)


def _history(sfn: Any, execution_arn: str) -> list[dict]:
    events, token = [], None
    while True:
        kwargs = {"executionArn": execution_arn, "maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        page = sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return sorted(events, key=lambda e: e["id"])
