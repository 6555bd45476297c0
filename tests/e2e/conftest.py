"""The local stack for end-to-end tests: one stack per session, started as `python -m local up`.

It runs as a subprocess (exactly what `make run` starts, with --no-train) so that moto's
in-process mocks of other tests in the same session cannot touch its state. Tests reach it
only through public interfaces: HTTP on `.api_url` and boto3 clients from `.client(name)`.
Set LOCAL_STACK_STATE_DIR to reuse a stack that is already running on that state dir.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.support import run_execution

ROOT = Path(__file__).resolve().parents[2]
# The template under test: the repo's, unless LOCAL_STACK_TEMPLATE names another.
TEMPLATE = Path(os.environ.get("LOCAL_STACK_TEMPLATE") or ROOT / "template.yaml")
STARTUP_TIMEOUT = 90
_SERVICE_ENV = {"stepfunctions": "SFN", "logs": "CLOUDWATCH_LOGS", "events": "EVENTBRIDGE"}


def read_env_file(path: Path) -> dict[str, str]:
    sys.path.insert(0, str(ROOT))
    from local.stack import read_env_file as parse

    return parse(path)


@dataclass
class RunningStack:
    state_dir: Path
    env: dict[str, str]
    outputs: dict[str, Any]
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    endpoints: dict[str, str] = field(init=False)
    api_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.endpoints = {k: v for k, v in self.env.items() if k.startswith("AWS_ENDPOINT_URL")}
        self.api_url = self.env["API_URL"]

    def client(self, name: str, **kwargs: Any) -> Any:
        key = f"AWS_ENDPOINT_URL_{_SERVICE_ENV.get(name, name.upper().replace('-', '_'))}"
        return boto3.client(
            name,
            endpoint_url=self.endpoints.get(key, self.endpoints.get("AWS_ENDPOINT_URL")),
            region_name=self.env["AWS_DEFAULT_REGION"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"max_attempts": 2}),
            **kwargs,
        )

    @property
    def signer(self) -> tuple[Any, str]:
        """(credentials, region) of the stack: what signs the IAM routes (experiments) with SigV4."""
        from botocore.credentials import Credentials

        creds = Credentials(
            self.env["AWS_ACCESS_KEY_ID"],
            self.env["AWS_SECRET_ACCESS_KEY"],
            self.env.get("AWS_SESSION_TOKEN"),
        )
        return creds, self.env["AWS_DEFAULT_REGION"]

    def signed_headers(self, method: str, url: str, body: bytes | None = None, headers: dict | None = None):
        """Headers that sign this request with the stack's credentials (botocore SigV4, execute-api)."""
        from local.tools.signed_http import sign

        creds, region = self.signer
        return sign(method, url, body, dict(headers or {}), creds, region)

    def upload_raw(self, source: Path = ROOT / "datasets" / "sample") -> list[str]:
        """Upload a raw data directory (datasets/README.md layout) to the bucket's raw/ prefix."""
        s3, bucket, keys = self.client("s3"), self.outputs["DataBucketName"], []
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            key = f"raw/{path.relative_to(source).as_posix()}"
            s3.upload_file(str(path), bucket, key)
            keys.append(key)
        return keys

    def run_training(self, execution_input: dict | None = None, timeout: float = 600) -> dict:
        """Start the training state machine and wait for it; returns DescribeExecution's answer."""
        sfn, machine = self.client("stepfunctions"), self.outputs["TrainingStateMachineArn"]
        return run_execution(sfn, machine, execution_input or {"trainingMode": "FULL"}, timeout, poll=0.5)

    def __enter__(self) -> RunningStack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> int | None:
        """SIGTERM (as Ctrl-C would): the stack stops its parts and exits (its state is on disk)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def local_up(state_dir: Path, *args: str, port: int = 0) -> list[str]:
    """The command line of `python -m local up --no-train` on a state dir (port 0: a free one)."""
    return [
        sys.executable,
        "-m",
        "local",
        "up",
        "--no-train",
        "--port",
        str(port),
        "--state-dir",
        str(state_dir),
        *args,
    ]


def start_stack(
    state_dir: Path,
    *args: str,
    template: Path = TEMPLATE,
    timeout: float = STARTUP_TIMEOUT,
    env: dict[str, str] | None = None,
) -> RunningStack:
    """Start `python -m local up --no-train --port 0` on state_dir (`env`: extra environment);
    return once endpoints.env exists."""
    if not template.is_file():  # visible in the summary (-ra); the stack is built from nothing else
        pytest.skip(f"{template} does not exist yet: the local stack is built from it")
    state_dir.mkdir(parents=True, exist_ok=True)
    ready = state_dir / "endpoints.env"
    ready.unlink(missing_ok=True)
    log_path = state_dir.parent / f"{state_dir.name}.log"
    log = log_path.open("ab")
    process = subprocess.Popen(
        local_up(state_dir, "--template", str(template), *args),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **(env or {})},
    )
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            raise RuntimeError(
                f"local stack did not start (exit {process.poll()}):\n{log_path.read_text()[-4000:]}"
            )
        time.sleep(0.1)
    outputs = json.loads((state_dir / "outputs.json").read_text())
    return RunningStack(state_dir, read_env_file(ready), outputs, process, log_path)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory):
    reuse = os.environ.get("LOCAL_STACK_STATE_DIR")
    if reuse:
        state = Path(reuse)
        yield RunningStack(
            state, read_env_file(state / "endpoints.env"), json.loads((state / "outputs.json").read_text())
        )
        return
    with start_stack(tmp_path_factory.mktemp("local-stack") / "state") as stack:
        yield stack


@pytest.fixture(scope="session")
def trained_local_stack(local_stack):
    """The session's stack after one FULL training on datasets/sample (run once per session)."""
    local_stack.upload_raw()
    described = local_stack.run_training({"trainingMode": "FULL"})
    if described["status"] != "SUCCEEDED":
        history = local_stack.client("stepfunctions").get_execution_history(
            executionArn=described["executionArn"], reverseOrder=True, maxResults=5
        )["events"]
        pytest.fail(
            f"training {described['status']}: {described.get('error')} {described.get('cause')}\n{history}"
        )
    return local_stack


# The results endpoint's freshness promise (docs/experiment-analysis.md, "Freshness"): counts lag
# the accepted events by at most this much in normal operation.
COUNTS_LAG_SECONDS = 10.0


def wait_counted(fetch, check, lag: float = COUNTS_LAG_SECONDS) -> float:
    """Poll fetch() until check(result) passes; the seconds it took. Fails with check's own
    message when the counts are not there within `lag`."""
    start = time.monotonic()
    while True:
        result = fetch()
        try:
            check(result)
            return time.monotonic() - start
        except AssertionError:
            if time.monotonic() - start > lag:
                raise
        time.sleep(0.25)
