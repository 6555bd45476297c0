"""Run the template's functions locally: their real handlers, with the template's environment.

Each function runs in its own worker processes (spawned, like a Lambda sandbox): the worker
sets the function's environment, puts its code and layers on sys.path, imports the handler
once (warm starts), and serves invocations over a pipe. Several workers per function give
concurrency, as Lambda's scaling does. The runner also serves the Lambda Invoke REST API on
loopback, so moto's Step Functions engine (`lambda:invoke`) and any boto3 client reach it
through AWS_ENDPOINT_URL_LAMBDA.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from local.sam.template import Resource, Template

_ROOT = Path(__file__).resolve().parents[2]
MAX_WORKERS_PER_FUNCTION = 4


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
            http_routes=routes,
        )
    return specs


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


class _Worker:
    def __init__(self, spec: FunctionSpec, log_path: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from local.sam.lambda_runner import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=str(_ROOT),
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")])},
        )
        _send(
            self.process.stdin,
            {
                "name": spec.name,
                "arn": spec.arn,
                "memory": spec.memory,
                "handler": spec.handler,
                "code_dir": str(spec.code_dir),
                "layer_dirs": [str(d) for d in spec.layer_dirs],
                "environment": spec.environment,
                "log_path": str(log_path),
            },
        )
        try:
            _receive(self.process.stdout)  # "ready": the handler module is imported
        except EOFError:
            self.stop()
            raise RuntimeError(f"{spec.name}: worker exited while starting; see {log_path}") from None

    def invoke(self, event: Any, timeout: int) -> tuple[str, Any]:
        request_id = str(uuid.uuid4())
        _send(self.process.stdin, [request_id, event, time.time() + timeout])
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return "error", {
                "errorMessage": f"Task timed out after {timeout:.2f} seconds",
                "errorType": "Sandbox.Timedout",
            }
        try:
            status, value = _receive(self.process.stdout)
            return status, value
        except EOFError:
            self.stop()
            return "error", {
                "errorMessage": "the function's process exited",
                "errorType": "Runtime.ExitError",
            }

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.process.stdin.close()
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.wait(5)


class InvocationError(Exception):
    def __init__(self, payload: dict):
        super().__init__(payload.get("errorMessage"))
        self.payload = payload


class LambdaRunner:
    """Pools of warm workers per function; invoke by name, ARN or partial ARN."""

    def __init__(self, specs: dict[str, FunctionSpec], log_dir: Path):
        self.specs = specs
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self._idle: dict[str, list[_Worker]] = {n: [] for n in specs}
        self._count: dict[str, int] = dict.fromkeys(specs, 0)
        self._cond = threading.Condition()
        self._all: list[_Worker] = []
        self._server: ThreadingHTTPServer | None = None
        # (headers, function ARN) -> None or why the caller may not invoke it (local.iam, set by the stack)
        self.authorize: Callable[[Any, str], str | None] | None = None

    # -- invocation ----------------------------------------------------------------------------
    def resolve_name(self, name: str) -> FunctionSpec | None:
        name = name.split(":function:")[-1].split(":")[0]  # ARN or partial ARN, minus qualifier
        return self.specs.get(name)

    def invoke(self, name: str, event: Any) -> tuple[bool, Any]:
        """(ok, result): result is the handler's JSON-decoded return value or Lambda's error payload."""
        spec = self.resolve_name(name)
        if spec is None:
            raise KeyError(name)
        try:
            worker = self._acquire(spec)
        except RuntimeError as exc:
            return False, {"errorMessage": str(exc), "errorType": "Runtime.StartError"}
        try:
            status, value = worker.invoke(event, spec.timeout)
        finally:
            self._release(spec, worker)
        return (True, json.loads(value)) if status == "ok" else (False, value)

    def _acquire(self, spec: FunctionSpec) -> _Worker:
        with self._cond:
            while True:
                idle = self._idle[spec.name]
                while idle:
                    worker = idle.pop()
                    if worker.alive():
                        return worker
                    self._count[spec.name] -= 1
                if self._count[spec.name] < MAX_WORKERS_PER_FUNCTION:
                    self._count[spec.name] += 1
                    break
                self._cond.wait()
        try:
            worker = _Worker(spec, self.log_dir / f"{spec.logical_id}.log")
        except Exception:
            with self._cond:
                self._count[spec.name] -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._all.append(worker)
        return worker

    def _release(self, spec: FunctionSpec, worker: _Worker) -> None:
        with self._cond:
            if worker.alive():
                self._idle[spec.name].append(worker)
            else:
                self._count[spec.name] -= 1
            self._cond.notify()

    def prewarm(self, names: list[str] | None = None) -> None:
        """Start one worker per function in the background (imports take a second or two)."""
        for name in names or list(self.specs):
            spec = self.specs[name]
            threading.Thread(target=self._warm, args=(spec,), daemon=True).start()

    def _warm(self, spec: FunctionSpec) -> None:
        with contextlib.suppress(RuntimeError):  # a broken function reports itself when invoked
            self._release(spec, self._acquire(spec))

    # -- Lambda Invoke REST API -------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        runner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path.split("?")[0].strip("/").split("/")
                # /2015-03-31/functions/{FunctionName}/invocations
                if len(parts) != 4 or parts[1] != "functions" or parts[3] != "invocations":
                    return self._reply(404, {"Type": "User", "message": f"unsupported path {self.path}"})
                name = unquote(parts[2])
                if runner.resolve_name(name) is None:
                    return self._reply(
                        404,
                        {"Type": "User", "message": f"Function not found: {name}"},
                        {"x-amzn-ErrorType": "ResourceNotFoundException"},
                    )
                denied = runner.authorize and runner.authorize(self.headers, runner.resolve_name(name).arn)
                # 403 AccessDeniedException, as Lambda answers (Step Functions reports "Lambda.AWSLambdaException ...
                # Status Code: 403; Error Code: AccessDeniedException": awslabs/aws-deployment-framework#460)
                if denied:
                    return self._reply(
                        403,
                        {"Type": "User", "message": denied},
                        {"x-amzn-ErrorType": "AccessDeniedException"},
                    )
                try:
                    event = json.loads(body or b"{}")
                except json.JSONDecodeError:
                    return self._reply(
                        400,
                        {"Type": "User", "message": "Could not parse request body into json"},
                        {"x-amzn-ErrorType": "InvalidRequestContentException"},
                    )
                kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
                if kind == "DryRun":
                    return self._reply(204, None)
                if kind == "Event":
                    threading.Thread(target=runner.invoke, args=(name, event), daemon=True).start()
                    return self._reply(202, None)
                ok, result = runner.invoke(name, event)
                headers = {"X-Amz-Executed-Version": "$LATEST"}
                if not ok:
                    headers["X-Amz-Function-Error"] = "Unhandled"
                self._reply(200, result, headers)

            def _reply(self, status: int, payload: Any, headers: dict | None = None) -> None:
                data = b"" if payload is None and status in (202, 204) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://{host}:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._cond:
            workers, self._all = self._all, []
        for worker in workers:
            worker.stop()
