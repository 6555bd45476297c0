"""The local stack under a burst (issue 11): bounded threads and descriptors, Lambda's
concurrency limit answered as API Gateway answers it, nothing accepted lost after a kill -9,
and SIGTERM stopping within seconds mid-burst.

The stack runs with a Lambda concurrency of 4 (LOCAL_LAMBDA_CONCURRENCY), so that 32 clients
are certain to go past it: those invocations are throttled, and the HTTP API answers 500
{"message":"Internal Server Error"} as it does for a throttled Lambda. Any other 5xx is a defect.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import RunningStack, start_stack

pytestmark = pytest.mark.e2e
CONCURRENCY = {"LOCAL_LAMBDA_CONCURRENCY": "4"}
CLIENTS = 32


def _post(api_url: str, payload: dict) -> tuple[int, dict]:
    """One request on its own connection, as the issue's clients sent them."""
    parts = urlsplit(api_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", "/events", json.dumps(payload), {"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    except (OSError, http.client.HTTPException):
        return 0, {}  # the stack went away mid-request (the kill tests)
    finally:
        conn.close()


class Burst:
    """Event requests from CLIENTS threads until `stop()` or `total` requests; records answers."""

    def __init__(self, api_url: str, total: int = 10**6):
        self.api_url, self.prefix = api_url, f"load-{uuid.uuid4().hex[:8]}"
        self.statuses: Counter = Counter()
        self.accepted: set[str] = set()
        self._numbers = iter(range(total))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(CLIENTS)
        self._futures = [self._pool.submit(self._client) for _ in range(CLIENTS)]

    def _client(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                n = next(self._numbers, None)
            if n is None:
                return
            event_id = f"{self.prefix}-{n % 900}"  # every 10th request repeats an earlier id
            status, answer = _post(
                self.api_url,
                {"user_id": f"{self.prefix}-u{n % 97}", "item_id": str(n % 50), "event_type": "view",
                 "event_id": event_id},
            )  # fmt: skip
            with self._lock:
                self.statuses[status] += 1
                if 200 <= status < 300:
                    self.accepted.update(answer["event_ids"])

    def wait(self) -> Burst:
        for future in self._futures:
            future.result()
        self._pool.shutdown()
        return self

    def stop(self) -> Burst:
        self._stop.set()
        return self.wait()


def _resources(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def _stored(stack: RunningStack, prefix: str) -> set[str]:
    ids: set[str] = set()
    pages = (
        stack.client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=stack.outputs["EventsTableName"],
            FilterExpression="begins_with(event_id, :p)",
            ExpressionAttributeValues={":p": {"S": prefix}},
            ProjectionExpression="event_id",
        )
    )
    for page in pages:
        ids.update(item["event_id"]["S"] for item in page["Items"])
    return ids


def _throttle_lines(stack: RunningStack) -> Counter:
    lines = (stack.state_dir / "logs" / "http-api-access.log").read_text().splitlines()
    return Counter(json.loads(line)["integrationError"] for line in lines if '"status":"500"' in line)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("load") / "state"


@pytest.fixture(scope="module")
def stack(state_dir):
    with start_stack(state_dir, env=CONCURRENCY) as running:
        yield running


def test_a_burst_keeps_threads_and_descriptors_bounded_and_stores_what_it_accepted(stack):
    pid = stack.process.pid
    for n in range(3):  # one warm worker, as after the start's prewarm, and nothing more
        _post(
            stack.api_url, {"user_id": "warm", "item_id": "1", "event_type": "view", "event_id": f"warm-{n}"}
        )
    time.sleep(1)
    idle_threads, idle_fds = _resources(pid)
    burst = Burst(stack.api_url, total=240)
    peak_threads, peak_fds = idle_threads, idle_fds
    while not all(f.done() for f in burst._futures):
        threads, fds = _resources(pid)
        peak_threads, peak_fds = max(peak_threads, threads), max(peak_fds, fds)
        time.sleep(0.1)
    burst.wait()
    # 5xx only as declared throttles: a throttled Lambda is the HTTP API's 500, nothing else
    assert set(burst.statuses) <= {200, 500}, burst.statuses
    assert burst.statuses[500] > 0, "32 clients against a concurrency of 4 must be throttled"
    assert set(_throttle_lines(stack)) == {"Lambda throttled: ConcurrentInvocationLimitExceeded"}
    # fixed thread pools: no thread per connection; descriptors bounded by the pools, not by clients
    assert peak_threads <= idle_threads + 8, (idle_threads, peak_threads)
    assert peak_fds <= idle_fds + 2 * CLIENTS + 40, (idle_fds, peak_fds)
    deadline = time.monotonic() + 10
    while _resources(pid) > (idle_threads, idle_fds) and time.monotonic() < deadline:
        time.sleep(0.25)
    threads, fds = _resources(pid)
    assert threads <= idle_threads and fds <= idle_fds, ((idle_threads, idle_fds), (threads, fds))
    assert _stored(stack, burst.prefix) == burst.accepted  # nothing lost, nothing unanswered


def test_kill_9_mid_burst_loses_nothing_the_api_accepted(stack, state_dir):
    burst = Burst(stack.api_url)
    time.sleep(3)
    os.kill(stack.process.pid, signal.SIGKILL)
    burst.stop()
    stack.process.wait()
    assert burst.accepted, burst.statuses
    (state_dir / "stack.pid").unlink(missing_ok=True)
    with start_stack(state_dir, env=CONCURRENCY) as restarted:
        assert _stored(restarted, burst.prefix) >= burst.accepted

        # and a SIGTERM mid-burst stops the restarted stack within seconds
        burst = Burst(restarted.api_url)
        time.sleep(2)
        began = time.monotonic()
        restarted.process.send_signal(signal.SIGTERM)
        restarted.process.wait(30)
        stopped_in = time.monotonic() - began
        burst.stop()
        assert stopped_in < 5, stopped_in
