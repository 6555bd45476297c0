"""A pytest plugin for the serving integration tests (`pytest_plugins = ["tests.plugins.serving"]`): moto DynamoDB with the tables of
template.yaml, the real handlers with the template's environment, payload-2.0 events built by
the local stack's own API Gateway emulation, and responses checked against docs/openapi.yaml."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import boto3
import pytest
import yaml
from moto import mock_aws

from local.moto_patches import dynamodb as moto_dynamodb
from local.sam import provision, template
from local.sam.http_api import build_event, make_route
from local.sam.lambda_runner import function_specs
from local.sam.streams import Delivery, lambda_record, mappings
from tests.support import LambdaContext, aggregator_modules, load_module

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = {
    "recommendations": "RecommendationsFunction",
    "events": "EventsFunction",
    "event_replay": "EventReplayFunction",
}
UNREACHABLE = "http://127.0.0.1:9"  # discard port: connection refused at once


def load_template():
    return template.load(ROOT / "template.yaml")


def openapi() -> dict:
    return yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())


_LOADING = threading.Lock()


def load_app(folder: str, sandbox: str = "main"):
    """A fresh instance of a handler module, as a new Lambda sandbox would import it."""
    from aws_lambda_powertools.metrics import Metrics

    with _LOADING:
        # Metrics() takes its metric set from class-level dicts (one process = one sandbox on
        # Lambda): fresh ones, so that sandboxes in threads do not flush each other's metrics.
        for attr in ("_metrics", "_dimensions", "_metadata", "_default_dimensions"):
            setattr(Metrics, attr, {})
        return load_module(f"serving_app_{folder}_{sandbox}", ROOT / "functions" / folder / "app.py")


_ROUTER_STATE = threading.local()


def _router_state_per_thread() -> None:
    """Make the powertools resolvers' per-request state thread-local (idempotent).

    The resolver keeps the event being handled at class level (`BaseRouter.current_event`, and
    `lambda_context`): right on Lambda, where a sandbox handles one event at a time, but calling
    handlers from many threads of one process (as the concurrency tests here do, to make DynamoDB
    writes interleave) would hand one request another's body. Thread-local state gives each thread
    a sandbox of its own; the local stack gets the same from its worker processes.
    """
    from abc import ABCMeta

    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    if getattr(type(BaseRouter), "thread_local_state", False):
        return

    def state(name: str) -> property:
        return property(
            lambda _self: getattr(_ROUTER_STATE, name, None),
            lambda _self, value: setattr(_ROUTER_STATE, name, value),
        )

    class _ThreadLocalRouterMeta(ABCMeta):
        thread_local_state = True
        current_event = state("current_event")  # BaseRouter.current_event (class-level get/set)
        lambda_context = state("lambda_context")

    BaseRouter.current_event = state("current_event")  # self.current_event (instance-level reads)
    BaseRouter.lambda_context = state("lambda_context")
    BaseRouter.__class__ = _ThreadLocalRouterMeta


class Serving:
    """The serving Lambdas over one moto account."""

    def __init__(self, t, aggregator=None):
        self.t = t
        self.aggregator = aggregator  # functions/aggregator/app.py, fed from the stream by count()
        self._iterator = None
        self.failures: list[dict] = []  # what the event source mapping sent to its OnFailure destination
        self.ddb = boto3.resource("dynamodb")
        self.tables = {}
        for r in t.of_type("AWS::DynamoDB::Table"):
            req = provision.table_request(t, r)
            req.pop("SSESpecification", None)  # the CMK is not what these tests are about
            self.ddb.meta.client.create_table(**req)
            self.tables[r.logical_id] = self.ddb.Table(req["TableName"])
        specs = {s.logical_id: s for s in function_specs(t, {}).values()}
        self.routes = [
            make_route(props["Method"], props["Path"], logical)
            for logical in FUNCTIONS.values()
            for props in specs[logical].http_routes
        ]
        self._sandboxes = threading.local()
        assert self.apps  # the calling thread's sandbox, loaded now (tests patch it)

    @property
    def apps(self) -> dict:
        """This thread's handler modules. Lambda runs one event at a time per sandbox, and the
        handlers keep per-request state at module level (the powertools resolver's current_event),
        so concurrent requests each get their own sandbox, as on Lambda and in the local stack's
        worker processes; calling one module from many threads would mix up requests."""
        apps = getattr(self._sandboxes, "apps", None)
        if apps is None:
            sandbox = (
                "main"
                if threading.current_thread() is threading.main_thread()
                else str(threading.get_ident())
            )
            apps = self._sandboxes.apps = {folder: load_app(folder, sandbox) for folder in FUNCTIONS}
        return apps

    def table(self, logical_id: str):
        return self.tables[logical_id]

    def put_experiment(self, **record):
        record.setdefault("experiment_id", "recs-ab")
        self.table("ExperimentsTable").put_item(Item=_dec(record))
        from recsys_common import config

        config.clear_cache()

    def request(self, method: str, path: str, body=None, headers=None, query=None, raw: bytes | None = None):
        """(status, headers, parsed body) of the function that API Gateway routes this request to."""
        route, params = None, {}
        for r in sorted(self.routes, key=lambda r: r.specificity, reverse=True):
            m = r.pattern.match(path)
            if m and r.method == method:
                route, params = r, m.groupdict()
                break
        if route is None:  # reach the function owning the path anyway: it must answer 404/405 itself
            owner = "EventsFunction" if path.startswith("/events") else "RecommendationsFunction"
            route = make_route(method, path, owner)
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        hdrs = {"content-type": "application/json", "user-agent": "pytest-client/1.0", **(headers or {})}
        event = build_event(
            route, params, method, path, urlencode(query or {}), hdrs, data, "localapi", "127.0.0.1"
        )
        folder = next(f for f, logical in FUNCTIONS.items() if logical == route.function)
        resp = self.apps[folder].lambda_handler(event, LambdaContext())
        return (
            resp["statusCode"],
            {k.lower(): v for k, v in (resp.get("headers") or {}).items()},
            json.loads(resp["body"]),
        )

    def stream_records(self) -> list[dict]:
        """The assignments stream's records not read yet, as Lambda hands them to a function."""
        (m,) = mappings(self.t)
        streams = boto3.client("dynamodbstreams")
        if self._iterator is None:
            arn = self.ddb.meta.client.describe_table(TableName=m.table)["Table"]["LatestStreamArn"]
            shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
            self._iterator = streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard, ShardIteratorType=m.starting_position
            )["ShardIterator"]
        records = []
        while True:
            page = streams.get_records(ShardIterator=self._iterator, Limit=m.batch_size)
            self._iterator = page["NextShardIterator"]
            if not page["Records"]:
                return records
            records += [lambda_record(r, m.stream_arn) for r in page["Records"]]

    def invoke_aggregator(self, name: str, event: dict) -> tuple[bool, dict]:
        try:
            return True, json.loads(json.dumps(self.aggregator.lambda_handler(event, LambdaContext())))
        except Exception as exc:
            return False, {"errorMessage": str(exc), "errorType": type(exc).__name__}

    def count(self) -> None:
        """Deliver the stream's new records to the aggregator."""
        self.count_records(self.stream_records())

    def count_records(self, records: list[dict], invoke=None) -> None:
        """Deliver records to the aggregator (or `invoke`) through the template's event source
        mapping (batch size, bisection, partial batch responses, retries: local/sam/streams.py)."""
        (m,) = mappings(self.t)
        delivery = Delivery(m, invoke or self.invoke_aggregator, self.failures.append, sleep=lambda s: None)
        for start in range(0, len(records), m.batch_size):
            delivery.deliver(records[start : start + m.batch_size])

    def aggregates(self, experiment_id: str = "recs-ab") -> dict[str, dict]:
        """Counted so far (after delivering the stream), every shard of a slice summed:
        {'<variant>#<ALL|day>': counters}."""
        from recsys_common import aggregates

        self.count()
        items = self.table("AggregatesTable").query(
            KeyConditionExpression=boto3.dynamodb.conditions.Key("experiment_id").eq(experiment_id)
        )["Items"]
        out: dict[str, dict] = {}
        for i in items:
            target = out.setdefault(aggregates.slice_key(*aggregates.parse_slice(i["slice"])), {})
            for k, v in i.items():
                if isinstance(v, Decimal):
                    target[k] = target.get(k, 0.0) + float(v)
        return out


def _dec(x):
    if isinstance(x, float):
        return Decimal(repr(x))
    if isinstance(x, dict):
        return {k: _dec(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_dec(v) for v in x]
    return x


def clear_caches() -> None:
    from recsys_common import config, ddb, personalize

    config.clear_cache()
    ddb.client.cache_clear()
    personalize.runtime.cache_clear()
    personalize.events_client.cache_clear()


@pytest.fixture
def serving(monkeypatch):
    t = load_template()
    specs = {s.logical_id: s for s in function_specs(t, {}).values()}
    env = dict(specs["RecommendationsFunction"].environment)
    env["AGGREGATE_SHARDS"] = specs["AggregatorFunction"].environment["AGGREGATE_SHARDS"]
    env.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_NAMESPACE": "test",
            "POWERTOOLS_DEV": "0",
            "CONFIG_CACHE_SECONDS": "0",
            "PERSONALIZE_TIMEOUT_MS": "300",
            "AWS_ENDPOINT_URL_PERSONALIZE_RUNTIME": UNREACHABLE,
            "AWS_ENDPOINT_URL_PERSONALIZE_EVENTS": UNREACHABLE,
        }
    )
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _router_state_per_thread()
    moto_dynamodb.install()  # DynamoDB's concurrency semantics (the local stack installs it too)
    with mock_aws(), aggregator_modules() as aggregator:
        clear_caches()
        yield Serving(t, aggregator["app"])
    clear_caches()
