"""local/tools/progress.py: one line per working state, poll-loop bookkeeping hidden, failures named."""

from __future__ import annotations

import datetime as dt
import io
import json

from local.tools.progress import ProgressPrinter, training_views

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _events(*steps: tuple) -> list[dict]:
    """(event type, state name, 'enter'|'exit'|detail, seconds[, input]) -> history events."""
    out = [{"id": 1, "type": "ExecutionStarted", "timestamp": T0}]
    for kind, name, extra, seconds, *given in steps:
        event = {"id": len(out) + 1, "type": kind, "timestamp": T0 + dt.timedelta(seconds=seconds)}
        if kind.endswith("StateEntered"):
            event["stateEnteredEventDetails"] = {"name": name, "input": json.dumps(given[0] if given else {})}
        elif kind.endswith("StateExited"):
            event["stateExitedEventDetails"] = {"name": name}
        else:
            event[kind[0].lower() + kind[1:] + "EventDetails"] = {"error": name, "cause": extra}
        out.append(event)
    return out


def _run(events: list[dict]) -> tuple[str, ProgressPrinter]:
    out = io.StringIO()
    printer = ProgressPrinter(out)
    for event in events:
        printer.feed(event)
    return out.getvalue(), printer


def _state(kind: str, name: str, start: float, end: float, given: dict | None = None) -> list[tuple]:
    return [(f"{kind}StateEntered", name, "", start, given or {}), (f"{kind}StateExited", name, "", end)]


VARIANT_A = {"solution": {"name": "A"}}


def test_poll_loop_bookkeeping_is_hidden_and_work_is_shown_with_its_item_and_duration():
    """Which states are work and whose item they work on comes from the definition, not names."""
    loop = [s for s in training_views() if s.startswith("Variant: Campaign: ")]
    assert {"Variant: Campaign: describe", "Variant: Campaign: wait"} <= set(loop)
    text, printer = _run(
        _events(
            *_state("Pass", "Configure", 0, 0),
            *_state("Task", "Variant: Create campaign", 0, 0.5, VARIANT_A),
            *_state("Task", "Variant: Campaign: describe", 0.5, 0.6, VARIANT_A),
            *_state("Choice", "Variant: Campaign: status?", 0.6, 0.6, VARIANT_A),
            *_state("Pass", "Variant: Campaign: back off", 0.6, 0.6, VARIANT_A),
            *_state("Wait", "Variant: Campaign: wait", 0.6, 1.6, VARIANT_A),
            *_state("Task", "Dataset: Create schema", 1.6, 1.7, {"dataset": {"kind": "items"}}),
            *_state("Map", "Variants", 0, 2.0),
        )
    )
    lines = text.splitlines()
    assert len(lines) == 3, text
    assert "✓ Variant A: Create campaign (0.5s)" in lines[0]
    assert "✓ Dataset items: Create schema (0.1s)" in lines[1]
    assert "✓ Variants (2.0s)" in lines[2] and "[   2.0s]" in lines[2]
    # every state is still recorded for the outcome, shown or not, and every event counted
    assert [name for name, _ in printer.outcome.states][:2] == ["Configure", "Variant: Create campaign"]
    assert printer.outcome.events == 1 + 2 * 8


def test_states_of_another_state_machine_are_shown_by_their_type():
    text, _ = _run(_events(*_state("Task", "Load: describe", 0, 1), *_state("Choice", "Done?", 1, 1)))
    assert "✓ Load: describe (1.0s)" in text and "Done?" not in text


def test_a_failure_names_the_open_state_and_a_readable_cause():
    text, printer = _run(
        _events(
            ("TaskStateEntered", "Prepare data", "", 0),
            (
                "TaskFailed",
                "Lambda.Unknown",
                '{"errorMessage": "interactions.csv: missing column USER_ID"}',
                1,
            ),
        )
    )
    assert "✗ Prepare data: Lambda.Unknown interactions.csv: missing column USER_ID" in text
    assert printer.last_failed_state == "Prepare data"
