"""Helpers that tests of every level share: the local stack's fake credentials, load a module from
its file (a Lambda's code is no package), run a Step Functions execution and poll it to its end,
and a stub JSON API on loopback."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from local.stack import FAKE_CREDENTIALS


def use_fake_credentials(mp: pytest.MonkeyPatch) -> None:
    """The local stack's fake credentials and region, so boto3 never looks for real ones."""
    for key, value in FAKE_CREDENTIALS.items():
        mp.setenv(key, value)
    mp.delenv("AWS_PROFILE", raising=False)


@contextlib.contextmanager
def on_sys_path(folder: Path):
    """`folder` first on sys.path meanwhile, as Lambda puts a function's code folder."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def load_module(name: str, path: Path, *, code_dir: Path | None = None) -> ModuleType:
    """A fresh module from a file, registered as `name` (so that the code it imports by that name is
    the same object); `code_dir` on sys.path while it runs, for the function's own imports."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with on_sys_path(code_dir) if code_dir else contextlib.nullcontext():
        spec.loader.exec_module(module)
    return module


class LambdaContext:
    """The context Lambda passes a handler: its names and the time left of its timeout."""

    function_version = "$LATEST"
    memory_limit_in_mb = 512
    aws_request_id = "req"
    log_stream_name = "local"

    def __init__(
        self, timeout_seconds: float = 10.0, name: str = "serving-test"
    ):  # the template's LambdaTimeout
        self.function_name = name
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self.log_group_name = f"/aws/lambda/{name}"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def wait_for_execution(sfn, execution_arn: str, timeout: float = 30, poll: float = 0.05) -> dict:
    """DescribeExecution until the execution is no longer RUNNING; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING":
            return described
        assert time.monotonic() < deadline, f"{execution_arn} still RUNNING after {timeout} s"
        time.sleep(poll)


def start_execution(sfn, state_machine_arn: str, payload: dict) -> str:
    """Start an execution with a unique name (moto's engine names every unnamed one "None")."""
    return sfn.start_execution(
        stateMachineArn=state_machine_arn, name=f"t-{uuid.uuid4()}", input=json.dumps(payload)
    )["executionArn"]


def run_execution(
    sfn, state_machine_arn: str, payload: dict, timeout: float = 30, poll: float = 0.05
) -> dict:
    """Start an execution and wait for its end; returns DescribeExecution's answer."""
    return wait_for_execution(sfn, start_execution(sfn, state_machine_arn, payload), timeout, poll)


def run_definition(sfn, definition: dict, payload: dict | None = None, timeout: float = 20) -> dict:
    """Create a state machine from an ASL definition and run it once (moto's engine)."""
    arn = sfn.create_state_machine(
        name=f"m{time.monotonic_ns()}",
        definition=json.dumps(definition),
        roleArn="arn:aws:iam::123456789012:role/r",
    )["stateMachineArn"]
    return run_execution(sfn, arn, payload or {}, timeout)


@contextlib.contextmanager
def json_api(answer: Callable[[str, str, dict | None], tuple[int, object]]):
    """A JSON API on a free loopback port: `answer(method, path, body)` gives (status, body); yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, out = answer(self.command, self.path, body)
            data = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


AGGREGATOR = Path(__file__).resolve().parents[1] / "functions" / "aggregator"
AGGREGATOR_MODULES = ("fold", "store", "reconcile", "app")


@contextlib.contextmanager
def aggregator_modules():
    """functions/aggregator's modules as the Lambda runtime imports them (its folder on sys.path),
    taken off again after: their names (app, fold, store, reconcile) are other functions' names too."""
    saved = {n: sys.modules.pop(n) for n in AGGREGATOR_MODULES if n in sys.modules}
    try:
        with on_sys_path(AGGREGATOR):
            yield {n: importlib.import_module(n) for n in AGGREGATOR_MODULES}
    finally:
        for n in AGGREGATOR_MODULES:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
