"""The local stack: moto, the Personalize engine, the Lambda runner and the HTTP API, from template.yaml.

How the pieces reach each other (verified; see docs/local-stack.md):
- moto runs in this process twice over the same backends: `mock_aws` (so moto's Step Functions
  engine, which runs executions in this process, calls DynamoDB/S3/SNS in-process) and a
  ThreadedMotoServer on loopback (so handlers, boto3 and the AWS CLI outside reach the same
  state over the wire).
- moto's engine creates its clients without an endpoint when mock_aws is active, so boto3
  honours AWS_ENDPOINT_URL_LAMBDA / _PERSONALIZE* set in this process: `lambda:invoke` reaches
  the Lambda runner and `aws-sdk:personalize` the local engine (loopback URLs are not
  intercepted by moto).
- Handlers run in worker processes with the template's environment plus AWS_ENDPOINT_URL_*
  for every service, pointing at moto's server and the local servers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.config import Config

from local import moto_patches
from local.sam import provision as prov
from local.sam import template as tmpl
from local.sam.engine_process import EngineProcess, EngineStartError
from local.sam.lambda_runner import LambdaRunner, function_specs
from local.sam.streams import StreamMappings

ROOT = Path(__file__).resolve().parent.parent
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": tmpl.REGION,
    "AWS_REGION": tmpl.REGION,
}
# Services moto serves for this stack (env-var suffixes as botocore spells the service ids).
MOTO_SERVICES = ("DYNAMODB", "DYNAMODB_STREAMS", "S3", "SFN", "SNS", "SQS", "CLOUDWATCH", "CLOUDWATCH_LOGS",
                 "SCHEDULER", "EVENTBRIDGE", "KMS", "IAM", "STS", "XRAY")  # fmt: skip
PERSONALIZE_SERVICES = ("PERSONALIZE", "PERSONALIZE_RUNTIME", "PERSONALIZE_EVENTS")
# Local parameter overrides, like a samconfig environment: fast polling, nothing external.
# Names the template does not declare are ignored (and reported).
LOCAL_PARAMETERS = {
    "Environment": "dev",
    "PollSchedule": "1",
    "NotificationEmail": "",
    "EnableVpcEndpoints": "false",
}


STACK_NAME = "personalize-ab-local"


def _no_nagle(handler_class: type) -> None:
    """TCP_NODELAY on every connection a socketserver handler class accepts (idempotent)."""
    if getattr(handler_class, "_no_nagle", False):
        return
    setup = handler_class.setup

    def setup_no_nagle(self) -> None:
        setup(self)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    handler_class.setup = setup_no_nagle
    handler_class._no_nagle = True


def load_template(
    path: str | Path = ROOT / "template.yaml", overrides: dict[str, Any] | None = None
) -> tmpl.Template:
    """The template as the local stack resolves it (local parameter overrides, local stack name)."""
    return tmpl.load(path, {**LOCAL_PARAMETERS, **(overrides or {})}, stack_name=STACK_NAME)


class StackError(RuntimeError):
    """A clear, user-facing failure (port in use, missing data, failed pipeline...)."""


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pick_port(host: str, preferred: int) -> int:
    if preferred and port_free(host, preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalStack:
    def __init__(
        self,
        state_dir: str | Path,
        port: int = 3000,
        host: str = "127.0.0.1",
        template_path: str | Path = ROOT / "template.yaml",
        overrides: dict[str, Any] | None = None,
        out: TextIO = sys.stdout,
    ):
        self.state_dir = Path(state_dir).resolve()
        self.host = host
        self.port = port
        self.template_path = Path(template_path)
        self.overrides = {**LOCAL_PARAMETERS, **(overrides or {})}
        self.out = out
        self.template: tmpl.Template | None = None
        self.endpoints: dict[str, str] = {}
        self.api_url = ""
        self._mock = None
        self._moto = None
        self._personalize = None
        self.runner: LambdaRunner | None = None
        self.streams: StreamMappings | None = None
        self.api = None
        self.snapshot_every = 60.0  # seconds; a crash (kill -9) loses at most this much
        self._snapshot_lock = threading.Lock()
        self._stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        if self.port and not port_free(self.host, self.port):
            raise StackError(
                f"port {self.port} on {self.host} is in use (another `make run`?): stop it or pass --port N"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # a stale file from the last run is not "ready"
            (self.state_dir / "endpoints.env").unlink()
        self.template = load_template(self.template_path, self.overrides)
        try:
            self._start_moto()
            self._start_personalize()
            self._provision()
            self._start_functions()
            self.write_endpoints_file()
            (self.state_dir / "stack.pid").write_text(str(os.getpid()))
            threading.Thread(target=self._snapshot_periodically, daemon=True).start()
        except BaseException:
            self.stop(snapshot=False)
            raise
        return self

    def _snapshot_periodically(self) -> None:
        while not self._stopping.wait(self.snapshot_every):
            try:
                self.snapshot()
            except Exception as exc:
                print(f"  ! periodic state snapshot failed: {exc}", file=self.out)

    def stop(self, snapshot: bool = True) -> None:
        self._stopping.set()
        if snapshot and self._moto is not None and self.template is not None:
            try:
                self.snapshot()
            except Exception as exc:  # say so: the next start will not have these changes
                print(f"  ! could not save state to {self.state_dir / 'moto'}: {exc}", file=self.out)
        for part in (self.streams, self.api, self.runner, self._personalize):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
        self.api = self.runner = self.streams = self._personalize = None
        if self._moto is not None:
            with contextlib.suppress(Exception):
                self._moto.stop()
            self._moto = None
        if self._mock is not None:
            with contextlib.suppress(Exception):
                self._mock.stop()
            self._mock = None
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "stack.pid").unlink()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- parts -------------------------------------------------------------------------------
    def _start_moto(self) -> None:
        from moto import mock_aws
        from moto.server import ThreadedMotoServer
        from werkzeug.serving import WSGIRequestHandler

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        # moto's ASL engine logs each failing state with its internals; progress.py reports causes.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        os.environ.update(FAKE_CREDENTIALS)
        for suffix in MOTO_SERVICES:  # in-process calls stay in-process (moto's stubber)
            os.environ.pop(f"AWS_ENDPOINT_URL_{suffix}", None)
        os.environ.pop("AWS_ENDPOINT_URL", None)
        moto_patches.install()  # DynamoDB's concurrency, Step Functions' aws-sdk casing and executions
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        port = _pick_port(self.host, self.port + 1 if self.port else 0)
        _no_nagle(WSGIRequestHandler)  # large answers (the experiment record) waited ~40 ms for an ACK
        self._moto = ThreadedMotoServer(ip_address=self.host, port=port, verbose=False)
        self._moto.start()
        os.environ["MOTO_PORT"] = str(port)  # where moto's own clients go if its stubber is off
        moto_url = f"http://{self.host}:{port}"
        self.endpoints = {f"AWS_ENDPOINT_URL_{s}": moto_url for s in MOTO_SERVICES}
        self.endpoints["AWS_ENDPOINT_URL"] = moto_url  # anything else the CLI asks for: moto

    def _start_personalize(self) -> None:
        external = os.environ.get("LOCAL_STACK_PERSONALIZE_URL")
        if external:  # an engine run on its own (`python -m local.personalize`): tests stop and restart it
            for suffix in PERSONALIZE_SERVICES:
                self.endpoints[f"AWS_ENDPOINT_URL_{suffix}"] = external
                os.environ[f"AWS_ENDPOINT_URL_{suffix}"] = external
            return
        port = _pick_port(self.host, self.port + 2 if self.port else 0)
        moto_url = self.endpoints["AWS_ENDPOINT_URL_S3"]  # imports read the bucket through moto's server
        self._personalize = EngineProcess(
            self.state_dir / "personalize",
            self.host,
            port,
            {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL_S3": moto_url, "AWS_ENDPOINT_URL_STS": moto_url},
            self.state_dir / "logs" / "personalize.log",
        )
        try:
            self._personalize.start()
        except EngineStartError as exc:
            raise StackError(str(exc)) from None
        for suffix in PERSONALIZE_SERVICES:
            self.endpoints[f"AWS_ENDPOINT_URL_{suffix}"] = self._personalize.url
            os.environ[f"AWS_ENDPOINT_URL_{suffix}"] = self._personalize.url  # for moto's SFN engine

    def _provision(self) -> None:
        t = self.template
        result = prov.provision(t, self.client)
        restored = self.restore()
        if restored:
            print(f"  restored {restored} from {self.state_dir / 'moto'}", file=self.out)
        if result.skipped:
            kinds = sorted({v.split("::", 1)[1] for v in result.skipped.values()})
            print(f"  not emulated locally: {', '.join(kinds)}", file=self.out)

    def _start_functions(self) -> None:
        t = self.template
        lambda_port = _pick_port(self.host, self.port + 3 if self.port else 0)
        base_env = {
            **FAKE_CREDENTIALS,
            **self.endpoints,
            "AWS_ENDPOINT_URL_LAMBDA": f"http://{self.host}:{lambda_port}",
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon offline
            "AWS_SAM_LOCAL": "true",
        }
        self.runner = LambdaRunner(function_specs(t, base_env), self.state_dir / "logs")
        lambda_url = self.runner.serve(self.host, lambda_port)
        self.endpoints["AWS_ENDPOINT_URL_LAMBDA"] = lambda_url
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = lambda_url  # moto's SFN engine invokes through it

        from local.sam.http_api import HttpApi

        apis = t.of_type("AWS::Serverless::HttpApi")
        cors = t.resolve(apis[0].properties.get("CorsConfiguration")) if apis else None
        api_id = t.resolve({"Ref": apis[0].logical_id}) if apis else "localapi"
        stage = t.resolve(apis[0].properties.get("StageName")) if apis else None
        self.api = HttpApi(
            self.runner, api_id=api_id, cors=cors if isinstance(cors, dict) else None, stage=stage
        )
        self.api_url = self.api.serve(self.host, self.port)
        # Outputs and env vars that name the API's AWS URL now name the local one.
        t.url_rewrites[f"https://{api_id}.execute-api.{t.region}.amazonaws.com"] = self.api_url
        self.runner.prewarm([s.name for s in self.runner.specs.values() if s.http_routes])
        # Stream event source mappings (the aggregator): after restore, so restored items replay
        # as no-ops against their restored watermarks.
        self.streams = StreamMappings(
            t, self.client, self.runner.invoke, lambda m: print(m, file=self.out)
        ).start()

    # -- clients, outputs, files -------------------------------------------------------------
    def client(self, service: str) -> Any:
        """A boto3 client for this stack, over the wire (like any external tool)."""
        env_key = {
            "stepfunctions": "SFN",
            "logs": "CLOUDWATCH_LOGS",
            "events": "EVENTBRIDGE",
            "dynamodbstreams": "DYNAMODB_STREAMS",
        }.get(service, service.upper().replace("-", "_"))
        url = self.endpoints.get(f"AWS_ENDPOINT_URL_{env_key}", self.endpoints.get("AWS_ENDPOINT_URL"))
        return boto3.client(
            service,
            endpoint_url=url,
            region_name=tmpl.REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
            config=Config(retries={"max_attempts": 2}),
        )

    def outputs(self) -> dict[str, Any]:
        return self.template.outputs() if self.template else {}

    def env(self) -> dict[str, str]:
        """Everything in endpoints.env: endpoints, fake credentials, API_URL, outputs."""
        env = {**self.endpoints, **FAKE_CREDENTIALS, "API_URL": self.api_url}
        for name, value in self.outputs().items():
            env[name] = value if isinstance(value, str) else json.dumps(value)
        return env

    def write_endpoints_file(self) -> Path:
        path = self.state_dir / "endpoints.env"
        lines = [f"{k}={_shell_quote(v)}" for k, v in self.env().items()]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        (self.state_dir / "outputs.json").write_text(json.dumps(self.outputs(), indent=2, default=str))
        tmp.replace(path)  # written last: its presence means the stack is ready
        return path

    # -- persistence of moto's state (DynamoDB items, S3 objects) ------------------------------
    def snapshot(self) -> None:
        with self._snapshot_lock:
            self._snapshot()

    def _snapshot(self) -> None:
        root = self.state_dir / "moto"
        tmp = self.state_dir / "moto.tmp"
        if tmp.exists():
            _rmtree(tmp)
        ddb, s3 = self.client("dynamodb"), self.client("s3")
        for r in self.template.of_type("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            lines = []
            for page in ddb.get_paginator("scan").paginate(TableName=r.physical_name):
                lines.extend(json.dumps(item) for item in page["Items"])
            target = tmp / "dynamodb" / f"{r.physical_name}.jsonl"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("\n".join(lines) + ("\n" if lines else ""))
        for r in self.template.of_type("AWS::S3::Bucket"):
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=r.physical_name):
                for obj in page.get("Contents", []):
                    target = tmp / "s3" / r.physical_name / obj["Key"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(r.physical_name, obj["Key"], str(target))
        old = self.state_dir / "moto.old"
        _rmtree(old)
        if root.exists():
            root.rename(old)  # a crash from here on leaves moto.old, which restore falls back to
        tmp.rename(root)
        _rmtree(old)

    def restore(self) -> str:
        root = self.state_dir / "moto"
        if not root.is_dir():
            root = self.state_dir / "moto.old"
        if not root.is_dir():
            return ""
        ddb = self.client("dynamodb")
        items = objects = 0
        for path in sorted((root / "dynamodb").glob("*.jsonl")):
            rows = [json.loads(line) for line in path.read_text().splitlines() if line]
            for i in range(0, len(rows), 25):
                batch = [{"PutRequest": {"Item": row}} for row in rows[i : i + 25]]
                pending = {path.stem: batch}
                while pending:
                    pending = ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            items += len(rows)
        s3_root = root / "s3"
        if s3_root.is_dir():
            for bucket_dir in s3_root.iterdir():
                objects += len(prov.upload_directory(self.client, bucket_dir.name, "", bucket_dir))
        return f"{items} items and {objects} objects"

    # -- training ------------------------------------------------------------------------------
    def data_bucket(self) -> str:
        buckets = self.template.of_type("AWS::S3::Bucket")
        chosen = next((b for b in buckets if b.logical_id == "DataBucket"), buckets[0] if buckets else None)
        if chosen is None:
            raise StackError("the template declares no S3 bucket to upload data to")
        return chosen.physical_name

    def training_state_machine_arn(self) -> str:
        machines = self.template.of_type("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
        chosen = next(
            (m for m in machines if m.logical_id == "TrainingStateMachine"), machines[0] if machines else None
        )
        if chosen is None:
            raise StackError("the template declares no state machine to train with")
        return self.template.resolve({"Ref": chosen.logical_id})

    def upload_raw_data(self, source: Path) -> list[str]:
        if not source.is_dir() or not any(p.is_file() for p in source.rglob("*")):
            raise StackError(f"no data to train on: {source} is missing or empty (see datasets/README.md)")
        return prov.upload_directory(self.client, self.data_bucket(), "raw", source)

    def history_budget(self) -> str:
        """The worst-case history of a training execution at this stack's settings, as a phrase."""
        from statemachines.training import history_budget

        if not {"MaxPolls", "VariantNames"} <= set(self.template.parameters):
            return "another state machine: no budget computed"
        max_polls = int(self.template.resolve({"Ref": "MaxPolls"}))
        variants = len(str(self.template.resolve({"Ref": "VariantNames"})).split(","))
        worst = history_budget(max_polls, variants)
        return f"worst case at MaxPolls {max_polls} with {variants} variants: {worst:,} of Step Functions' 25,000"

    def train(self, mode: str = "FULL", out: TextIO | None = None, timeout: float = 1800):
        from local.tools.progress import follow

        out = out or self.out
        sfn = self.client("stepfunctions")
        name = f"local-{mode.lower()}-{time.strftime('%Y%m%dT%H%M%S')}"
        arn = sfn.start_execution(
            stateMachineArn=self.training_state_machine_arn(),
            name=name,
            input=json.dumps({"trainingMode": mode}),
        )["executionArn"]
        print(f"  execution {arn}", file=out, flush=True)
        outcome = follow(sfn, arn, out=out, timeout=timeout)
        outcome.execution_arn = arn
        return outcome


def _shell_quote(value: str) -> str:
    if value and all(c.isalnum() or c in "-_./:@%+=,*" for c in value):
        return value
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def read_env_file(path: str | Path) -> dict[str, str]:
    """Parse endpoints.env (KEY=value lines, single-quoted when needed)."""
    import shlex

    env = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            parts = shlex.split(value) if value else [""]
            env[key] = parts[0] if parts else ""
    return env
