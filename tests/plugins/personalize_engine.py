"""A pytest plugin for the local Personalize engine's tests (`pytest_plugins = ["tests.plugins.personalize_engine"]`): moto's S3 server and the engine
on free loopback ports, real boto3 clients whose every response is checked against botocore's
output shape (unknown members, wrong types and non-numeric timestamps fail the test), the sample
data converted to Personalize-ready CSVs, and polling helpers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pandas as pd
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from local.personalize import PersonalizeServer
from tests.support import use_fake_credentials

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "datasets" / "sample"
SCHEMAS = ROOT / "datasets" / "schemas"
BUCKET = "engine-test-data"
ROLE = "arn:aws:iam::123456789012:role/personalize"
RECIPE = "arn:aws:personalize:::recipe/{}"
CONFIG = Config(retries={"max_attempts": 1}, read_timeout=30)


def interactions_csv() -> str:
    """The sample's interactions, Personalize-ready: upper-case header, the dirty rows left out."""
    frame = pd.read_csv(SAMPLE / "interactions.csv", dtype=str, keep_default_na=False)
    frame.columns = [c.upper() for c in frame.columns]
    valid = (frame.USER_ID != "") & (frame.ITEM_ID != "") & frame.TIMESTAMP.str.fullmatch(r"\d+")
    valid &= frame.EVENT_TYPE.isin(["view", "click", "purchase"])
    return frame[valid].drop_duplicates().to_csv(index=False)


def items_csv() -> str:
    frame = pd.read_csv(SAMPLE / "items.csv", dtype=str, keep_default_na=False).drop(columns=["title"])
    frame.columns = [c.upper() for c in frame.columns]
    return frame.to_csv(index=False)


def users_csv() -> str:
    frame = pd.read_csv(SAMPLE / "users.csv", dtype=str, keep_default_na=False)
    frame.columns = [c.upper() for c in frame.columns]
    return frame.to_csv(index=False)


# --- response shapes ------------------------------------------------------------------------------
def check_shape(shape, value, path="response"):
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), f"{path}: expected an object, got {value!r}"
        for key, item in value.items():
            assert key in shape.members, f"{path}: {key!r} is not a member of {shape.name}"
            check_shape(shape.members[key], item, f"{path}.{key}")
    elif kind == "list":
        assert isinstance(value, list), f"{path}: expected a list"
        for n, item in enumerate(value):
            check_shape(shape.member, item, f"{path}[{n}]")
    elif kind == "map":
        assert isinstance(value, dict), f"{path}: expected a map"
        for key, item in value.items():
            check_shape(shape.value, item, f"{path}.{key}")
    elif kind == "string":
        assert isinstance(value, str), f"{path}: expected a string, got {value!r}"
        if shape.enum:
            assert value in shape.enum, f"{path}: {value!r} not in {shape.enum}"
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: expected an integer"
    elif kind in ("float", "double"):
        assert isinstance(value, int | float) and not isinstance(value, bool), f"{path}: expected a number"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{path}: expected a boolean"
    elif kind == "timestamp":
        assert isinstance(value, int | float) and not isinstance(value, bool), (
            f"{path}: timestamps are epoch numbers"
        )


def _shape_checker(client, checked: list):
    def after_call(http_response, parsed, model, **kwargs):
        if http_response.status_code >= 300:
            return
        body = json.loads(http_response.content or b"{}")
        if model.output_shape is None:
            assert body == {}, f"{model.name} has no output but returned {body}"
        else:
            check_shape(model.output_shape, body, model.name)
        checked.append(model.name)

    client.meta.events.register("after-call", after_call)
    return client


class Engine:
    """A running engine and clients for it (one per service), plus S3 for the import data."""

    def __init__(self, data_dir: Path, s3_url: str):
        self.data_dir, self.s3_url = data_dir, s3_url
        self.server: PersonalizeServer | None = None
        self.checked: list[str] = []
        self.s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")

    def start(self) -> Engine:
        self.server = PersonalizeServer(str(self.data_dir), "127.0.0.1", 0).start()
        url = self.server.url
        make = lambda name: _shape_checker(  # noqa: E731
            boto3.client(name, endpoint_url=url, region_name="us-east-1", config=CONFIG), self.checked
        )
        self.personalize, self.runtime, self.events = (
            make(n) for n in ("personalize", "personalize-runtime", "personalize-events")
        )
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def upload(self, key: str, body: str) -> str:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
        return f"s3://{BUCKET}/{key}"

    def wait(self, describe: str, arn_name: str, arn: str, done=("ACTIVE",), field="status", timeout=60):
        """Poll Describe* like a caller on AWS would, until `field` is final; returns the resource."""
        key = describe.removeprefix("describe_").split("_")
        key = key[0] + "".join(w.capitalize() for w in key[1:])
        deadline = time.time() + timeout
        while True:
            resource = getattr(self.personalize, describe)(**{arn_name: arn})[key]
            value = resource
            for part in field.split("."):
                value = (value or {}).get(part)
            if value in done or (isinstance(value, str) and "FAILED" in value) or value == "CREATE STOPPED":
                return resource
            assert time.time() < deadline, f"{arn} still {value} after {timeout}s"
            time.sleep(0.05)

    # --- building blocks of the lifecycle ---------------------------------------------------------
    def dataset_group(self, name: str) -> dict:
        p = self.personalize
        arns = {}
        for kind in ("interactions", "items", "users"):
            schema = (SCHEMAS / f"{kind}.json").read_text()
            try:
                arns[f"{kind}_schema"] = p.create_schema(name=f"{name}-{kind}", schema=schema)["schemaArn"]
            except p.exceptions.ResourceAlreadyExistsException:
                arns[f"{kind}_schema"] = next(
                    s["schemaArn"] for s in p.list_schemas()["schemas"] if s["name"] == f"{name}-{kind}"
                )
        group = p.create_dataset_group(name=name)["datasetGroupArn"]
        self.wait("describe_dataset_group", "datasetGroupArn", group)
        arns["group"] = group
        for kind in ("interactions", "items", "users"):
            arn = p.create_dataset(
                name=f"{name}-{kind}",
                schemaArn=arns[f"{kind}_schema"],
                datasetGroupArn=group,
                datasetType=kind.upper(),
            )["datasetArn"]
            self.wait("describe_dataset", "datasetArn", arn)
            arns[kind] = arn
        return arns

    def import_job(self, name: str, dataset_arn: str, location: str, mode: str = "FULL") -> dict:
        arn = self.personalize.create_dataset_import_job(
            jobName=name,
            datasetArn=dataset_arn,
            dataSource={"dataLocation": location},
            roleArn=ROLE,
            importMode=mode,
        )["datasetImportJobArn"]
        return self.wait("describe_dataset_import_job", "datasetImportJobArn", arn)

    def solution(self, name: str, group: str, recipe: str, **extra) -> str:
        arn = self.personalize.create_solution(
            name=name,
            datasetGroupArn=group,
            recipeArn=RECIPE.format(recipe),
            performAutoTraining=False,
            **extra,
        )["solutionArn"]
        self.wait("describe_solution", "solutionArn", arn)
        return arn

    def train(self, solution: str, mode: str = "FULL") -> dict:
        arn = self.personalize.create_solution_version(solutionArn=solution, trainingMode=mode)[
            "solutionVersionArn"
        ]
        return self.wait("describe_solution_version", "solutionVersionArn", arn)

    def campaign(self, name: str, version: str, **extra) -> dict:
        arn = self.personalize.create_campaign(
            name=name, solutionVersionArn=version, minProvisionedTPS=1, **extra
        )["campaignArn"]
        return self.wait("describe_campaign", "campaignArn", arn)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    use_fake_credentials(mp)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    mp.setenv("AWS_ENDPOINT_URL_S3", url)  # the engine reads import data from here
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield url
    server.stop()
    mp.undo()


@pytest.fixture(scope="module")
def engine(s3_server, tmp_path_factory):
    running = Engine(tmp_path_factory.mktemp("personalize"), s3_server).start()
    yield running
    running.stop()
