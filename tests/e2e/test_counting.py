"""The experiment counters' operator paths on a stack of its own, through boto3 and HTTP only:
reconcile (docs/operations.md) racing the stream, and a record the aggregator cannot read going
to the dead-letter queue while the stream moves on. The aggregator reads the stream, sends to
the queue and scans the totals as its own execution role (local IAM), as on AWS.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest
import requests

from local.stack import load_template
from local.tools import report
from tests.e2e.conftest import TEMPLATE, start_stack, wait_counted

pytestmark = pytest.mark.e2e
EXPERIMENT = "recs-ab"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with start_stack(tmp_path_factory.mktemp("counting") / "state") as running:
        yield running


def _physical(logical_id: str) -> str:
    return load_template(TEMPLATE).resources[logical_id].physical_name


def _results(stack) -> dict:
    return report.fetch_results(stack.api_url, EXPERIMENT, signer=stack.signer)["variants"]


def _traffic(stack, users: list[str]) -> dict[str, Counter]:
    """One recommendation and two clicks per user; {variant: Counter(exposed, click)} sent."""
    sent: dict[str, Counter] = {}
    for u in users:
        resp = requests.post(
            f"{stack.api_url}/recommendations", json={"user_id": u, "num_results": 2}, timeout=60
        )
        assert resp.status_code == 200, resp.text
        events = [{"user_id": u, "item_id": str(k), "event_type": "click"} for k in range(2)]
        assert (
            requests.post(f"{stack.api_url}/events", json={"events": events}, timeout=60).status_code == 200
        )
        sent.setdefault(resp.json()["variant"], Counter()).update(exposed=1, click=2)
    return sent


def test_reconcile_racing_the_stream_counts_every_user_once(stack):
    before = _results(stack)
    sent = _traffic(stack, [f"rc-{i}" for i in range(12)])
    # At once, while the stream still delivers these changes: both paths apply the same users.
    answer = stack.client("lambda").invoke(
        FunctionName=_physical("AggregatorFunction"),
        Payload=json.dumps({"reconcile": {"experiment_id": EXPERIMENT}}).encode(),
    )
    assert "FunctionError" not in answer, answer["Payload"].read()
    report = json.loads(answer["Payload"].read())
    assert report["users"] >= 12 and report["exact"] is True, report

    def counted_once(after: dict) -> None:
        for variant, want in sent.items():
            b = before.get(variant, {"exposed": 0, "events": {}})
            assert after[variant]["exposed"] - b["exposed"] == want["exposed"], variant
            assert after[variant]["events"]["click"] - b["events"].get("click", 0) == want["click"], variant

    wait_counted(lambda: _results(stack), counted_once)


def test_a_record_the_aggregator_cannot_read_goes_to_the_dead_letter_queue_and_the_stream_moves_on(stack):
    """MaximumRetryAttempts (template) with bisection isolates the record; the queue's message names
    the shard and sequence numbers (docs/operations.md); later changes are counted."""
    ddb, sqs = stack.client("dynamodb"), stack.client("sqs")
    queue = sqs.get_queue_url(QueueName=_physical("AggregatorDeadLetterQueue"))["QueueUrl"]
    ddb.put_item(  # a revision that is not a number: the aggregator fails on it every time
        TableName=stack.outputs["AssignmentsTableName"],
        Item={
            k: {"S": v}
            for k, v in {"user_id": "poison", "experiment_id": "dlq-exp", "variant": "A", "rev": "x"}.items()
        },
    )
    before = _results(stack)
    sent = _traffic(stack, ["after-poison"])
    deadline, messages = time.monotonic() + 90, []
    while not messages and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
    assert messages, "nothing reached the dead-letter queue"
    info = json.loads(messages[0]["Body"])["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["startSequenceNumber"] == info["endSequenceNumber"], info

    (variant,) = sent

    def counted(after: dict) -> None:
        b = before.get(variant, {"exposed": 0})
        assert after[variant]["exposed"] - b["exposed"] == 1

    wait_counted(lambda: _results(stack), counted, lag=60)
