"""POST /events and event_replay through the real handlers on moto: validation all-or-nothing,
exactly-once counting (checked against an independent count), dedup, attribution, impressions,
forwarding failures kept pending and replayed."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest

from tests.support import LambdaContext
from tests.unit.abtest_helpers import variant_counters

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.plugins.serving"]  # the `serving` fixture
TYPES = ["click", "purchase", "view"]


def _expose(serving, user_id: str) -> dict:
    status, _, body = serving.request("POST", "/recommendations", {"user_id": user_id, "num_results": 3})
    assert status == 200
    return body


def _expected(per_user: dict[str, dict[str, float]], users_by_variant: dict[str, list[str]]) -> dict:
    """The metric counters, computed from raw per-user totals (not by the code under test)."""
    variant_of = {u: v for v, users in users_by_variant.items() for u in users}
    totals = {u: per_user.get(u, {}) for u in variant_of}
    counters = variant_counters(totals, variant_of, sorted([*TYPES, "value"]))
    return {
        v: {k: x for k, x in c.items() if k not in ("exposed", "requests", "fallbacks")}
        for v, c in counters.items()
    }


def _counters(serving, variant):
    agg = serving.aggregates().get(f"{variant}#ALL", {})
    return {k: v for k, v in agg.items() if k not in ("exposed", "requests", "fallbacks")}


def test_events_are_stored_attributed_counted_and_kept_pending_when_forwarding_fails(serving):
    serving.put_experiment(
        variants={"A": {"weight": 1}, "B": {"weight": 1}},
        fallback_item_ids=["i1", "i2", "i3"],
        event_tracker={
            "arn": "arn:aws:personalize:us-east-1:123456789012:event-tracker/t",
            "tracking_id": "track-1",
        },
    )
    rec = _expose(serving, "u1")
    events = [
        {
            "user_id": "u1",
            "item_id": "i2",
            "event_type": "view",
            "recommendation_id": rec["recommendation_id"],
        },
        {
            "user_id": "u1",
            "item_id": "i2",
            "event_type": "click",
            "recommendation_id": rec["recommendation_id"],
        },
        {"user_id": "u1", "item_id": "i2", "event_type": "purchase", "value": 12.5, "event_id": "buy-1"},
    ]
    status, _, body = serving.request("POST", "/events", {"events": events})
    assert status == 200, body
    assert body["accepted"] == 3 and body["duplicates"] == 0 and body["forward_pending"] == 3
    stored = serving.table("EventsTable").get_item(Key={"event_id": body["event_ids"][1]})["Item"]
    assert stored["variant"] == rec["variant"] and stored["counted"] is True
    assert stored["impression"] == ["i1", "i2", "i3"] and stored["forward_pending"] == "1"
    assert int(stored["expires_at"]) > time.time() + 80 * 86400  # EVENT_TTL_DAYS
    per_user = {"u1": {"view": 1, "click": 1, "purchase": 1, "value": 12.5}}
    assert _counters(serving, rec["variant"]) == _expected(per_user, {rec["variant"]: ["u1"]})[rec["variant"]]
    totals = serving.table("AssignmentsTable").get_item(Key={"user_id": "u1", "experiment_id": "recs-ab"})[
        "Item"
    ]
    assert float(totals["m_value"]) == 12.5 and int(totals["m_click"]) == 1
    # the same event id again (a client retry) is not counted twice
    status, _, body = serving.request("POST", "/events", events[2])
    assert (
        status == 200
        and body["accepted"] == 0
        and body["duplicates"] == 1
        and body["duplicate_ids"] == ["buy-1"]
    )
    assert _counters(serving, rec["variant"]) == _expected(per_user, {rec["variant"]: ["u1"]})[rec["variant"]]


def test_events_of_unexposed_users_and_bots_are_stored_not_counted(serving):
    status, _, body = serving.request(
        "POST", "/events", {"user_id": "never-seen", "item_id": "x", "event_type": "click"}
    )
    assert status == 200 and body["accepted"] == 1
    item = serving.table("EventsTable").get_item(Key={"event_id": body["event_ids"][0]})["Item"]
    assert item["counted"] is False and "variant" not in item
    _expose(serving, "human")
    bot = {"user-agent": "Mozilla/5.0 (compatible; bingbot/2.0)"}
    status, _, body = serving.request(
        "POST", "/events", {"user_id": "human", "item_id": "x", "event_type": "click"}, headers=bot
    )
    item = serving.table("EventsTable").get_item(Key={"event_id": body["event_ids"][0]})["Item"]
    assert (
        status == 200 and item["bot"] is True and "forward_pending" not in item and item["counted"] is False
    )
    assert all("events_click" not in v for v in serving.aggregates().values())


def test_one_bad_event_rejects_the_whole_batch(serving):
    _expose(serving, "u")
    batch = {
        "events": [
            {"user_id": "u", "item_id": "a", "event_type": "click"},
            {"user_id": "u", "item_id": "b", "event_type": "like", "value": "1"},
            {"item_id": "c", "event_type": "view"},
        ]
    }
    status, _, body = serving.request("POST", "/events", batch)
    assert status == 400 and body["error"]["code"] == "validation_error"
    fields = {d["field"] for d in body["error"]["details"]}
    assert fields == {"events[1].event_type", "events[1].value", "events[2].user_id"}
    assert (
        serving.table("EventsTable").scan(
            FilterExpression="attribute_exists(user_id) AND attribute_not_exists(item_ids)"
        )["Count"]
        == 0
    )


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{", 400, "invalid_json"),
        (b"", 400, "missing_body"),
        (b'"click"', 400, "validation_error"),
        (
            b'{"events": [' + b'{"user_id":"u","item_id":"i","event_type":"view"},' * 6000 + b"{}]}",
            413,
            "body_too_large",
        ),
    ],
    ids=["truncated", "empty", "string", "oversize"],
)
def test_malformed_bodies(serving, raw, status, code):
    got, _, body = serving.request("POST", "/events", raw=raw)
    assert (got, body["error"]["code"]) == (status, code)


def test_duplicate_ids_in_one_request_count_once(serving):
    rec = _expose(serving, "d")
    e = {"user_id": "d", "item_id": "i", "event_type": "click", "event_id": "same"}
    status, _, body = serving.request("POST", "/events", {"events": [e, e, e]})
    assert status == 200 and body["accepted"] == 1 and body["duplicates"] == 2
    assert serving.aggregates()[f"{rec['variant']}#ALL"]["events_click"] == 1


def test_replay_forwards_pending_events_once_personalize_answers(serving, monkeypatch):
    serving.put_experiment(
        variants={"A": {"weight": 1}},
        event_tracker={
            "arn": "arn:aws:personalize:us-east-1:123456789012:event-tracker/t",
            "tracking_id": "track-1",
        },
    )
    _expose(serving, "r")
    status, _, body = serving.request(
        "POST",
        "/events",
        {"events": [{"user_id": "r", "item_id": str(i), "event_type": "view"} for i in range(12)]},
    )
    assert status == 200 and body["forward_pending"] == 12
    replay = serving.apps["event_replay"]
    from recsys_common import personalize

    calls = []

    def put_events(**kwargs):  # Personalize is back: capture what would reach the wire
        calls.append(kwargs)

    client = personalize.events_client()
    monkeypatch.setattr(client, "put_events", put_events)
    result = replay.replay(min_age=0)
    assert result == {"sent": 12, "failed": 0, "rejected": 0}
    assert [len(c["eventList"]) for c in calls] == [10, 2]  # ≤10 per PutEvents call
    assert all(c["trackingId"] == "track-1" and c["sessionId"] == "r" for c in calls)
    pending = serving.table("EventsTable").scan(FilterExpression="attribute_exists(forward_pending)")["Count"]
    assert pending == 0
    assert replay.replay(min_age=0) == {"sent": 0, "failed": 0, "rejected": 0}


def test_thousands_of_parallel_events_none_lost_none_double_counted(serving):
    """2400 events from 16 threads, with retries of already-sent batches mixed in: the aggregates
    must equal an independent count of the distinct events."""
    serving.put_experiment(variants={"A": {"weight": 1}, "B": {"weight": 1}})
    users = [f"p{i}" for i in range(40)]
    variant = {u: _expose(serving, u)["variant"] for u in users}
    rng = random.Random(3)
    batches = []
    for b in range(240):
        user = rng.choice(users)
        batches.append(
            [
                {
                    "user_id": user,
                    "item_id": str(rng.randrange(50)),
                    "event_type": rng.choice(TYPES),
                    "event_id": f"e{b}-{k}",
                    **({"value": round(rng.uniform(1, 20), 2)} if k % 3 == 0 else {}),
                }
                for k in range(10)
            ]
        )
    retries = [batches[i] for i in rng.sample(range(len(batches)), 40)]  # a client re-sending
    lock, accepted, duplicates = threading.Lock(), [0], [0]

    def send(events):
        status, _, body = serving.request("POST", "/events", {"events": events})
        assert status == 200, body
        with lock:
            accepted[0] += body["accepted"]
            duplicates[0] += body["duplicates"]

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, batches + retries))
    assert accepted[0] == 2400 and duplicates[0] == 400
    per_user: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for events in batches:
        for e in events:
            per_user[e["user_id"]][e["event_type"]] += 1
            per_user[e["user_id"]]["value"] += e.get("value", 0.0)
    by_variant = defaultdict(list)
    for u, v in variant.items():
        by_variant[v].append(u)
    expected = _expected(per_user, by_variant)
    for v in by_variant:
        got = _counters(serving, v)
        assert got.keys() == expected[v].keys()
        for k in got:
            assert got[k] == pytest.approx(expected[v][k], rel=1e-9), k
    assert (
        serving.table("EventsTable").scan(Select="COUNT", FilterExpression="attribute_exists(item_id)")[
            "Count"
        ]
        == 2400
    )


def test_a_concurrent_change_to_any_metric_of_the_user_is_not_lost(serving, monkeypatch):
    """A click batch reads the user's totals; before it commits, a purchase of the same user
    commits. The click's cross products (sumxy_click__purchase) depend on the purchase total it
    read, so its write must be cancelled and recomputed, although it does not change purchases."""
    rec = _expose(serving, "x")
    from recsys_common import assignments_store

    resolve, interleaved = assignments_store.resolve_many, threading.Event()

    def resolve_then_let_another_request_commit(*args, **kwargs):
        a = resolve(*args, **kwargs)
        if not interleaved.is_set():
            interleaved.set()
            purchase = {"user_id": "x", "item_id": "p", "event_type": "purchase", "value": 5}
            other = threading.Thread(target=serving.request, args=("POST", "/events", purchase))
            other.start()  # its own thread: its own Lambda sandbox
            other.join()
        return a

    monkeypatch.setattr(assignments_store, "resolve_many", resolve_then_let_another_request_commit)
    status, _, body = serving.request(
        "POST", "/events", {"user_id": "x", "item_id": "c", "event_type": "click"}
    )
    assert status == 200 and body["accepted"] == 1 and interleaved.is_set()
    per_user = {"x": {"click": 1, "purchase": 1, "value": 5}}
    v = rec["variant"]
    assert _counters(serving, v) == _expected(per_user, {v: ["x"]})[v]


def test_a_commit_whose_answer_is_lost_is_not_reported_as_duplicates(serving, monkeypatch):
    """DynamoDB commits, the answer never arrives (read timeout after botocore's own retries): the
    handler resends the same transaction with the same ClientRequestToken, which DynamoDB answers
    with the first commit's success; the events count as accepted, once."""
    from botocore.exceptions import ReadTimeoutError
    from recsys_common import ddb

    rec = _expose(serving, "lost")
    client, lost = ddb.client(), []
    transact = client.transact_write_items

    def commit_then_lose_the_answer(**kwargs):
        result = transact(**kwargs)
        if not lost:
            lost.append(kwargs.get("ClientRequestToken"))
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        return result

    monkeypatch.setattr(client, "transact_write_items", commit_then_lose_the_answer)
    events = [
        {"user_id": "lost", "item_id": str(i), "event_type": "click", "event_id": f"l{i}"} for i in range(3)
    ]
    status, _, body = serving.request("POST", "/events", {"events": events})
    assert status == 200 and lost
    assert (body["accepted"], body["duplicates"]) == (3, 0), body
    v = rec["variant"]
    assert _counters(serving, v) == _expected({"lost": {"click": 3}}, {v: ["lost"]})[v]


def test_assignments_a_throttled_batch_read_leaves_unprocessed_are_read_one_by_one(serving, monkeypatch):
    """BatchGetItem may return keys as UnprocessedKeys (throttling); a user whose assignment was not
    read must not pass for one without an assignment (their events would go uncounted)."""
    from recsys_common import ddb

    recs = {u: _expose(serving, u) for u in ("slow-a", "slow-b")}
    variants = Counter(rec["variant"] for rec in recs.values())
    before = {v: _counters(serving, v).get("events_click", 0) for v in variants}
    client = ddb.client()
    batch_get = client.batch_get_item

    def leave_assignments_unprocessed(**kwargs):
        request = kwargs["RequestItems"]
        if any("ssignment" in name for name in request):
            return {"Responses": {}, "UnprocessedKeys": request}
        return batch_get(**kwargs)

    monkeypatch.setattr(client, "batch_get_item", leave_assignments_unprocessed)
    events = [{"user_id": u, "item_id": "i", "event_type": "click"} for u in recs]
    status, _, body = serving.request("POST", "/events", {"events": events})
    assert status == 200 and body["accepted"] == 2, body
    for v, n in variants.items():
        assert _counters(serving, v).get("events_click", 0) == before[v] + n, v


def test_an_event_personalize_refuses_does_not_block_the_replay_queue(serving, monkeypatch):
    """PutEvents refuses a whole call for one bad event (InvalidInputException). The call is split,
    the good events go through, the refused one is kept with its reason and leaves the queue;
    while Personalize is unreachable everything stays pending."""
    from botocore.exceptions import ClientError, EndpointConnectionError
    from recsys_common import personalize

    serving.put_experiment(
        variants={"A": {"weight": 1}},
        event_tracker={
            "arn": "arn:aws:personalize:us-east-1:123456789012:event-tracker/t",
            "tracking_id": "t",
        },
    )
    _expose(serving, "q")
    items = ["poison" if i == 3 else str(i) for i in range(12)]
    events = [
        {"user_id": "q", "item_id": item, "event_type": "view", "event_id": f"q{i}"}
        for i, item in enumerate(items)
    ]
    assert serving.request("POST", "/events", {"events": events})[2]["forward_pending"] == 12
    client, calls = personalize.events_client(), []

    def unreachable(**kwargs):
        raise EndpointConnectionError(endpoint_url="http://personalize-events")

    monkeypatch.setattr(client, "put_events", unreachable)
    replay = serving.apps["event_replay"].replay
    assert replay(min_age=0) == {"sent": 0, "failed": 12, "rejected": 0}

    def refuses_poison(**kwargs):
        calls.append([e["itemId"] for e in kwargs["eventList"]])
        if any(e["itemId"] == "poison" for e in kwargs["eventList"]):
            raise ClientError(
                {"Error": {"Code": "InvalidInputException", "Message": "bad item"}}, "PutEvents"
            )

    monkeypatch.setattr(client, "put_events", refuses_poison)
    assert replay(min_age=0) == {"sent": 11, "failed": 0, "rejected": 1}
    table = serving.table("EventsTable")
    poison = table.get_item(Key={"event_id": "q3"})["Item"]
    assert poison["forward_error"] == "bad item" and "forward_pending" not in poison
    assert table.scan(FilterExpression="attribute_exists(forward_pending)")["Count"] == 0
    assert replay(min_age=0) == {"sent": 0, "failed": 0, "rejected": 0}


def _published(capsys, name: str) -> list[tuple[float, str]]:
    """(value, unit) of each EMF datapoint of `name` printed since the last call (powertools' output)."""
    out = []
    for line in capsys.readouterr().out.splitlines():
        if '"_aws"' not in line:
            continue
        record = json.loads(line)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                if metric["Name"] == name:
                    values = record[name] if isinstance(record[name], list) else [record[name]]
                    out += [(float(v), metric["Unit"]) for v in values]
    return out


def test_replay_publishes_the_age_of_the_oldest_pending_event(serving, monkeypatch, capsys):
    """OldestPendingEventAgeSeconds (EventsPendingAlarm's metric): the age of the oldest event still
    waiting for PutEvents after a replay run; 0 once everything went through."""
    from recsys_common import personalize

    serving.put_experiment(
        variants={"A": {"weight": 1}},
        event_tracker={
            "arn": "arn:aws:personalize:us-east-1:123456789012:event-tracker/t",
            "tracking_id": "t",
        },
    )
    _expose(serving, "p")
    events = [
        {"user_id": "p", "item_id": str(i), "event_type": "view", "event_id": f"p{i}"} for i in range(3)
    ]
    assert serving.request("POST", "/events", {"events": events})[2]["forward_pending"] == 3
    replay = serving.apps["event_replay"]
    items = serving.table("EventsTable").scan()["Items"]
    oldest = min(i["received_at"] for i in items if "forward_pending" in i)
    two_hours_later = datetime.fromisoformat(oldest) + timedelta(hours=2)
    assert replay.oldest_pending_age_seconds(two_hours_later) == 7200.0

    capsys.readouterr()
    result = replay.lambda_handler({"min_age_seconds": 0}, LambdaContext(60))
    assert result["failed"] == 3  # Personalize unreachable: all three stay pending
    ((age, unit),) = _published(capsys, "OldestPendingEventAgeSeconds")
    assert (
        unit == "Seconds"
        and 0 < age < 60
        and result["oldest_pending_seconds"] == pytest.approx(age, abs=1e-3)
    )

    monkeypatch.setattr(personalize.events_client(), "put_events", lambda **kwargs: None)
    result = replay.lambda_handler({"min_age_seconds": 0}, LambdaContext(60))
    assert result["sent"] == 3
    assert _published(capsys, "OldestPendingEventAgeSeconds") == [(0.0, "Seconds")]
    assert replay.oldest_pending_age_seconds(two_hours_later) == 0.0


def test_replay_publishes_no_age_before_an_event_tracker_exists(serving, capsys):
    """Before the first training there is nothing to forward to: pending events are expected then."""
    serving.put_experiment(variants={"A": {"weight": 1}})
    _expose(serving, "n")
    assert (
        serving.request("POST", "/events", {"user_id": "n", "item_id": "1", "event_type": "view"})[0] == 200
    )
    capsys.readouterr()
    assert "skipped" in serving.apps["event_replay"].lambda_handler({}, LambdaContext(60))
    assert _published(capsys, "OldestPendingEventAgeSeconds") == []
