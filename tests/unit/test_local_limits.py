"""The local stack's AWS limits: API Gateway's token bucket, the HTTP API's answers when the
integration is throttled or late, and the Lambda runner's concurrency limit and watchdog."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from local.sam import http_api
from local.sam.lambda_runner import FunctionSpec, LambdaRunner, NoAnswerInTime, Throttled
from local.sam.throttle import RouteThrottle, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_the_rate():
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.5  # one token back at 2/s
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.now += 100  # refills up to the burst, not beyond
    assert sum(bucket.take() for _ in range(10)) == 3


def test_route_settings_override_the_stage_default():
    throttle = RouteThrottle(
        {"ThrottlingRateLimit": 1000, "ThrottlingBurstLimit": 2000},
        {"POST /events": {"ThrottlingBurstLimit": 1, "ThrottlingRateLimit": 0}},
    )
    assert [throttle.allow("POST /events") for _ in range(2)] == [True, False]
    assert all(throttle.allow("GET /health") for _ in range(100))
    assert all(RouteThrottle(None).allow("POST /events") for _ in range(100))  # no settings: no limit


class FakeRunner:
    """What HttpApi needs of the runner: specs with routes, and invoke()."""

    def __init__(self, outcome):
        self.outcome, self.calls = outcome, []
        self.specs = {
            "fn": FunctionSpec("Fn", "fn", "arn:fn", "app.handler", Path("."), [], {},
                               http_routes=[{"Path": "/events", "Method": "POST", "TimeoutInMillis": 250}])
        }  # fmt: skip

    def invoke(self, name, event, wait=None):
        self.calls.append(wait)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize(
    ("outcome", "status", "message"),
    [
        (Throttled("ConcurrentInvocationLimitExceeded"), 500, "Internal Server Error"),
        (NoAnswerInTime(), 503, "Service Unavailable"),
        ((False, {"errorType": "KeyError"}), 500, "Internal Server Error"),
        ((True, {"statusCode": 201, "body": "{}"}), 201, None),
    ],
)
def test_http_api_answers_as_api_gateway_when_the_integration_fails(outcome, status, message):
    runner = FakeRunner(outcome)
    api = http_api.HttpApi(runner)
    got, _, _, body = api.handle("POST", "/events", {}, b"{}")
    assert got == status
    if message:
        assert json.loads(body) == {"message": message}
    assert runner.calls == [0.25]  # the route's TimeoutInMillis is the integration timeout


def test_http_api_throttles_before_the_integration_and_stages_can_be_inserted():
    runner = FakeRunner((True, {"ok": 1}))
    api = http_api.HttpApi(runner, throttling={"ThrottlingBurstLimit": 2, "ThrottlingRateLimit": 0})
    statuses = [api.handle("POST", "/events", {}, b"{}")[0] for _ in range(3)]
    assert statuses == [200, 200, 429] and len(runner.calls) == 2
    assert json.loads(api.handle("POST", "/events", {}, b"{}")[3]) == {"message": "Too Many Requests"}
    # an authorization stage slots in between route and integration
    api.stages.insert(1, lambda request: (403, {}, [], b'{"message":"Forbidden"}'))
    assert api.handle("POST", "/events", {}, b"{}")[0] == 403
    assert api.handle("POST", "/nowhere", {}, b"{}")[0] == 404  # routing still comes first


def test_integration_timeout_is_capped_at_the_http_api_quota():
    runner = FakeRunner((True, {}))
    runner.specs["fn"].http_routes[0]["TimeoutInMillis"] = 90_000
    http_api.HttpApi(runner).handle("POST", "/events", {}, b"{}")
    assert runner.calls == [30.0]


HANDLER = """
import os, time
def handler(event, context):
    if event.get("hang"):
        time.sleep(60)
    time.sleep(event.get("sleep", 0))
    return {"pid": os.getpid()}
"""


@pytest.fixture
def runner(tmp_path):
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "app.py").write_text(HANDLER)
    spec = FunctionSpec("Fn", "fn", "arn:fn", "app.handler", tmp_path / "fn", [], {}, timeout=2)
    runner = LambdaRunner({"fn": spec}, tmp_path / "logs", account_concurrency=3, workers_per_function=3)
    yield runner
    runner.stop()


def test_a_wedged_worker_is_killed_and_replaced_while_others_keep_flowing(runner):
    runner.invoke("fn", {})  # one warm worker
    hung = {}
    thread = threading.Thread(target=lambda: hung.update(result=runner.invoke("fn", {"hang": True})))
    thread.start()
    time.sleep(0.3)
    replies = [runner.invoke("fn", {}) for _ in range(5)]  # served by the other workers meanwhile
    assert all(ok for ok, _ in replies)
    thread.join(10)
    assert hung["result"] == (
        False,
        {"errorMessage": "Task timed out after 2.00 seconds", "errorType": "Sandbox.Timedout"},
    )
    assert runner.concurrency() == {"fn": 0}
    assert runner.invoke("fn", {})[0]  # and the pool still serves


def test_invocations_past_the_concurrency_limit_are_throttled_at_once(runner):
    def call(_):
        try:
            return runner.invoke("fn", {"sleep": 1})[0]
        except Throttled as exc:
            return exc.reason

    with ThreadPoolExecutor(5) as pool:
        outcomes = list(pool.map(call, range(5)))
    assert outcomes.count(True) == 3
    assert outcomes.count("ConcurrentInvocationLimitExceeded") == 2
    # a queue instead of throttling would have answered all five, later


def test_a_caller_that_stops_waiting_leaves_the_function_to_the_watchdog(runner):
    runner.invoke("fn", {})  # a warm worker: the wait is the handler's, not a cold start's
    with pytest.raises(NoAnswerInTime):
        runner.invoke("fn", {"sleep": 1}, wait=0.2)
    assert runner.concurrency() == {"fn": 1}  # still running, as the Lambda would
    deadline = time.monotonic() + 5
    while runner.concurrency() != {"fn": 0} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.concurrency() == {"fn": 0}  # its late answer came back, the slot is free
