"""IAM on the local stack: each function and the state machine act as their template role.

One stack runs a copy of template.yaml with two permissions changed, each as a real mistake would:
- EventsFunction's ForwardEvents grants personalize:PutEvents on `event-tracker/*` (defect 1 of
  issue 10): PutEvents has no resource type, so AWS never matches that grant. Events stay pending,
  and EventReplayFunction (whose grant is on "*", unchanged) sends them.
- TrainingStateMachine loses SNSPublishMessagePolicy: the pipeline's notification step fails with
  SNS's AuthorizationError in the execution history, and the run fails.
The unmodified template passes the same steps (tests/e2e/test_pipeline.py, test_serving_http.py).
Schedules are fired with `python -m local fire`, as their own roles.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ROOT, RunningStack, start_stack

TRACKER_SCOPED = '''Action: personalize:PutEvents
              Resource: !Sub "arn:${AWS::Partition}:personalize:${AWS::Region}:${AWS::AccountId}:event-tracker/*"'''
SNS_GRANT = "        - SNSPublishMessagePolicy: {TopicName: !GetAtt PipelineTopic.TopicName}\n"


def broken_template(root: Path) -> Path:
    """template.yaml with the two changes, next to links to the code it builds from."""
    text = (ROOT / "template.yaml").read_text()
    events = text.index("\n  EventsFunction:\n")
    grant = text.index('Action: personalize:PutEvents\n              Resource: "*"', events)
    text = (
        text[:grant]
        + TRACKER_SCOPED
        + text[grant + len('Action: personalize:PutEvents\n              Resource: "*"') :]
    )
    assert text.count(SNS_GRANT) == 1
    text = text.replace(SNS_GRANT, "")
    root.mkdir(parents=True, exist_ok=True)
    for part in ("functions", "statemachines", "datasets"):
        (root / part).symlink_to(ROOT / part)
    (root / "template.yaml").write_text(text)
    return root / "template.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("iam")
    with start_stack(base / "state", template=broken_template(base / "repo")) as running:
        yield running


def fire(stack: RunningStack, name: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "local", "fire", name, "--state-dir", str(stack.state_dir), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


def wait(stack: RunningStack, arn: str, timeout: float = 120) -> dict:
    sfn, deadline = stack.client("stepfunctions"), time.monotonic() + timeout
    while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{arn} still running"
        time.sleep(0.3)
    return described


def failed_tasks(stack: RunningStack, arn: str) -> list[dict]:
    events = stack.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]


def test_schedules_start_the_pipeline_as_their_role_and_a_denied_publish_fails_its_step(stack):
    """No raw data: one run fails at Prepare data, the other at the run lock; each failure notice is
    refused by SNS (the state machine's role may no longer publish), as the execution history shows."""
    fired = [
        fire(stack, s)["execution"]
        for s in ("TrainingStateMachineFullSchedule", "TrainingStateMachineUpdateSchedule")
    ]
    for execution in fired:
        assert wait(stack, execution)["status"] == "FAILED"
        denied = [t for t in failed_tasks(stack, execution) if "sns:Publish" in t.get("cause", "")]
        assert denied, failed_tasks(stack, execution)
        assert denied[0]["error"] == "SNS.AuthorizationErrorException", denied[0]
        assert "assumed-role/TrainingStateMachineRole/" in denied[0]["cause"]


def test_a_tracker_scoped_put_events_grant_leaves_events_pending_and_replay_sends_them(stack):
    stack.upload_raw()
    described = stack.run_training({"trainingMode": "FULL", "variants": ["C"]})  # the quickest recipe
    # The event tracker exists; only the final notice (sns:Publish, taken away) fails the run.
    assert described["status"] == "FAILED" and "sns:Publish" in (described.get("cause") or ""), described
    events = [{"user_id": "iam-1", "item_id": item, "event_type": "click"} for item in ("1", "2", "3")]
    answer = requests.post(f"{stack.api_url.rstrip('/')}/events", json={"events": events}, timeout=60).json()
    assert (answer["forwarded"], answer["forward_pending"]) == (0, len(events)), answer
    log = (stack.state_dir / "logs" / "EventsFunction.log").read_text()
    assert "AccessDeniedException" in log and "not authorized to perform: personalize:PutEvents" in log
    replayed = fire(stack, "EventReplayFunctionReplay", "--wait", "--input", '{"min_age_seconds": 0}')[
        "result"
    ]
    assert replayed["sent"] == len(events) and replayed["failed"] == 0, replayed
    assert fire(stack, "ModelMonitorFunctionHourly", "--wait")["error"] is None
