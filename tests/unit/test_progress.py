"""local/progress.py: one line per working state, poll-loop bookkeeping hidden, failures named."""

from __future__ import annotations

import datetime as dt
import io

from local.progress import ProgressPrinter

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _events(*steps: tuple[str, str, str, float]) -> list[dict]:
    """(event type, state name, 'enter'|'exit'|detail, seconds) -> history events."""
    out = [{"id": 1, "type": "ExecutionStarted", "timestamp": T0}]
    for kind, name, extra, seconds in steps:
        event = {"id": len(out) + 1, "type": kind, "timestamp": T0 + dt.timedelta(seconds=seconds)}
        if kind.endswith("StateEntered"):
            event["stateEnteredEventDetails"] = {"name": name}
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


def test_poll_loop_bookkeeping_is_hidden_and_work_is_shown_with_its_duration():
    text, printer = _run(
        _events(
            ("PassStateEntered", "Configure", "", 0),
            ("PassStateExited", "Configure", "", 0),
            ("TaskStateEntered", "Create campaign", "", 0),
            ("TaskStateExited", "Create campaign", "", 0.5),
            ("TaskStateEntered", "Campaign: describe", "", 0.5),
            ("TaskStateExited", "Campaign: describe", "", 0.6),
            ("ChoiceStateEntered", "Campaign: status?", "", 0.6),
            ("ChoiceStateExited", "Campaign: status?", "", 0.6),
            ("WaitStateEntered", "Campaign: wait", "", 0.6),
            ("WaitStateExited", "Campaign: wait", "", 1.6),
            ("MapStateEntered", "Variants", "", 0),
            ("MapStateExited", "Variants", "", 2.0),
        )
    )
    lines = text.splitlines()
    assert len(lines) == 2, text
    assert "✓ Create campaign (0.5s)" in lines[0]
    assert "✓ Variants (2.0s)" in lines[1] and "[   2.0s]" in lines[1]
    # every state is still recorded for the outcome, shown or not
    assert [name for name, _ in printer.outcome.states][:2] == ["Configure", "Create campaign"]


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
