"""The experiment counters off the request path, on moto: the handlers write per-user totals, the
assignments stream (moto) is delivered through the template's event source mapping
(local/sam/streams.py: batches, bisection, partial batch responses, retries, on-failure) to the
real aggregator. Expected counters are computed here from what the test sent, not by the code
under test.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from local.moto_patches import dynamodb as moto_dynamodb
from local.sam.streams import mappings, send_to_destination
from tests.support import LambdaContext as Context
from tests.unit.abtest_helpers import variant_counters

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.plugins.serving"]  # the `serving` fixture
TYPES = ["click", "purchase", "view"]
METRICS = sorted([*TYPES, "value"])


def _traffic(serving, users: list[str]) -> dict[str, dict]:
    """Each user: two recommendation requests (no campaign: both fallbacks) and a few events.
    Returns {user: {"variant", "requests", <metric totals>}}."""
    serving.put_experiment(variants={"A": {"weight": 1}, "B": {"weight": 1}})
    out = {}
    for i, u in enumerate(users):
        body = serving.request("POST", "/recommendations", {"user_id": u, "num_results": 2})[2]
        serving.request("POST", "/recommendations", {"user_id": u, "num_results": 2})
        events = [{"user_id": u, "item_id": "x", "event_type": TYPES[(i + k) % 3]} for k in range(1 + i % 3)]
        events.append({"user_id": u, "item_id": "y", "event_type": "purchase", "value": 2.5 + i})
        status, _, answer = serving.request("POST", "/events", {"events": events})
        assert status == 200 and answer["accepted"] == len(events)
        totals = defaultdict(float, variant=body["variant"], requests=2)
        for e in events:
            totals[e["event_type"]] += 1
            totals["value"] += e.get("value", 0.0)
        out[u] = totals
    return out


def _expected(users: dict[str, dict]) -> dict[str, dict[str, float]]:
    """The ALL slices from each user's totals (every request here is a fallback)."""
    totals = {u: {**t, "fallbacks": t["requests"]} for u, t in users.items()}
    counters = variant_counters(totals, {u: t["variant"] for u, t in users.items()}, METRICS)
    return {f"{v}#ALL": c for v, c in counters.items()}


def _all_slices(serving) -> dict[str, dict[str, float]]:
    return {k: v for k, v in serving.aggregates().items() if k.endswith("#ALL")}


def _assert_counted(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for s in expected:
        assert got[s].keys() == expected[s].keys(), s
        for k in expected[s]:
            assert got[s][k] == pytest.approx(expected[s][k], rel=1e-12), (s, k)


class Recorder:
    """The aggregator, invoked as the event source mapping would; remembers each batch."""

    def __init__(self, serving, fail_if=None):
        self.serving, self.fail_if, self.batches = serving, fail_if, []

    def __call__(self, name, event):
        self.batches.append([r["dynamodb"]["SequenceNumber"] for r in event["Records"]])
        if self.fail_if and self.fail_if(event["Records"]):
            return False, {"errorMessage": "poison", "errorType": "RuntimeError"}
        return self.serving.invoke_aggregator(name, event)


def test_partial_failures_and_redeliveries_count_nothing_twice(serving, monkeypatch):
    users = _traffic(serving, [f"u{i:02d}" for i in range(12)])
    app = serving.aggregator
    monkeypatch.setattr(app, "CHUNK_USERS", 4)  # three transactions per batch
    real, calls = app.apply_chunk, []

    def second_chunk_fails_once(images, metrics, legacy=None):
        calls.append(sorted(images))
        if len(calls) == 2:
            raise app.ChunkFailed("throttled")
        return real(images, metrics, legacy)

    monkeypatch.setattr(app, "apply_chunk", second_chunk_fails_once)
    records = serving.stream_records()
    recorder = Recorder(serving)
    serving.count_records(records, recorder)
    # The partial batch response named the failed chunk's first record: Lambda retried from there,
    # not from the start; users counted before it were no-ops (their watermark).
    first, retry = recorder.batches
    assert len(first) == len(records) and 0 < len(retry) < len(records) and retry == first[-len(retry) :]
    _assert_counted(_all_slices(serving), _expected(users))
    serving.count_records(records, Recorder(serving))  # the whole batch again: a redelivery
    _assert_counted(_all_slices(serving), _expected(users))


def test_a_poison_record_is_bisected_out_sent_to_the_dlq_then_reconciled(serving):
    users = _traffic(serving, [f"p{i:02d}" for i in range(8)] + ["poison"])
    (m,) = mappings(serving.t)
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=m.on_failure.rsplit(":", 1)[-1])["QueueUrl"]
    records = serving.stream_records()
    poison = [
        r["dynamodb"]["SequenceNumber"] for r in records if r["dynamodb"]["Keys"]["user_id"]["S"] == "poison"
    ]

    def is_poison(batch):
        return any(r["dynamodb"]["Keys"]["user_id"]["S"] == "poison" for r in batch)

    recorder = Recorder(serving, is_poison)
    serving.failures.clear()
    serving.count_records(records, recorder)
    # Bisection isolated each poison record; each was retried MaximumRetryAttempts times in all
    # and then given up on: the on-failure record names it (shard, first and last sequence number).
    gave_up = [
        (f["DDBStreamBatchInfo"]["startSequenceNumber"], f["DDBStreamBatchInfo"]["endSequenceNumber"])
        for f in serving.failures
    ]
    assert gave_up == [(s, s) for s in poison]
    assert all(f["requestContext"]["condition"] == "RetryAttemptsExhausted" for f in serving.failures)
    for failure in serving.failures:
        send_to_destination(lambda name: boto3.client(name), m.on_failure, failure)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert (
        len(messages) == len(poison)
        and json.loads(messages[0]["Body"])["DDBStreamBatchInfo"]["batchSize"] == 1
    )
    healthy = {u: t for u, t in users.items() if u != "poison"}
    _assert_counted(_all_slices(serving), _expected(healthy))

    report = serving.aggregator.lambda_handler({"reconcile": {"experiment_id": "recs-ab"}}, Context())
    assert report["caught_up"] == 1 and report["users"] == len(users) and report["exact"] is True, report
    _assert_counted(_all_slices(serving), _expected(users))
    again = serving.aggregator.lambda_handler({"reconcile": {}}, Context())
    assert again["caught_up"] == 0 and again["exact"] is True


def test_concurrent_events_of_distinct_users_never_conflict(serving):
    """The request path shares no written item between users: 16 clients at once, no
    TransactionConflict on any table; the counters still come out exact."""
    serving.put_experiment(variants={"A": {"weight": 1}, "B": {"weight": 1}})
    users, expected = [f"c{i:02d}" for i in range(48)], {}
    variants = {u: serving.request("POST", "/recommendations", {"user_id": u})[2]["variant"] for u in users}
    before = sum(moto_dynamodb.CONFLICTS.values())
    lock = threading.Lock()

    def post(u):
        events = [{"user_id": u, "item_id": str(k), "event_type": TYPES[k % 3]} for k in range(4)]
        status, _, body = serving.request("POST", "/events", {"events": events})
        assert status == 200 and body["accepted"] == 4, body
        with lock:
            expected[u] = defaultdict(float, variant=variants[u], requests=1, click=2, purchase=1, view=1)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(post, users))
    assert sum(moto_dynamodb.CONFLICTS.values()) == before
    _assert_counted(_all_slices(serving), _expected(expected))
