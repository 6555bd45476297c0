"""The serving path through HTTP on a local stack of its own: assignment spread and stickiness,
GrowthBook's reference hash cases, fallbacks (no campaign; the Personalize engine killed mid-way),
events in parallel with none lost and none double counted.

The stack runs with ConfigCacheSeconds=0 (so experiment-record changes apply at once) and with the
Personalize engine as a separate process (`python -m local.personalize`), which the last test
kills and restarts. Expected variants are computed here from GrowthBook's hash v2 (not by the code
under test); spreads are checked with a chi-square test at a fixed 0.1% level.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
import requests
from scipy import stats

from tests.e2e.conftest import ROOT, start_stack, wait_counted

pytestmark = pytest.mark.e2e
CASES = json.loads((ROOT / "tests" / "unit" / "data" / "growthbook_cases.json").read_text())
ALPHA = 0.001  # chi-square level, fixed before looking at any data
TYPES = ["click", "purchase", "view"]


# --- GrowthBook hash v2 and bucket ranges, written from the SDK specification -------------------


def fnv1a32(text: str) -> int:
    h = 0x811C9DC5
    for ch in text:
        h = ((h ^ ord(ch)) * 0x01000193) & 0xFFFFFFFF
    return h


def expected_variant(seed: str, user_id: str, weights: dict[str, float]) -> str:
    bucket = (fnv1a32(str(fnv1a32(seed + user_id))) % 10000) / 10000
    names, total, start = sorted(weights), sum(weights.values()), 0.0
    for name in names:
        end = start + weights[name] / total
        if start <= bucket < end:
            return name
        start = end
    return names[-1]


def chi_square_p(counts: Counter, weights: dict[str, float]) -> float:
    names, n = sorted(weights), sum(counts.values())
    total = sum(weights.values())
    return stats.chisquare([counts[k] for k in names], [n * weights[k] / total for k in names]).pvalue


# --- the stack and its engine ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    """`python -m local.personalize` on a fixed port and data dir (so a restart finds its state)."""

    def __init__(self, port: int, data_dir: Path, env: dict[str, str], log: Path):
        self.port, self.data_dir, self.env, self.log = port, data_dir, env, log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "local.personalize",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        self.process = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            time.sleep(0.1)
        raise RuntimeError(f"engine did not listen on {self.port}: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()  # SIGKILL: no goodbye, as when a host dies
            self.process.wait(10)


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving-http")
    port = _free_port()
    os.environ["LOCAL_STACK_PERSONALIZE_URL"] = f"http://127.0.0.1:{port}"
    try:
        stack = start_stack(base / "state", "--parameter-overrides", "ConfigCacheSeconds=0")
    finally:
        del os.environ["LOCAL_STACK_PERSONALIZE_URL"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **stack.env}
    engine = Engine(port, base / "engine", env, base / "engine.log")
    engine.start()
    stack.engine = engine
    try:
        yield stack
    finally:
        engine.kill()
        stack.stop()


def post_retrying(session, url: str, body: dict):
    """POST as a client with an SDK-like retry policy: a 5xx (storage_unavailable, a Lambda timeout
    on a loaded machine) is sent again, backing off up to ~30 s in all. Safe here: assignments are
    sticky and event ids make a re-sent event a duplicate."""
    for attempt in range(6):
        resp = session.post(url, json=body, timeout=60)
        if resp.status_code < 500:
            break
        time.sleep(0.5 * 2**attempt)
    return resp


class Api:
    def __init__(self, stack):
        self.url, self.session, self.stack = stack.api_url, requests.Session(), stack
        ddb = boto3.resource(
            "dynamodb",
            endpoint_url=stack.env["AWS_ENDPOINT_URL_DYNAMODB"],
            region_name=stack.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=stack.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=stack.env["AWS_SECRET_ACCESS_KEY"],
        )
        self.experiments = ddb.Table(stack.outputs["ExperimentsTableName"])

    def recommend(self, user_id: str, n: int = 5) -> dict:
        resp = post_retrying(
            self.session, f"{self.url}/recommendations", {"user_id": user_id, "num_results": n}
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert resp.headers["X-Experiment-Variant"] == body["variant"]  # the debugging header agrees
        return body

    def experiment_route(self, path: str, timeout: float = 60) -> dict:
        """GET an experiments route: IAM-authorized, so signed with the stack's credentials."""
        url = f"{self.url}/experiments/{path}"
        resp = self.session.get(url, headers=self.stack.signed_headers("GET", url), timeout=timeout)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def variants_of(self, users: list[str], threads: int = 8) -> dict[str, str]:
        with ThreadPoolExecutor(threads) as pool:
            return dict(zip(users, (b["variant"] for b in pool.map(self.recommend, users)), strict=True))

    def put_record(self, **record) -> None:
        record = {"experiment_id": "recs-ab", "status": "RUNNING", "control": "A", "coverage": 1, **record}
        self.experiments.put_item(Item=json.loads(json.dumps(record), parse_float=Decimal))

    def delete_record(self) -> None:
        self.experiments.delete_item(Key={"experiment_id": "recs-ab"})


@pytest.fixture(scope="module")
def api(serving):
    return Api(serving)


# --- tests (in order: the record changes of one must not leak into the next) -------------------


def test_without_a_live_campaign_every_user_gets_the_flagged_fallback(api):
    body = api.recommend("fb-user", 10)
    assert body["fallback"] is True and body["fallback_reason"] == "no_campaign"
    assert body["in_experiment"] is True and body["recommendation_id"]
    resp = api.session.get(f"{api.url}/items/anything/similar", timeout=30)
    assert resp.status_code == 200 and resp.json()["fallback"] is True


def test_assignment_spread_follows_the_weights_and_growthbook_hash_v2(api):
    config = api.experiment_route("recs-ab")
    weights = {k: v["weight"] for k, v in config["variants"].items()}
    users = [f"spread-{i}" for i in range(600)]
    got = api.variants_of(users)
    mismatches = {u: v for u, v in got.items() if v != expected_variant("recs-ab", u, weights)}
    assert not mismatches, list(mismatches.items())[:5]
    counts = Counter(got.values())
    assert chi_square_p(counts, weights) > ALPHA, counts
    assert api.variants_of(users[:100]) == {u: got[u] for u in users[:100]}  # sticky on repeat


def test_parallel_events_none_lost_none_double_counted(api):
    """1000 events in batches of 10 from 16 threads, 20 batches re-sent by a retrying client: the
    results API counts exactly the distinct events, per variant and type, within the promised lag."""
    users = [f"ev-{i}" for i in range(40)]
    variant = api.variants_of(users)
    rng = random.Random(7)
    batches = [
        [
            {
                "user_id": (u := rng.choice(users)),
                "item_id": str(rng.randrange(50)),
                "event_type": rng.choice(TYPES),
                "event_id": f"ev{b}-{k}-{u}",
            }
            for k in range(10)
        ]
        for b in range(100)
    ]
    retries = [batches[i] for i in rng.sample(range(len(batches)), 20)]
    answers = []

    def send(events):
        # A client retries a 5xx with the same event ids (docs/openapi.yaml: storage_unavailable;
        # a Lambda timeout on a loaded machine); whatever the first try stored counts once.
        resp = post_retrying(api.session, f"{api.url}/events", {"events": events})
        assert resp.status_code == 200, resp.text
        answers.append(resp.json())

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(send, batches + retries))
    accepted, duplicates = sum(a["accepted"] for a in answers), sum(a["duplicates"] for a in answers)
    # 1000 distinct events, 200 re-sent; a retried request reports what its first try stored as duplicates
    assert accepted + duplicates == 1200 and accepted <= 1000 and (accepted == 1000 or duplicates > 200)
    expected = defaultdict(Counter)
    for events in batches:
        for e in events:
            expected[variant[e["user_id"]]][e["event_type"]] += 1

    def counted_exactly(results):
        for v, counts in expected.items():
            assert {t: results["variants"][v]["events"].get(t, 0) for t in TYPES} == {
                t: counts[t] for t in TYPES
            }

    # Counted off the request path (assignments stream -> aggregator): within the promised lag.
    wait_counted(lambda: api.experiment_route("recs-ab/results"), counted_exactly)


def test_reference_hash_cases_through_the_api(api):
    """GrowthBook's published hash-v2 cases: with 100 equal variants V00..V99, a user's variant is
    V<floor(100 * hash)>; each case's seed is set in the experiment record (a new phase each)."""
    cases = [c for c in CASES["hash"] if c[2] == 2 and c[3] is not None]
    assert len(cases) >= 5
    variants = {f"V{i:02d}": {"weight": 1} for i in range(100)}
    try:
        for phase, (seed, value, _, bucket) in enumerate(cases, start=10):
            api.put_record(seed=seed, phase=phase, variants=variants, control="V00")
            assert api.recommend(value)["variant"] == f"V{int(bucket * 100):02d}", (seed, value, bucket)
    finally:
        api.delete_record()


def test_stickiness_survives_a_weight_change_and_a_new_phase_reassigns(api):
    equal = {"A": 33, "B": 33, "C": 34}
    skewed = {"A": 80, "B": 10, "C": 10}
    try:
        api.put_record(phase=20, variants={k: {"weight": w} for k, w in equal.items()})
        old_users = [f"st-{i}" for i in range(200)]
        first = api.variants_of(old_users)
        assert first == {u: expected_variant("recs-ab", u, equal) for u in old_users}
        api.put_record(phase=20, variants={k: {"weight": w} for k, w in skewed.items()})
        assert api.variants_of(old_users) == first  # no silent reshuffle
        new_users = [f"st-new-{i}" for i in range(200)]
        fresh = api.variants_of(new_users)
        assert fresh == {u: expected_variant("recs-ab", u, skewed) for u in new_users}
        assert chi_square_p(Counter(fresh.values()), skewed) > ALPHA
        api.put_record(phase=21, variants={k: {"weight": w} for k, w in skewed.items()})
        moved = api.variants_of(old_users)  # a new phase reassigns on purpose
        assert moved == {u: expected_variant("recs-ab", u, skewed) for u in old_users}
        assert sum(moved[u] != first[u] for u in old_users) > 50
    finally:
        api.delete_record()


def _post_events(api, events: list[dict]) -> dict:
    resp = api.session.post(f"{api.url}/events", json={"events": events}, timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_trained_campaigns_react_to_events_in_real_time(serving, api):
    serving.upload_raw()
    described = serving.run_training({"trainingMode": "FULL"})
    assert described["status"] == "SUCCEEDED", described.get("cause")
    body = api.recommend("eng-0", 5)
    assert body["fallback"] is False and len(body["items"]) == 5
    assert all(isinstance(i["score"], float | int) and i.get("title") for i in body["items"])
    # a user of a user-personalization variant (C is popularity-count: it does not personalise)
    user, rec = next(
        (u, b) for u in (f"rt-{i}" for i in range(50)) if (b := api.recommend(u, 10))["variant"] != "C"
    )
    bought = [i["item_id"] for i in rec["items"][:3]]
    events = [{"user_id": user, "item_id": i, "event_type": "purchase", "value": 10,
               "recommendation_id": rec["recommendation_id"]} for i in bought]  # fmt: skip
    answer = _post_events(api, events)
    assert answer["forwarded"] == 3 and answer["forward_pending"] == 0  # PutEvents took them
    again = [i["item_id"] for i in api.recommend(user, 10)["items"]]
    assert not set(bought) & set(again), (bought, again)  # what the user just bought is not offered again


def test_the_engine_killed_mid_way_serves_fallbacks_keeps_events_and_replays_them(serving, api):
    stop, seen = threading.Event(), []
    killed_at: list[float] = []

    def traffic(k: int):
        session = requests.Session()
        i = 0
        while not stop.is_set():
            started = time.monotonic()
            resp = session.post(
                f"{api.url}/recommendations", json={"user_id": f"eng-{k}-{i}", "num_results": 5}, timeout=30
            )
            seen.append((started, time.monotonic(), resp.status_code, resp.json()))
            i += 1

    threads = [threading.Thread(target=traffic, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    time.sleep(2)
    killed_at.append(time.monotonic())
    serving.engine.kill()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(60)
    assert {status for _, _, status, _ in seen} == {200}  # never an error for the user
    before = [b for _, t1, _, b in seen if t1 < killed_at[0]]  # answered before the kill
    after = [b for t0, _, _, b in seen if t0 > killed_at[0] + 0.5]
    assert before and after
    assert any(not b["fallback"] for b in before)
    # before the kill only the time budget (PERSONALIZE_TIMEOUT_MS, on a loaded machine) may fall back
    assert all(not b["fallback"] or b["fallback_reason"] == "timeout" for b in before), {
        b["fallback_reason"] for b in before
    }
    assert all(b["fallback"] and b["fallback_reason"] in ("unavailable", "timeout") for b in after), {
        b["fallback_reason"] for b in after
    }
    assert all(b["items"] for b in after)  # the popularity list, not an empty answer

    # events while Personalize is down: accepted and stored, kept pending for the replay
    down = [
        {"user_id": f"eng-0-{k}", "item_id": "i0001", "event_type": "view", "event_id": f"down-{k}"}
        for k in range(12)
    ]
    answer = _post_events(api, down)
    assert (answer["accepted"], answer["forwarded"], answer["forward_pending"]) == (12, 0, 12)

    serving.engine.start()  # same port, same data: the campaigns come back
    deadline = time.monotonic() + 30
    while api.recommend("eng-back", 5)["fallback"] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert api.recommend("eng-back", 5)["fallback"] is False
    replayed = _invoke_replay(serving, {"min_age_seconds": 0})
    assert replayed["sent"] >= 12 and replayed["failed"] == 0 and replayed["rejected"] == 0, replayed
    assert _invoke_replay(serving, {"min_age_seconds": 0})["sent"] == 0  # nothing left pending


def _invoke_replay(serving, payload: dict) -> dict:
    from local.sam.lambda_runner import function_specs
    from local.stack import load_template

    name = next(
        n for n, s in function_specs(load_template(), {}).items() if s.logical_id == "EventReplayFunction"
    )
    resp = serving.client("lambda").invoke(FunctionName=name, Payload=json.dumps(payload).encode())
    body = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, body
    return body
