"""Live progress of a Step Functions execution, state by state, from GetExecutionHistory.

One line per finished working state. Which states are work, and whose item a state of a Map
iteration works on, comes from the definition (statemachines/training.py's views): a poll loop
shows as the time between the call that started the work and the next line, and the iterations
read "Variant A: Create solution". States the definition does not know (another state machine)
are shown when they are Tasks, Maps or Parallels.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TextIO

from statemachines.asl import View

_FAILURE_EVENTS = ("Failed", "TimedOut", "Aborted")
_WORK_TYPES = ("Task", "Map", "Parallel")


@cache
def training_views() -> dict[str, View]:
    from statemachines import training

    return training.machine()[1].views()


def _label(view: View | None, entered_input: str | None) -> str | None:
    """The item a Map iteration's state works on, read from the state's input at view.label."""
    if view is None or not view.label or not entered_input:
        return None
    try:
        value: Any = json.loads(entered_input)
        for key in view.label.removeprefix("$.").split("."):
            value = value[key]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def display_name(name: str, view: View | None, label: str | None) -> str:
    """ "Variant: Create solution" -> "Variant A: Create solution" when the item is known."""
    if view is None or not label or not view.prefix or not name.startswith(f"{view.prefix}: "):
        return name
    return f"{view.prefix} {label}: {name.removeprefix(view.prefix + ': ')}"


@dataclass
class Outcome:
    status: str  # SUCCEEDED | FAILED | TIMED_OUT | ABORTED
    seconds: float
    output: Any = None
    error: str | None = None
    cause: str | None = None
    failed_state: str | None = None
    states: list[tuple[str, float]] = field(default_factory=list)  # (state, seconds) as exited
    events: int = 0  # history events of the execution (Step Functions fails one at 25,000)


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

    def __init__(self, out: TextIO = sys.stdout, views: dict[str, View] | None = None):
        self.out = out
        self.views = training_views() if views is None else views
        self.entered: dict[tuple[str, int], tuple[float, str | None]] = {}  # (state, id) -> (time, label)
        self.open_by_name: dict[str, list[int]] = {}
        self.started: float | None = None
        self.outcome = Outcome(status="RUNNING", seconds=0.0)
        self.last_failed_state: str | None = None

    def feed(self, event: dict) -> None:
        kind = event["type"]
        when = event["timestamp"].timestamp()
        self.outcome.events += 1
        if self.started is None:
            self.started = when
        elapsed = when - self.started
        if kind.endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            name = details["name"]
            self.open_by_name.setdefault(name, []).append(event["id"])
            self.entered[(name, event["id"])] = (when, _label(self.views.get(name), details.get("input")))
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            opened = self.open_by_name.get(name) or []
            began, label = self.entered.pop((name, opened.pop()), (when, None)) if opened else (when, None)
            self.outcome.states.append((name, when - began))
            view = self.views.get(name)
            if view.shown if view else kind.startswith(_WORK_TYPES):
                self._line(f"[{elapsed:6.1f}s] ✓ {display_name(name, view, label)} ({when - began:.1f}s)")
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
