"""Run the template's functions locally: their real handlers, with the template's environment.

Each function runs in its own worker processes (spawned, like a Lambda sandbox): the worker
sets the function's environment, puts its code and layers on sys.path, imports the handler
once (warm starts), and serves invocations over a pipe. Several workers per function give
concurrency, as Lambda's scaling does. The runner also serves the Lambda Invoke REST API on
loopback, so moto's Step Functions engine (`lambda:invoke`) and any boto3 client reach it
through AWS_ENDPOINT_URL_LAMBDA.

Limits, as Lambda has them: a function runs at most its ReservedConcurrentExecutions at once,
the other functions share an account limit (LOCAL_LAMBDA_CONCURRENCY, default 32); an
invocation beyond either is throttled at once (TooManyRequestsException, HTTP 429), never
queued. The template's Timeout is enforced: a worker that does not answer in time is killed
(Sandbox.Timedout) and a fresh one replaces it. Worker processes per function are capped at
LOCAL_LAMBDA_WORKERS (default 4, a laptop has few cores): admitted invocations beyond that wait
for a worker within their timeout, so memory and descriptors stay bounded at any load.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from local.sam.template import Resource, Template
from local.wsgi_server import WsgiServer, request_headers

_ROOT = Path(__file__).resolve().parents[2]
# Lambda's default account concurrency is 1,000; a laptop runs far fewer interpreters. Both are
# configurable: LOCAL_LAMBDA_CONCURRENCY (throttling point) and LOCAL_LAMBDA_WORKERS (processes).
ACCOUNT_CONCURRENCY = int(os.environ.get("LOCAL_LAMBDA_CONCURRENCY", "32"))
WORKERS_PER_FUNCTION = int(os.environ.get("LOCAL_LAMBDA_WORKERS", "4"))
# Lambda's Init phase (importing the handler) is limited to 10 s and not part of the Timeout
# (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html).
INIT_SECONDS = 10
# Lambda reclaims execution environments that stay idle (after an unpublished while); locally an
# idle worker beyond the first per function is stopped after this many seconds, so processes and
# descriptors return to their idle figures after a burst.
IDLE_WORKER_SECONDS = float(os.environ.get("LOCAL_LAMBDA_IDLE_SECONDS", "5"))


@dataclass
class FunctionSpec:
    logical_id: str
    name: str
    arn: str
    handler: str
    code_dir: Path
    layer_dirs: list[Path]
    environment: dict[str, str]
    timeout: int = 3
    memory: int = 128
    reserved_concurrency: int | None = None  # ReservedConcurrentExecutions, None: the account pool
    http_routes: list[dict] = field(default_factory=list)  # HttpApi events: Path, Method, ApiId


def function_specs(t: Template, base_env: dict[str, str]) -> dict[str, FunctionSpec]:
    """Every AWS::Serverless::Function of the template, resolved; keyed by physical name."""
    specs = {}
    for r in t.of_type("AWS::Serverless::Function"):
        props = r.properties
        code_uri = t.resolve(props.get("CodeUri", "."))
        if not isinstance(code_uri, str):
            raise ValueError(f"{r.logical_id}: CodeUri must be a local path to run locally")
        env = {
            k: _env_text(v)
            for k, v in (t.resolve(props.get("Environment")) or {}).get("Variables", {}).items()
        }
        routes = [
            t.resolve(e.get("Properties") or {})
            for e in (props.get("Events") or {}).values()
            if e.get("Type") == "HttpApi"
        ]
        specs[r.physical_name] = FunctionSpec(
            logical_id=r.logical_id,
            name=r.physical_name,
            arn=t.arn(r),
            handler=t.resolve(props.get("Handler", "app.lambda_handler")),
            code_dir=(t.root / code_uri).resolve(),
            layer_dirs=_layer_dirs(t, r),
            environment={**base_env, **env},
            timeout=int(t.resolve(props.get("Timeout", 3))),
            memory=int(t.resolve(props.get("MemorySize", 128))),
            reserved_concurrency=_optional_int(t.resolve(props.get("ReservedConcurrentExecutions"))),
            http_routes=routes,
        )
    return specs


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _layer_dirs(t: Template, r: Resource) -> list[Path]:
    dirs = []
    for layer in r.properties.get("Layers") or []:
        ref = layer.get("Ref") if isinstance(layer, dict) else None
        target = t.resources.get(ref) if ref else None
        if target is None or target.type != "AWS::Serverless::LayerVersion":
            continue  # a published layer ARN: its code is not available offline
        root = (t.root / t.resolve(target.properties.get("ContentUri", "."))).resolve()
        # A built Python layer puts packages under python/; the source tree has them at the root.
        dirs.append(root / "python" if (root / "python").is_dir() else root)
    return dirs


# --- Worker process --------------------------------------------------------------------------


class _Context:
    """The parts of the Lambda context object handlers use."""

    def __init__(self, spec: dict, request_id: str, deadline: float):
        self.function_name = spec["name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec["arn"]
        self.memory_limit_in_mb = spec["memory"]
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{spec['name']}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _send(stream: Any, message: Any) -> None:
    data = json.dumps(message, default=str).encode()
    stream.write(len(data).to_bytes(4, "big") + data)
    stream.flush()


def _receive(stream: Any) -> Any:
    header = stream.read(4)
    if len(header) < 4:
        raise EOFError
    return json.loads(stream.read(int.from_bytes(header, "big")))


def _worker_main() -> None:
    """Entry point of a worker process: one function, invoked many times.

    The protocol runs over the original stdin/stdout (length-prefixed JSON); the handler's own
    prints and logs go to the function's log file (fd 1 and 2), as they go to CloudWatch in AWS.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the stack, which stops its workers
    channel_in = os.fdopen(os.dup(0), "rb")
    channel_out = os.fdopen(os.dup(1), "wb")
    spec = _receive(channel_in)
    log = os.open(spec["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.update(spec["environment"])
    os.environ.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec["name"],
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec["memory"]),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "_HANDLER": spec["handler"],
            "LAMBDA_TASK_ROOT": spec["code_dir"],
        }
    )
    sys.path[:0] = [spec["code_dir"], *spec["layer_dirs"]]
    os.chdir(spec["code_dir"])
    module_name, _, func_name = spec["handler"].rpartition(".")
    handler, import_error = None, None
    try:
        handler = getattr(__import__(module_name, fromlist=[func_name]), func_name)
    except Exception as exc:  # reported on every invocation, like Lambda's Runtime.ImportModuleError
        traceback.print_exc()
        import_error = _error_payload(exc, "Runtime.ImportModuleError")
    _send(channel_out, ["ready", None])
    while True:
        try:
            request_id, event, deadline = _receive(channel_in)
        except (EOFError, OSError):
            return
        if handler is None:
            _send(channel_out, ["error", import_error])
            continue
        try:
            result = handler(event, _Context(spec, request_id, deadline))
            reply = ["ok", json.dumps(result, default=str)]
        except Exception as exc:
            traceback.print_exc()
            reply = ["error", _error_payload(exc)]
        sys.stdout.flush()
        _send(channel_out, reply)


def _error_payload(exc: BaseException, error_type: str | None = None) -> dict:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class Throttled(Exception):
    """Lambda's TooManyRequestsException: the function or the account is at its concurrency limit."""

    def __init__(self, reason: str):
        super().__init__("Rate Exceeded.")
        self.reason = reason  # ThrottleReason, as the Invoke API's error names it


class NoAnswerInTime(Exception):
    """The caller stopped waiting (API Gateway's integration timeout); the function runs on."""


def _frame(message: Any) -> bytes:
    data = json.dumps(message, default=str).encode()
    return len(data).to_bytes(4, "big") + data


class _Worker:
    """One worker process. The runner talks to it over unbuffered pipes, so that killing it never
    waits on a flush, and reads its answers with a deadline (selectors: any descriptor number)."""

    def __init__(self, spec: FunctionSpec, log_path: Path):
        self.name = spec.name
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from local.sam.lambda_runner import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            cwd=str(_ROOT),
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")])},
        )
        self._write(
            {
                "name": spec.name,
                "arn": spec.arn,
                "memory": spec.memory,
                "handler": spec.handler,
                "code_dir": str(spec.code_dir),
                "layer_dirs": [str(d) for d in spec.layer_dirs],
                "environment": spec.environment,
                "log_path": str(log_path),
            }
        )
        try:
            self.read(
                time.monotonic() + 60
            )  # "ready": the handler module is imported (slow on a busy laptop)
        except (EOFError, TimeoutError, OSError):
            self.kill()
            raise RuntimeError(f"{spec.name}: worker exited while starting; see {log_path}") from None

    def _write(self, message: Any) -> None:
        # An idle worker is blocked reading its stdin, so this returns once the pipe has the frame.
        self.process.stdin.write(_frame(message))

    def send(self, request_id: str, event: Any, deadline: float) -> None:
        self._write([request_id, event, deadline])

    def read(self, deadline: float) -> Any:
        """The worker's next answer; TimeoutError past `deadline` (monotonic), EOFError if it died."""
        header = self._read_exact(4, deadline)
        return json.loads(self._read_exact(int.from_bytes(header, "big"), deadline))

    def _read_exact(self, size: int, deadline: float) -> bytes:
        chunks, fd = [], self.process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while size:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise TimeoutError
                chunk = os.read(fd, min(size, 1 << 20))
                if not chunk:
                    raise EOFError
                chunks.append(chunk)
                size -= len(chunk)
        return b"".join(chunks)

    idle_since = 0.0  # monotonic time it was last handed back

    def readable(self) -> bool:
        """An answer (or EOF) is waiting."""
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self.process.stdout.fileno(), selectors.EVENT_READ)
                return bool(selector.select(0))
        except (OSError, ValueError):
            return True  # closed: the read reports it

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """Never blocks: no flush of a pipe the worker may not read any more."""
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(OSError):
            self.process.stdin.close()  # unbuffered: nothing to flush
        # stdout stays open until this object goes: a thread reading it sees EOF, not a closed fd
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(1)  # a killed process exits at once; reap it


def _timed_out(timeout: float) -> dict:
    return {"errorMessage": f"Task timed out after {timeout:.2f} seconds", "errorType": "Sandbox.Timedout"}


def _exited() -> dict:
    return {"errorMessage": "the function's process exited", "errorType": "Runtime.ExitError"}


class _Pool:
    """A function's workers: at most `max_workers` processes, started in the background."""

    def __init__(self, spec: FunctionSpec, log_path: Path, max_workers: int, spawner: _FixedPool):
        self.spec, self.log_path, self.max_workers, self.spawner = spec, log_path, max_workers, spawner
        self.idle: list[_Worker] = []
        self.all: set[_Worker] = set()  # every live worker, busy or idle (stop kills them all)
        self.processes = 0  # started or starting, not yet dead
        self.starting = 0
        self.start_error: tuple[float, str] | None = None  # when and why a start last failed
        self.closed = False
        self.running = 0  # admitted invocations (the function's concurrency)
        self.queue: deque[object] = deque()  # invocations waiting for a worker, in arrival order
        self.cond = threading.Condition()

    def acquire(self, deadline: float, stopping: threading.Event) -> _Worker:
        """The first idle worker, first come first served (a bare Condition wakes any waiter and
        newcomers could starve one past its timeout). Workers start in the background when the
        queue outgrows the idle and starting ones, so a waiter takes whichever is free first
        instead of waiting out one cold start while warm workers free up."""
        ticket, arrived = object(), time.monotonic()
        with self.cond:
            self.queue.append(ticket)
            try:
                while True:
                    if stopping.is_set():
                        raise RuntimeError("the local stack is stopping")
                    if self.queue[0] is ticket:
                        while self.idle:
                            worker = self.idle.pop()
                            if worker.alive():
                                return worker
                            self.processes -= 1
                            self.all.discard(worker)
                        failed = self.start_error
                        if failed and failed[0] >= arrived and self.processes == 0:
                            raise RuntimeError(failed[1])  # a start tried since this call came in failed
                    if len(self.queue) > self.starting and self.processes < self.max_workers:
                        self.processes += 1
                        self.starting += 1
                        self.spawner.submit(self._start_worker)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError
                    self.cond.wait(remaining)
            finally:
                self.queue.remove(ticket)
                self.cond.notify_all()

    def _start_worker(self) -> None:
        try:
            worker = _Worker(self.spec, self.log_path)
        except Exception as exc:
            with self.cond:
                self.processes -= 1
                self.starting -= 1
                self.start_error = (time.monotonic(), str(exc))
                self.cond.notify_all()
            return
        with self.cond:
            self.starting -= 1
            if self.closed:  # the stack stopped while it started
                self.processes -= 1
                worker.kill()
                return
            self.start_error = None
            self.all.add(worker)
            worker.idle_since = time.monotonic()
            self.idle.append(worker)
            self.cond.notify_all()

    def release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self.cond:
            if healthy and worker.alive():
                worker.idle_since = time.monotonic()
                self.idle.append(worker)
            else:
                self.processes -= 1
                self.all.discard(worker)
            self.cond.notify_all()

    def reap_idle(self, idle_seconds: float) -> None:
        """Stop workers idle for `idle_seconds`, keeping the most recently used one warm."""
        cutoff = time.monotonic() - idle_seconds
        with self.cond:
            # idle is a stack (pop() takes the most recent): the oldest are at the front
            stale = [w for w in self.idle[:-1] if w.idle_since < cutoff]
            for worker in stale:
                self.idle.remove(worker)
                self.all.discard(worker)
                self.processes -= 1
        for worker in stale:
            worker.kill()

    def kill_all(self) -> None:
        with self.cond:
            self.closed = True
            workers, self.idle = list(self.all), []
            self.cond.notify_all()
        for worker in workers:
            worker.kill()


class LambdaRunner:
    """Pools of warm workers per function; invoke by name, ARN or partial ARN."""

    def __init__(
        self,
        specs: dict[str, FunctionSpec],
        log_dir: Path,
        account_concurrency: int = ACCOUNT_CONCURRENCY,
        workers_per_function: int = WORKERS_PER_FUNCTION,
    ):
        self.specs = specs
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.account_concurrency = account_concurrency
        self._spawner = _FixedPool(4, "lambda-start")  # cold starts
        self._pools = {
            name: _Pool(spec, log_dir / f"{spec.logical_id}.log", max(1, workers_per_function), self._spawner)
            for name, spec in specs.items()
        }
        self._lock = threading.Lock()
        self._unreserved_running = 0
        self._stopping = threading.Event()
        self._watchdog = _Watchdog(
            self._finish, lambda: [p.reap_idle(IDLE_WORKER_SECONDS) for p in self._pools.values()]
        )
        self._async = _FixedPool(4, "lambda-async")  # Event invocations and prewarming
        self._server: WsgiServer | None = None
        # (headers, function ARN) -> None or why the caller may not invoke it (local.iam, set by the stack)
        self.authorize: Callable[[Any, str], str | None] | None = None

    # -- invocation ----------------------------------------------------------------------------
    def resolve_name(self, name: str) -> FunctionSpec | None:
        name = name.split(":function:")[-1].split(":")[0]  # ARN or partial ARN, minus qualifier
        return self.specs.get(name)

    def invoke(self, name: str, event: Any, wait: float | None = None) -> tuple[bool, Any]:
        """(ok, result): result is the handler's JSON-decoded return value or Lambda's error payload.

        Raises Throttled beyond the concurrency limit, NoAnswerInTime when `wait` seconds pass
        before the function answers (it runs on to its own timeout, as in Lambda)."""
        spec = self.resolve_name(name)
        if spec is None:
            raise KeyError(name)
        pool = self._pools[spec.name]
        self._admit(pool)
        start = time.monotonic()
        handed_over = False
        try:
            # a local queue for a worker process (Lambda has none), bounded by Init + timeout and
            # by the caller's patience
            queue_deadline = start + INIT_SECONDS + spec.timeout
            try:
                worker = pool.acquire(
                    min(queue_deadline, start + wait) if wait else queue_deadline, self._stopping
                )
            except TimeoutError:
                if wait and time.monotonic() < queue_deadline:
                    raise NoAnswerInTime from None
                return False, _timed_out(spec.timeout)
            except RuntimeError as exc:
                return False, {"errorMessage": str(exc), "errorType": "Runtime.StartError"}
            # The timeout counts from the handler's start: a cold start (Init) is not part of it.
            deadline = time.monotonic() + spec.timeout
            try:
                worker.send(str(uuid.uuid4()), event, time.time() + (deadline - time.monotonic()))
                answer = worker.read(min(deadline, start + wait) if wait else deadline)
            except TimeoutError:
                if time.monotonic() < deadline:  # the caller's patience ended, not the function's time
                    handed_over = True
                    self._watchdog.adopt(pool, worker, deadline)
                    raise NoAnswerInTime from None
                pool.release(worker, healthy=False)
                return False, _timed_out(spec.timeout)
            except (EOFError, OSError):
                pool.release(worker, healthy=False)
                return False, _exited()
            pool.release(worker, healthy=True)
            status, value = answer
            return (True, json.loads(value)) if status == "ok" else (False, value)
        finally:
            if not handed_over:
                self._finish(pool)

    def _admit(self, pool: _Pool) -> None:
        """Take a concurrency slot at once or throttle, as Lambda does (no queue)."""
        reserved = pool.spec.reserved_concurrency
        with self._lock:
            if reserved is not None:
                if pool.running >= reserved:
                    raise Throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
            elif self._unreserved_running >= self.account_concurrency:
                raise Throttled("ConcurrentInvocationLimitExceeded")
            else:
                self._unreserved_running += 1
            pool.running += 1

    def _finish(self, pool: _Pool) -> None:
        with self._lock:
            pool.running -= 1
            if pool.spec.reserved_concurrency is None:
                self._unreserved_running -= 1

    def concurrency(self) -> dict[str, int]:
        """Invocations running per function (for tests and the load benchmark)."""
        with self._lock:
            return {name: pool.running for name, pool in self._pools.items()}

    def prewarm(self, names: list[str] | None = None) -> None:
        """Start one worker per function in the background (imports take a second or two)."""
        for name in names or list(self.specs):
            self._async.submit(self._warm, self._pools[name])

    def _warm(self, pool: _Pool) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError):  # a broken function reports itself when invoked
            pool.release(pool.acquire(time.monotonic() + 60, self._stopping), healthy=True)

    def invoke_async(self, name: str, event: Any) -> None:
        """InvocationType Event: Lambda queues it and answers 202; a bounded pool runs the queue."""

        def run() -> None:
            for _ in range(10):  # Lambda's async queue retries throttled events (for hours; here 10 s)
                try:
                    self.invoke(name, event)
                    return
                except Throttled:
                    if self._stopping.wait(1):
                        return
                except KeyError:
                    return

        self._async.submit(run)

    # -- Lambda Invoke REST API -------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = WsgiServer(
            _InvokeApi(self), host, port, threads=16, connection_limit=200, name="lambda"
        ).start()
        return self._server.url

    def stop(self) -> None:
        """Kill every worker at once: stopping never waits on a handler or a pipe."""
        self._stopping.set()
        if self._server is not None:
            self._server.stop(timeout=0.5)
        self._watchdog.stop()
        for pool in self._pools.values():
            pool.kill_all()
        self._async.shutdown()
        self._spawner.shutdown()


class _FixedPool:
    """`size` threads started at once (a ThreadPoolExecutor starts them on demand, so the stack's
    thread count would creep up after a burst instead of staying put)."""

    def __init__(self, size: int, name: str):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        for n in range(size):
            threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True).start()

    def _run(self) -> None:
        while (task := self._tasks.get()) is not None:
            with contextlib.suppress(Exception):  # a task reports its own failures
                task()

    def submit(self, task: Any, *args: Any) -> None:
        self._tasks.put(lambda: task(*args))

    def shutdown(self) -> None:
        for _ in range(64):  # more than any pool's size: every thread takes one and exits
            self._tasks.put(None)


class _Watchdog:
    """Owns the workers whose caller stopped waiting: reads their late answer (the worker goes
    back to its pool) or kills them at the function's timeout. One thread for all of them, so
    no request thread ever waits on a wedged worker. It also reaps idle workers once a second."""

    def __init__(self, finished: Any, housekeeping: Any):
        self._finished, self._housekeeping = finished, housekeeping
        self._adopted: list[tuple[_Pool, _Worker, float]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lambda-watchdog", daemon=True)
        self._thread.start()

    def adopt(self, pool: _Pool, worker: _Worker, deadline: float) -> None:
        with self._lock:
            self._adopted.append((pool, worker, deadline))

    def _run(self) -> None:
        next_housekeeping = 0.0
        while not self._stopping.wait(0.05 if self._adopted else 0.5):  # idle: two wake-ups a second
            with self._lock:
                adopted = list(self._adopted)
            for entry in adopted:
                pool, worker, deadline = entry
                if self._poll(pool, worker, deadline):
                    with self._lock:
                        self._adopted.remove(entry)
                    self._finished(pool)
            if time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + 1
                self._housekeeping()

    @staticmethod
    def _poll(pool: _Pool, worker: _Worker, deadline: float) -> bool:
        if not worker.readable():
            if time.monotonic() < deadline:
                return False
            pool.release(worker, healthy=False)  # Sandbox.Timedout: killed, replaced on demand
            return True
        try:
            worker.read(time.monotonic() + 1)  # the late answer: discarded, as API Gateway does
        except (TimeoutError, EOFError, OSError, ValueError):
            pool.release(worker, healthy=False)
            return True
        pool.release(worker, healthy=True)
        return True

    def stop(self) -> None:
        self._stopping.set()


class _InvokeApi:
    """The Lambda Invoke REST API as a WSGI app: POST /2015-03-31/functions/{name}/invocations."""

    def __init__(self, runner: LambdaRunner):
        self.runner = runner

    def __call__(self, environ: dict, start_response: Any) -> list[bytes]:
        status, payload, headers = self._handle(environ)
        data = b"" if payload is None and status in (202, 204) else json.dumps(payload).encode()
        reason = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request", 404: "Not Found",
                  405: "Method Not Allowed", 429: "Too Many Requests"}.get(status, "Error")  # fmt: skip
        start_response(
            f"{status} {reason}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers.items()],
        )
        return [data]

    def _handle(self, environ: dict) -> tuple[int, Any, dict]:
        runner = self.runner
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        parts = environ.get("PATH_INFO", "").strip("/").split("/")
        # /2015-03-31/functions/{FunctionName}/invocations
        if len(parts) != 4 or parts[1] != "functions" or parts[3] != "invocations":
            return 404, {"Type": "User", "message": f"unsupported path {environ.get('PATH_INFO')}"}, {}
        if environ["REQUEST_METHOD"] != "POST":
            return 405, {"Type": "User", "message": "Invoke is POST"}, {}
        name = unquote(parts[2])
        if runner.resolve_name(name) is None:
            error = {"x-amzn-ErrorType": "ResourceNotFoundException"}
            return 404, {"Type": "User", "message": f"Function not found: {name}"}, error
        denied = runner.authorize and runner.authorize(
            request_headers(environ), runner.resolve_name(name).arn
        )
        if denied:
            # 403 AccessDeniedException, as Lambda answers (Step Functions reports "Lambda.AWSLambdaException ...
            # Status Code: 403; Error Code: AccessDeniedException": awslabs/aws-deployment-framework#460)
            return 403, {"Type": "User", "message": denied}, {"x-amzn-ErrorType": "AccessDeniedException"}
        try:
            event = json.loads(body or b"{}")
        except json.JSONDecodeError:
            error = {"x-amzn-ErrorType": "InvalidRequestContentException"}
            return 400, {"Type": "User", "message": "Could not parse request body into json"}, error
        kind = environ.get("HTTP_X_AMZ_INVOCATION_TYPE", "RequestResponse")
        if kind == "DryRun":
            return 204, None, {}
        if kind == "Event":
            runner.invoke_async(name, event)
            return 202, None, {}
        try:
            ok, result = runner.invoke(name, event)
        except Throttled as exc:
            # Invoke's TooManyRequestsException: HTTP 429 with a Reason (botocore's lambda model;
            # https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html#API_Invoke_Errors).
            return 429, {"Type": "User", "message": str(exc), "Reason": exc.reason}, {
                "x-amzn-ErrorType": "TooManyRequestsException", "Retry-After": "1"}  # fmt: skip
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        if not ok:
            headers["X-Amz-Function-Error"] = "Unhandled"
        return 200, result, headers
