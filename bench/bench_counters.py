"""Experiment counters at load (issue 16): the request path against hot aggregate items.

On a local stack started in this process (so that the TransactionConflict count of
local/moto_patches/dynamodb.py can be read), with DynamoDB's transaction conflicts emulated:
(a) Request transactions, 32 threads straight to DynamoDB, distinct users: today's per-user
    transaction (events + the user's totals) against the old design's (the same plus ADDs to the
    variant's '#ALL' and day items, shared by every user). Transactions/s and TransactionConflict
    cancellations (each retried as the events handler does).
(b) Through the HTTP API: 32 clients POST /events for distinct, already exposed users. Events/s,
    conflicts, and the aggregation lag of each accepted request (accepted -> the user's watermark
    covers it, polled every 100 ms), p50/p99.
(c) Exactness: the results' counters (every shard summed) against a recomputation from the raw
    events and assignments tables.
Figures are ratios and counts; this machine's speed only scales them.
"""

from __future__ import annotations

import io
import random
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import boto3
from boto3.dynamodb.types import TypeDeserializer

from tests.unit.abtest_helpers import variant_counters

CLIENTS = 32
USERS_PER_CLIENT = 4
POSTS_PER_USER = 2
DIRECT_TRANSACTIONS = 800
TYPES = ["click", "purchase", "view"]
_DESER = TypeDeserializer()


def _plain(item: dict) -> dict:
    return {k: _DESER.deserialize(v) for k, v in item.items()}


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


# --- (a) request transactions straight to DynamoDB -------------------------------------------------


def _direct(stack, hot: bool) -> tuple[float, int, int]:
    """(transactions/s, conflicts, transactions given up) for DIRECT_TRANSACTIONS from 32 threads
    of a child process (the clients must not compete with the stack for this process's GIL)."""
    from local.moto_patches import dynamodb as moto_ddb

    tables = {t: stack.template.resources[t].physical_name for t in ("EventsTable", "AssignmentsTable", "AggregatesTable")}  # fmt: skip
    before = sum(moto_ddb.CONFLICTS.values())
    with _child() as child:
        elapsed, given_up = child.submit(
            _direct_load, stack.endpoints["AWS_ENDPOINT_URL_DYNAMODB"], tables, hot
        ).result()
    return (DIRECT_TRANSACTIONS - given_up) / elapsed, sum(moto_ddb.CONFLICTS.values()) - before, given_up


def _child():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))


def _direct_load(endpoint: str, tables: dict[str, str], hot: bool) -> tuple[float, int]:
    experiment = f"bench-{'hot' if hot else 'per-user'}-{random.randrange(10**6)}"
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    local, given_up = threading.local(), []

    def client():
        if not hasattr(local, "ddb"):
            local.ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                                     aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        return local.ddb

    def transact(i: int) -> None:
        ddb = client()
        user, variant = f"{experiment}-u{i}", "ABC"[i % 3]
        ops = [
            {"Put": {"TableName": tables["EventsTable"], "Item": {"event_id": {"S": f"{user}-e"}, "user_id": {"S": user}},
                     "ConditionExpression": "attribute_not_exists(event_id)"}},
            {"Update": {"TableName": tables["AssignmentsTable"],
                        "Key": {"user_id": {"S": user}, "experiment_id": {"S": experiment}},
                        "UpdateExpression": "ADD m_click :one, rev :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}},
        ]  # fmt: skip
        if hot:  # the old request path: the same two items per variant in every transaction
            for key in (f"{variant}#ALL", f"{variant}#{day}"):
                ops.append({"Update": {"TableName": tables["AggregatesTable"],
                                       "Key": {"experiment_id": {"S": experiment}, "slice": {"S": key}},
                                       "UpdateExpression": "ADD events_click :one, sum_click :one",
                                       "ExpressionAttributeValues": {":one": {"N": "1"}}}})  # fmt: skip
        for attempt in range(12):  # the events handler's retry policy
            try:
                ddb.transact_write_items(TransactItems=ops)
                return
            except ddb.exceptions.TransactionCanceledException:
                time.sleep(min(0.5, 0.005 * 2**attempt) * random.random())
        given_up.append(i)

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(transact, range(DIRECT_TRANSACTIONS)))
    return time.perf_counter() - start, len(given_up)


# --- (b) through the HTTP API, with the aggregation lag ------------------------------------------


class WatermarkWatch:
    """Polls the users' watermarks; remembers when each (user, rev) was first seen counted."""

    def __init__(self, stack, experiment: str, users: list[str]):
        self.ddb, self.users, self.experiment = stack.client("dynamodb"), users, experiment
        self.table = stack.template.resources["AggregatesTable"].physical_name
        self.seen: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WatermarkWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            now = time.time()
            for start in range(0, len(self.users), 100):
                keys = [{"experiment_id": {"S": f"wm#{u}"}, "slice": {"S": self.experiment}}
                        for u in self.users[start : start + 100]]  # fmt: skip
                resp = self.ddb.batch_get_item(RequestItems={self.table: {"Keys": keys}})
                for raw in resp["Responses"].get(self.table, []):
                    item = _plain(raw)
                    user, rev = item["experiment_id"][3:], int(item["rev"])
                    for r in range(1, rev + 1):
                        self.seen.setdefault((user, r), now)


def _through_api(stack) -> dict:
    from local.moto_patches import dynamodb as moto_ddb

    users = [
        f"bench-{random.randrange(10**6)}-{c}-{u}" for c in range(CLIENTS) for u in range(USERS_PER_CLIENT)
    ]
    before = Counter(moto_ddb.CONFLICTS)
    with _child() as child:
        child.submit(_expose, stack.api_url, users).result()
        with WatermarkWatch(stack, stack.template.resolve({"Ref": "ExperimentId"}), users) as watch:
            elapsed, accepted, retried = child.submit(_post_events, stack.api_url, users).result()
            deadline = time.time() + 60
            while time.time() < deadline and not all((u, r) in watch.seen for u, r, _ in accepted):
                time.sleep(0.2)
    lags = [watch.seen[(u, r)] - t for u, r, t in accepted if (u, r) in watch.seen]
    return {
        "events_per_s": 2 * len(accepted) / elapsed,
        "posts_per_s": len(accepted) / elapsed,
        "conflicts": sum((Counter(moto_ddb.CONFLICTS) - before).values()),
        "retried": retried,
        "lags": lags,
        "uncounted": len(accepted) - len(lags),
    }


def _session(url: str):
    import requests

    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=CLIENTS))
    return session


def _post(session, url: str, body: dict):
    """The response, or None when the connection broke (retried like a 5xx)."""
    import requests

    try:
        return session.post(url, json=body, timeout=300)
    except requests.ConnectionError:
        return None


def _expose(url: str, users: list[str]) -> None:
    session = _session(url)

    def expose(u: str) -> None:  # everyone exposed first (rev 1); a 5xx is retried
        for attempt in range(8):
            resp = _post(session, f"{url}/recommendations", {"user_id": u, "num_results": 1})
            if resp is not None and resp.status_code == 200 and resp.json()["in_experiment"]:
                return
            time.sleep(0.1 * 2**attempt)
        raise RuntimeError(f"user {u} could not be exposed")

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(expose, users))


def _post_events(url: str, users: list[str]) -> tuple[float, list[tuple[str, int, float]], int]:
    """(seconds, [(user, rev the request made, accepted at: epoch)], 5xx answers retried)."""
    session, lock = _session(url), threading.Lock()
    accepted: list[tuple[str, int, float]] = []
    retried = [0]

    def client(c: int) -> None:
        rng = random.Random(c)
        for k in range(POSTS_PER_USER):
            for u in users[c * USERS_PER_CLIENT : (c + 1) * USERS_PER_CLIENT]:
                events = [{"user_id": u, "item_id": str(rng.randrange(50)), "event_type": rng.choice(TYPES),
                           "event_id": f"{u}-{k}-{j}", **({"value": round(rng.uniform(1, 30), 2)} if rng.random() < 0.3 else {})}
                          for j in range(2)]  # fmt: skip
                for attempt in range(8):  # a 5xx (storage busy, Lambda timed out): retry, same event ids
                    resp = _post(session, f"{url}/events", {"events": events})
                    if resp is not None and resp.status_code < 500:
                        break
                    with lock:
                        retried[0] += 1
                    time.sleep(0.1 * 2**attempt)
                assert resp is not None and resp.status_code == 200, resp and resp.text
                with lock:
                    accepted.append((u, 2 + k, time.time()))

    start = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    return time.perf_counter() - start, accepted, retried[0]


# --- (c) exactness --------------------------------------------------------------------------------


def _scan(stack, logical_id: str) -> list[dict]:
    ddb = stack.client("dynamodb")
    name = stack.template.resources[logical_id].physical_name
    return [_plain(i) for page in ddb.get_paginator("scan").paginate(TableName=name, ConsistentRead=True) for i in page["Items"]]  # fmt: skip


def _exactness(stack, experiment: str) -> tuple[bool, int, int]:
    """(exact, counters compared, counters that differ): summed shards vs a recomputation from
    the raw events (per user and type, values) and the assignments (exposed, requests)."""
    totals: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    variant_of = {}
    for a in _scan(stack, "AssignmentsTable"):
        if a["experiment_id"] == experiment and a.get("exposed_at"):
            variant_of[a["user_id"]] = a["variant"]
            totals[a["user_id"]]["requests"] = float(a.get("n_requests", 0))
            totals[a["user_id"]]["fallbacks"] = float(a.get("n_fallbacks", 0))
    for e in _scan(stack, "EventsTable"):
        if e.get("counted") and e.get("experiment_id") == experiment and e["user_id"] in variant_of:
            totals[e["user_id"]][e["event_type"]] += 1
            totals[e["user_id"]]["value"] += float(e.get("value", 0))
    expected = variant_counters(totals, variant_of, sorted([*TYPES, "value"]))
    got: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for item in _scan(stack, "AggregatesTable"):
        parts = item["slice"].split("#")
        if item["experiment_id"] == experiment and len(parts) == 3 and parts[1] == "ALL":
            for k, v in item.items():
                if k not in ("experiment_id", "slice"):
                    got[parts[0]][k] += float(v)
    keys = {(v, k) for v in expected for k in expected[v]} | {(v, k) for v in got for k in got[v]}
    want = {(v, k): expected.get(v, {}).get(k, 0.0) for v, k in keys}
    differ = [(v, k) for v, k in keys if abs(got[v][k] - want[v, k]) > 1e-6 * max(1, abs(want[v, k]))]
    return not differ, len(keys), len(differ)


def main() -> None:
    from local.stack import LocalStack

    with tempfile.TemporaryDirectory() as tmp:
        stack = LocalStack(Path(tmp) / "state", port=0, out=io.StringIO()).start()
        try:
            hot = _direct(stack, hot=True)
            per_user = _direct(stack, hot=False)
            print(f"request transactions, {CLIENTS} threads straight to DynamoDB (moto, conflicts emulated), "
                  f"{DIRECT_TRANSACTIONS} distinct users:")  # fmt: skip
            print(f"  per-user items only (this design)      {per_user[0]:7.1f} tx/s   TransactionConflict {per_user[1]:5d}   given up {per_user[2]}")  # fmt: skip
            print(f"  + hot '#ALL'/day items (old design)    {hot[0]:7.1f} tx/s   TransactionConflict {hot[1]:5d}   given up {hot[2]}")  # fmt: skip
            print(f"  ratio this / old: {per_user[0] / hot[0]:.1f} x")
            api = _through_api(stack)
            print(f"POST /events through the HTTP API, {CLIENTS} clients, {CLIENTS * USERS_PER_CLIENT} distinct users, "
                  f"2 events per request:")  # fmt: skip
            print(f"  {api['events_per_s']:7.1f} events/s ({api['posts_per_s']:.1f} requests/s), "
                  f"TransactionConflict {api['conflicts']}, 5xx retried by the clients {api['retried']}")  # fmt: skip
            print(f"  aggregation lag (accepted -> counted): p50 {_percentile(api['lags'], 0.5):.2f} s  "
                  f"p99 {_percentile(api['lags'], 0.99):.2f} s  max {max(api['lags']):.2f} s  "
                  f"mean {statistics.fmean(api['lags']):.2f} s; not counted within 60 s: {api['uncounted']}")  # fmt: skip
            exact, compared, differ = _exactness(stack, stack.template.resolve({"Ref": "ExperimentId"}))
            print(f"  exactness: counters == recomputation from the raw events: {exact} "
                  f"({compared} counters compared, {differ} differ)")  # fmt: skip
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
