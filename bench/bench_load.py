"""The local stack under load, from a separate process (issue 11's burst and a mixed load).

`python -m bench load` starts a trained stack (campaigns live; `--no-train` skips training) in a
temporary state dir, or drives a running one (`--state-dir DIR` of a `make run`), and measures:
1. baseline: one client, keep-alive, the same request mix: latency p50/p95/p99;
2. burst (the issue's shape): 900 POST /recommendations from 8 clients with a few bad requests,
   then 2,200 POST /events (2,000 distinct ids over 300 users + 200 repeats) from 16 clients,
   every request on a new connection;
3. mixed: N clients (default 32; half new-connection, half keep-alive) for a fixed time on a mix of
   recommendations and events;
for each: throughput, latency percentiles, answers by status (429/500 are declared throttles of
the HTTP API and of Lambda), and the stack's threads / descriptors / RSS (its process and its
children: workers, engine) before, at peak and after; whether they return to their idle figures
within 10 s; events answered 2xx == events stored (counted in the events table); and, for a stack
it started, how long SIGTERM takes to stop it. Speed is compared as ratios to the baseline.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DECLARED = {429, 500}  # throttles: HTTP API route throttling, a throttled Lambda (HTTP API answers 500)


# --- the stack's resources -------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def _proc(pid: int) -> dict[str, int]:
    try:
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return {"threads": 0, "fds": 0, "rss_mb": 0}
    return {
        "threads": int(status["Threads"]),
        "fds": fds,
        "rss_mb": int(status.get("VmRSS", "0 kB").split()[0]) // 1024,
    }


def resources(pid: int) -> dict[str, int]:
    """The stack process's threads and descriptors, and the whole tree's processes and RSS."""
    own = _proc(pid)
    tree = [_proc(p) for p in _tree(pid)]
    return {
        "threads": own["threads"],
        "fds": own["fds"],
        "processes": len(tree),
        "tree_fds": sum(t["fds"] for t in tree),
        "tree_rss_mb": sum(t["rss_mb"] for t in tree),
    }


class Sampler:
    """Peak resources while a phase runs (every 0.25 s)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, resources(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            now = resources(self.pid)
            self.peak = {k: max(v, now[k]) for k, v in self.peak.items()}

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- clients -----------------------------------------------------------------------------------


class Client:
    """POSTs JSON; `keep_alive` reuses one connection, otherwise each request opens its own."""

    def __init__(self, api_url: str, keep_alive: bool):
        parts = urlsplit(api_url)
        self.host, self.port, self.keep_alive = parts.hostname, parts.port, keep_alive
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, payload: object) -> tuple[int, dict, float]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        began = time.perf_counter()
        try:
            conn = (
                self._conn
                if self._conn is not None
                else http.client.HTTPConnection(self.host, self.port, timeout=60)
            )
            conn.request("POST", path, body, {"content-type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return 0, {"error": str(exc)}, time.perf_counter() - began
        if self.keep_alive and not resp.will_close:
            self._conn = conn
        else:
            conn.close()
            self._conn = None
        try:
            answer = json.loads(data) if data else {}
        except ValueError:
            answer = {}
        return status, answer, time.perf_counter() - began

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Results:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter = Counter()
        self.accepted: set[str] = set()
        self._lock = threading.Lock()
        self.seconds = 0.0

    def add(self, status: int, answer: dict, latency: float) -> None:
        with self._lock:
            self.latencies.append(latency)
            self.statuses[status] += 1
            if 200 <= status < 300 and "event_ids" in answer:
                self.accepted.update(set(answer["event_ids"]))

    def summary(self) -> dict:
        lat = sorted(self.latencies) or [0.0]
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else lat * 99
        errors = sum(n for s, n in self.statuses.items() if (s >= 500 and s not in DECLARED) or s == 0)
        return {
            "requests": len(self.latencies),
            "rps": len(self.latencies) / self.seconds if self.seconds else 0.0,
            "p50_ms": q[49] * 1000,
            "p95_ms": q[94] * 1000,
            "p99_ms": q[98] * 1000,
            "statuses": dict(sorted(self.statuses.items())),
            "errors": errors,
        }


def _event(prefix: str, user: int, n: int) -> dict:
    return {
        "user_id": f"{prefix}-u{user}",
        "item_id": str(random.randrange(1, 400)),
        "event_type": random.choice(["view", "click", "purchase"]),
        "event_id": f"{prefix}-e{n}",
    }


def _run(jobs: list, clients: int, api_url: str, keep_alive: bool, results: Results) -> None:
    per_thread = threading.local()

    def run(job: tuple[str, object]) -> None:
        client = getattr(per_thread, "client", None)
        if client is None:
            client = per_thread.client = Client(api_url, keep_alive)
        results.add(*client.post(*job))

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, jobs))
    results.seconds = time.perf_counter() - began


def baseline(api_url: str, prefix: str, seconds: float) -> Results:
    """One keep-alive client, alternating a recommendation and an event."""
    results, client, n = Results(), Client(api_url, keep_alive=True), 0
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    while time.perf_counter() < deadline:
        if n % 2:
            results.add(*client.post("/events", _event(prefix, n % 50, n)))
        else:
            results.add(
                *client.post("/recommendations", {"user_id": f"{prefix}-u{n % 50}", "num_results": 10})
            )
        n += 1
    results.seconds = time.perf_counter() - began
    client.close()
    return results


def burst(api_url: str, prefix: str) -> tuple[Results, Results]:
    """Issue 11's shape: recommendations (and a few bad requests), then events, new connections."""
    recs = [("/recommendations", {"user_id": f"{prefix}-u{i % 300}", "num_results": 10}) for i in range(900)]
    for i in range(0, 900, 100):  # a few bad requests: 400s, never 5xx
        recs[i] = ("/recommendations", b"{not json")
    rec_results, event_results = Results(), Results()
    _run(recs, 8, api_url, False, rec_results)
    events = [("/events", _event(prefix, i % 300, i)) for i in range(2000)]
    events += random.sample(events, 200)  # repeats: answered as duplicates
    random.shuffle(events)
    _run(events, 16, api_url, False, event_results)
    return rec_results, event_results


def mixed(api_url: str, prefix: str, clients: int, seconds: float) -> Results:
    """N clients for `seconds`: half on new connections, half keep-alive; 1 in 3 a recommendation."""
    results, stop = Results(), threading.Event()
    counter = iter(range(10**9))
    lock = threading.Lock()

    def client_loop(index: int) -> None:
        client = Client(api_url, keep_alive=index % 2 == 1)
        while not stop.is_set():
            with lock:
                n = next(counter)
            if n % 3 == 0:
                results.add(
                    *client.post("/recommendations", {"user_id": f"{prefix}-u{n % 300}", "num_results": 10})
                )
            else:
                results.add(*client.post("/events", _event(prefix, n % 300, n)))
        client.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    results.seconds = time.perf_counter() - began
    return results


# --- checks ---------------------------------------------------------------------------------------


def stored_events(env: dict[str, str], prefix: str) -> set[str]:
    import boto3

    ddb = boto3.client(
        "dynamodb",
        endpoint_url=env.get("AWS_ENDPOINT_URL_DYNAMODB") or env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    ids: set[str] = set()
    for page in ddb.get_paginator("scan").paginate(
        TableName=env["EventsTableName"],
        FilterExpression="begins_with(event_id, :p)",
        ExpressionAttributeValues={":p": {"S": f"{prefix}-"}},
        ProjectionExpression="event_id",
    ):
        ids.update(item["event_id"]["S"] for item in page["Items"])
    return ids


def settle(pid: int, idle: dict[str, int], timeout: float = 10.0) -> tuple[float | None, dict[str, int]]:
    """Seconds until threads and descriptors are back to (at most) their idle figures."""
    began = time.perf_counter()
    while True:
        now = resources(pid)
        if now["threads"] <= idle["threads"] and now["fds"] <= idle["fds"]:
            return time.perf_counter() - began, now
        if time.perf_counter() - began > timeout:
            return None, now
        time.sleep(0.25)


def _print(name: str, r: dict, base: dict | None = None) -> None:
    ratio = f"  (p50 x{r['p50_ms'] / base['p50_ms']:.1f} of baseline)" if base and base["p50_ms"] else ""
    print(
        f"{name:<22} {r['requests']:6d} req {r['rps']:7.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
        f"p95 {r['p95_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}  {r['statuses']}{ratio}"
    )


def _res(label: str, r: dict[str, int]) -> None:
    print(f"  {label:<8} threads {r['threads']:5d}  fds {r['fds']:5d}  processes {r['processes']:3d}  "
          f"tree fds {r['tree_fds']:5d}  tree RSS {r['tree_rss_mb']:6d} MB")  # fmt: skip


def _start_stack(state_dir: Path, no_train: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "local", "up", "--port", "0", "--state-dir", str(state_dir)]
    process = subprocess.Popen([*args, *(["--no-train"] if no_train else [])], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 900
    while not (state_dir / "endpoints.env").exists() or not (state_dir / "stack.pid").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the stack did not start")
        time.sleep(0.2)
    return process


def run(
    state_dir: Path,
    clients: int,
    seconds: float,
    process: subprocess.Popen | None,
    phases: list[str] | None = None,
) -> None:
    sys.path.insert(0, str(ROOT))
    from local.stack import read_env_file

    env = read_env_file(state_dir / "endpoints.env")
    api_url, pid = env["API_URL"], int((state_dir / "stack.pid").read_text())
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    baseline(api_url, f"warm-{prefix}", 3)  # warm workers before measuring (not counted)
    time.sleep(1)
    idle = resources(pid)
    _res("idle", idle)
    base = baseline(api_url, f"{prefix}-b", 8)
    _print("baseline (1 client)", base.summary())
    accepted: set[str] = set(base.accepted)

    for name, phase in (
        ("burst", lambda: burst(api_url, f"{prefix}-x")),
        (f"mixed ({clients} clients)", lambda: (mixed(api_url, f"{prefix}-m", clients, seconds),)),
    ):
        if phases and name.split()[0] not in phases:
            continue
        with Sampler(pid) as sampler:
            outcomes = phase()
        for i, r in enumerate(outcomes):
            _print(
                f"{name} {['recommendations', 'events'][i] if len(outcomes) > 1 else ''}".strip(),
                r.summary(),
                base.summary(),
            )
            accepted |= r.accepted
        _res("peak", sampler.peak)
        took, after = settle(pid, idle)
        _res("after", after)
        print(f"  back to idle threads/fds: {f'{took:.1f} s' if took is not None else 'NOT within 10 s'}")
    stored = stored_events(env, prefix)
    lost, extra = accepted - stored, stored - accepted
    print(
        f"events answered 2xx {len(accepted)}, stored {len(stored)}: lost {len(lost)}, unanswered but stored {len(extra)}"
    )
    if process is not None:
        began = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
            print(f"SIGTERM -> exited in {time.perf_counter() - began:.2f} s")
        except subprocess.TimeoutExpired:
            process.kill()
            print("SIGTERM -> NOT stopped within 60 s (killed)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_load", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", help="a running stack's state dir (default: start one)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-train", action="store_true", help="start the stack without training")
    parser.add_argument("--phases", nargs="*", choices=["burst", "mixed"], help="default: both")
    args = parser.parse_args([] if argv is None else argv)
    if args.state_dir:
        run(Path(args.state_dir), args.clients, args.seconds, None, args.phases)
        return
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        process = _start_stack(Path(tmp) / "state", args.no_train)
        try:
            run(Path(tmp) / "state", args.clients, args.seconds, process, args.phases)
        finally:
            if process.poll() is None:
                process.kill()


if __name__ == "__main__":
    main(sys.argv[1:])
