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
import time
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.config import Config

from local import moto_patches
from local.sam import provision as prov
from local.sam import template as tmpl
from local.sam.access import StackAccess
from local.sam.engine_process import EngineProcess, EngineStartError
from local.sam.lambda_runner import LambdaRunner, function_specs
from local.sam.persistence import Persistence, dynamodb_backend
from local.sam.streams import StreamMappings
from local.wsgi_server import WsgiServer

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
        self.access: StackAccess | None = None  # IAM: each function and the state machine as its role
        self.streams: StreamMappings | None = None
        self.api = None
        self.issuer = None  # local.sam.jwt_issuer.LocalIssuer, when the serving routes take JWTs
        self.persistence: Persistence | None = None  # moto's state on disk as it changes

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> LocalStack:
        if self.port and not port_free(self.host, self.port):
            raise StackError(
                f"port {self.port} on {self.host} is in use (another `make run`?): stop it or pass --port N"
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # a stale file from the last run is not "ready"
            (self.state_dir / "endpoints.env").unlink()
        try:
            self._start_issuer()
            self.template = load_template(self.template_path, self.overrides)
            self.access = StackAccess(self.template, self.state_dir)
            self._start_moto()
            self.access.install()
            self._start_personalize()
            self._provision()
            self._start_functions()
            self.write_endpoints_file()
            (self.state_dir / "stack.pid").write_text(str(os.getpid()))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop within seconds at any load: servers first, then workers are killed; the state is
        already on disk (journal and mirror), so nothing is read back or written at exit."""
        for part in (self.streams, self.api, self.runner, self._personalize, self.issuer):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
        self.api = self.runner = self.streams = self._personalize = self.issuer = None
        if self.access is not None:
            self.access.uninstall()
        if self._moto is not None:
            with contextlib.suppress(Exception):
                self._moto.stop()
            self._moto = None
        if self._mock is not None:
            with contextlib.suppress(Exception):
                self._mock.stop()
            self._mock = None
        if self.persistence is not None:
            self.persistence.stop()
            self.persistence = None
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "stack.pid").unlink()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- parts -------------------------------------------------------------------------------
    def _start_issuer(self) -> None:
        """With ApiAuthorization=JWT and no JwtIssuer, run a local issuer and point the template at it."""
        declared = (tmpl.load_yaml(self.template_path.read_text()).get("Parameters") or {}).get(
            "ApiAuthorization"
        )
        mode = self.overrides.get("ApiAuthorization", (declared or {}).get("Default"))
        if mode != "JWT" or self.overrides.get("JwtIssuer"):
            return
        from local.sam.jwt_issuer import DEFAULT_AUDIENCE, LocalIssuer

        audience = str(self.overrides.get("JwtAudience") or DEFAULT_AUDIENCE).split(",")[0].strip()
        self.issuer = LocalIssuer(self.state_dir, audience)
        port = _pick_port(self.host, self.port + 4 if self.port else 0)
        self.overrides["JwtIssuer"] = self.issuer.serve(self.host, port)
        self.overrides.setdefault("JwtAudience", audience)

    def _start_moto(self) -> None:
        from moto import mock_aws
        from moto.server import DomainDispatcherApplication, create_backend_app

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
        # moto's own ThreadedMotoServer (werkzeug) starts a thread per connection; the stack's bounded
        # server keeps moto's threads fixed, so under load they do not compete for the GIL by hundreds.
        self._moto = WsgiServer(
            DomainDispatcherApplication(create_backend_app),
            self.host,
            port,
            threads=16,
            lookahead=1,
            name="moto",
        ).start()
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
        specs = function_specs(t, base_env)
        for spec in specs.values():  # each function calls AWS as its role
            spec.environment.update(self.access.credentials(spec.logical_id))
        self.runner = LambdaRunner(specs, self.state_dir / "logs")
        self.runner.authorize = self.access.authorize_invoke
        lambda_url = self.runner.serve(self.host, lambda_port)
        self.endpoints["AWS_ENDPOINT_URL_LAMBDA"] = lambda_url
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = lambda_url  # moto's SFN engine invokes through it

        from local.sam.api_auth import ApiAuthorizer, StackCredentials, routes_from_definition
        from local.sam.http_api import HttpApi

        apis = t.of_type("AWS::Serverless::HttpApi")
        body = t.resolve(apis[0].properties.get("DefinitionBody")) if apis else None
        cors = _cors(t.resolve(apis[0].properties.get("CorsConfiguration")) if apis else None, body)
        props = apis[0].properties if apis else {}
        api_id = t.resolve({"Ref": apis[0].logical_id}) if apis else "localapi"
        stage = t.resolve(apis[0].properties.get("StageName")) if apis else None
        authorizer = ApiAuthorizer(
            routes_from_definition(body),
            StackCredentials(
                FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
                t.account_id,
            ),
            t.region,
        )
        log_format = (t.resolve(props.get("AccessLogSettings")) or {}).get("Format")
        self.api = HttpApi(
            self.runner,
            api_id=api_id,
            cors=cors,
            stage=stage,
            authorizer=authorizer,
            throttling=t.resolve(props.get("DefaultRouteSettings")),
            route_throttling=t.resolve(props.get("RouteSettings")),
            access_log=(self.state_dir / "logs" / "http-api-access.log", log_format) if log_format else None,
        )
        self.api_url = self.api.serve(self.host, self.port)
        # Outputs and env vars that name the API's AWS URL now name the local one.
        t.url_rewrites[f"https://{api_id}.execute-api.{t.region}.amazonaws.com"] = self.api_url
        self.runner.prewarm([s.name for s in self.runner.specs.values() if s.http_routes])
        # Stream event source mappings (the aggregator): after restore, so restored items replay
        # as no-ops against their restored watermarks.
        self.streams = StreamMappings(
            t, self._client_as, self.runner.invoke, lambda m: print(m, file=self.out)
        ).start()

    # -- clients, outputs, files -------------------------------------------------------------
    def _client_as(self, service: str, logical_id: str | None) -> Any:
        """A client acting as a function's execution role (None: the stack's own credentials)."""
        creds = self.access.credentials(logical_id) if logical_id else {}
        return self.client(service, creds)

    def client(self, service: str, credentials: dict[str, str] | None = None) -> Any:
        """A boto3 client for this stack, over the wire (like any external tool); `credentials`:
        the AWS_* variables of a role (StackAccess.credentials), else the stack's own."""
        env_key = {
            "stepfunctions": "SFN",
            "logs": "CLOUDWATCH_LOGS",
            "events": "EVENTBRIDGE",
            "dynamodbstreams": "DYNAMODB_STREAMS",
        }.get(service, service.upper().replace("-", "_"))
        url = self.endpoints.get(f"AWS_ENDPOINT_URL_{env_key}", self.endpoints.get("AWS_ENDPOINT_URL"))
        creds = {**FAKE_CREDENTIALS, **(credentials or {})}
        return boto3.client(
            service,
            endpoint_url=url,
            region_name=tmpl.REGION,
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=creds["AWS_SESSION_TOKEN"],
            config=Config(retries={"max_attempts": 2}),
        )

    def outputs(self) -> dict[str, Any]:
        return self.template.outputs() if self.template else {}

    def env(self) -> dict[str, str]:
        """Everything in endpoints.env: endpoints, fake credentials, API_URL, outputs."""
        env = {**self.endpoints, **FAKE_CREDENTIALS, "API_URL": self.api_url}
        if self.access is not None:  # an engine started by hand with this environment enforces the roles
            env["LOCAL_IAM_ROLES_FILE"] = str(self.access.path)
        if self.issuer is not None:  # what `python -m local token` signs with
            env["LOCAL_JWT_ISSUER"] = self.issuer.url
            env["LOCAL_JWT_AUDIENCE"] = self.issuer.audience
            env["LOCAL_JWT_USER_CLAIM"] = str(self.template.parameters.get("JwtUserClaim") or "sub")
        for name, value in self.outputs().items():
            env[name] = value if isinstance(value, str) else json.dumps(value)
        return env

    def write_endpoints_file(self) -> Path:
        path = self.state_dir / "endpoints.env"
        lines = [f"{k}={_shell_quote(v)}" for k, v in self.env().items()]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        outputs = self.state_dir / "outputs.tmp"  # atomic too: a reader never sees it half written
        outputs.write_text(json.dumps(self.outputs(), indent=2, default=str))
        outputs.replace(self.state_dir / "outputs.json")
        tmp.replace(path)  # written last: its presence means the stack is ready
        return path

    # -- persistence of moto's state (DynamoDB items, S3 objects) ------------------------------
    def snapshot(self) -> None:
        """Fold the write journal into the compacted snapshot (cheap: no API round trips)."""
        if self.persistence is not None:
            self.persistence.compact(dynamodb_backend(tmpl.REGION))

    def restore(self) -> str:
        """Load the saved state into moto, then journal every change from here on."""
        self.persistence = Persistence(self.state_dir / "moto", tmpl.REGION)
        backend = dynamodb_backend(tmpl.REGION)
        items = self.persistence.restore(backend)
        objects = 0
        for bucket, folder in self.persistence.objects():
            with contextlib.suppress(Exception):  # a bucket the template no longer declares
                objects += len(prov.upload_directory(self.client, bucket, "", folder))
        self.persistence.compact(backend)
        self.persistence.start()
        return f"{items} items and {objects} objects" if items or objects else ""

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


def _cors(configuration: Any, body: Any) -> dict | None:
    """The API's CORS settings (CorsConfiguration, or the OpenAPI body's x-amazon-apigateway-cors),
    in CorsConfiguration's spelling; None when no origin is allowed."""
    if not isinstance(configuration, dict) and isinstance(body, dict):
        extension = body.get("x-amazon-apigateway-cors")
        if isinstance(extension, dict):
            configuration = {k[0].upper() + k[1:]: v for k, v in extension.items()}
    if not isinstance(configuration, dict) or not [o for o in configuration.get("AllowOrigins") or [] if o]:
        return None
    return configuration


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
