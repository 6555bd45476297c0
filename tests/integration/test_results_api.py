"""GET /experiments/{id}[/results] through the real handler against moto DynamoDB.

The counters are computed here from raw per-user data (not by the repo's aggregates code),
written to the aggregates table split over two shards per slice (as the aggregator spreads them), and the API's answers are compared with statsmodels/scipy
run on the same raw data.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import boto3
import numpy as np
import pytest
from moto import mock_aws
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from tests.support import LambdaContext, load_module
from tests.unit.abtest_helpers import EXPERIMENTS_DIR, counters_from_users, simulate_users

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DAYS = ["2026-11-20", "2026-11-21", "2026-11-22"]
PLAN = {"A": (0.10, 0.20, 400), "B": (0.10, 0.32, 410), "C": (0.10, 0.20, 395)}  # p_click, p_buy, users/day


def _table_requests() -> dict[str, dict]:
    """CreateTable requests from template.yaml via the local stack's helpers when they exist;
    otherwise the key schema of docs/architecture.md."""
    try:
        from local.sam import provision, template

        t = template.load(ROOT / "template.yaml")
        out = {}
        for logical in ("ExperimentsTable", "AggregatesTable"):
            req = provision.table_request(t, t.resources[logical])
            req.pop("SSESpecification", None)  # the CMK is not part of this test
            out[logical] = req
        return out
    except (ImportError, OSError, KeyError, ValueError):
        s = {"AttributeType": "S"}
        return {
            "ExperimentsTable": {
                "TableName": "experiments",
                "KeySchema": [{"AttributeName": "experiment_id", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "experiment_id", **s}],
                "BillingMode": "PAY_PER_REQUEST",
            },
            "AggregatesTable": {
                "TableName": "aggregates",
                "KeySchema": [
                    {"AttributeName": "experiment_id", "KeyType": "HASH"},
                    {"AttributeName": "slice", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "experiment_id", **s},
                    {"AttributeName": "slice", **s},
                ],
                "BillingMode": "PAY_PER_REQUEST",
            },
        }


def _event(path: str, query: dict | None = None) -> dict:
    query = query or {}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query),
        "queryStringParameters": query or None,
        "headers": {"accept": "application/json"},
        "isBase64Encoded": False,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "localhost",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "t",
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "25/Nov/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
    }


@pytest.fixture
def api(monkeypatch):
    for k, v in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_SERVICE_NAME": "experiments",
        "EXPERIMENT_ID": "recs-ab",
        "VARIANT_NAMES": "A,B,C",
        "VARIANT_WEIGHTS": "33,33,34",
        "EVENT_TYPES": "view,click,purchase",
    }.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        ddb = boto3.resource("dynamodb")
        tables = {}
        for logical, req in _table_requests().items():
            ddb.meta.client.create_table(**req)
            tables[logical] = ddb.Table(req["TableName"])
        monkeypatch.setenv("EXPERIMENTS_TABLE", tables["ExperimentsTable"].name)
        monkeypatch.setenv("AGGREGATES_TABLE", tables["AggregatesTable"].name)
        module = load_module("experiments_app", EXPERIMENTS_DIR / "app.py")

        def call(path, query=None):
            resp = module.lambda_handler(_event(path, query), LambdaContext(30, "experiments"))
            return resp["statusCode"], json.loads(resp["body"])

        yield call, tables


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def _load(tables, experiment_id="exp-1", weights=(33, 33, 34)):
    """Write the record and the counters; return the raw per-user data per variant."""
    rng = np.random.default_rng(42)
    tables["ExperimentsTable"].put_item(
        Item={
            "experiment_id": experiment_id,
            "status": "RUNNING",
            "control": "A",
            "phase": 1,
            "variants": {
                "A": {"weight": weights[0], "recipe": "aws-user-personalization", "campaign_arn": "arn:c:a"},
                "B": {
                    "weight": weights[1],
                    "recipe": "aws-user-personalization-v2",
                    "campaign_arn": "arn:c:b",
                },
                "C": {"weight": weights[2], "recipe": "aws-popularity-count"},
            },
            "event_tracker": {"arn": "arn:t", "tracking_id": "secret-ish"},
        }
    )
    raw = {}
    with tables["AggregatesTable"].batch_writer() as batch:
        for v, (pc, pb, per_day) in PLAN.items():
            per_day_users = [simulate_users(rng, per_day, pc, pb) for _ in DAYS]
            for day, users in zip(DAYS, per_day_users, strict=True):
                c = counters_from_users(users, per_day)
                for shard in (0, 11):  # the aggregator spreads each slice over shards; readers sum them
                    batch.put_item(
                        Item={
                            "experiment_id": experiment_id,
                            "slice": f"{v}#{day}#{shard:02d}",
                            **{k: _dec(x / 2) for k, x in c.items()},  # halves: exact in binary
                        }
                    )
            raw[v] = {m: np.concatenate([u[m] for u in per_day_users]) for m in per_day_users[0]}
            c = counters_from_users(raw[v], per_day * len(DAYS))
            for shard in (3, 15):
                item = {
                    "experiment_id": experiment_id,
                    "slice": f"{v}#ALL#{shard:02d}",
                    "updated_at": "2026-11-22T10:00:00Z",
                }
                batch.put_item(Item={**item, **{k: _dec(x / 2) for k, x in c.items()}})
    return raw


def test_results_match_an_independent_computation(api):
    call, tables = api
    raw = _load(tables)
    status, body = call("/experiments/exp-1/results", {"analysis": "fixed"})
    assert status == 200, body

    n = {v: len(raw[v]["view"]) for v in raw}
    assert {v: body["variants"][v]["exposed"] for v in raw} == n
    pvals = []
    for v in ("B", "C"):
        buyers = [int((raw[v]["purchase"] > 0).sum()), int((raw["A"]["purchase"] > 0).sum())]
        z_ref, p_ref = proportions_ztest(buyers, [n[v], n["A"]])
        comp = body["comparisons"]["purchase_rate"][v]
        assert comp["statistic"] == pytest.approx(z_ref, rel=1e-9)
        assert comp["p_value"] == pytest.approx(p_ref, rel=1e-9)
        pvals.append(p_ref)
        welch = stats.ttest_ind(raw[v]["value"], raw["A"]["value"], equal_var=False)
        assert body["comparisons"]["value_per_user"][v]["p_value"] == pytest.approx(welch.pvalue, rel=1e-8)
    holm = multipletests(pvals, method="holm")[1]
    assert [body["comparisons"]["purchase_rate"][v]["p_value_adjusted"] for v in ("B", "C")] == pytest.approx(
        holm
    )

    expected = np.array([0.33, 0.33, 0.34]) * sum(n.values())
    srm = stats.chisquare([n["A"], n["B"], n["C"]], expected)
    assert body["srm"]["p_value"] == pytest.approx(srm.pvalue, rel=1e-9)
    assert [row["day"] for row in body["timeline"]] == DAYS
    assert body["verdict"]["decision"] == "winner" and body["verdict"]["winner"] == "B"


def test_responses_validate_against_the_openapi_document(api):
    openapi = ROOT / "docs" / "openapi.yaml"
    import jsonschema
    import yaml

    doc = yaml.safe_load(openapi.read_text())

    def check(body, name):
        # refs are "#/components/schemas/...": validate with the components beside the schema
        jsonschema.validate(body, {**doc["components"]["schemas"][name], "components": doc["components"]})

    call, tables = api
    _load(tables)
    for analysis in ("sequential", "fixed"):
        check(call("/experiments/exp-1/results", {"analysis": analysis})[1], "ExperimentResults")
    check(call("/experiments/recs-ab/results")[1], "ExperimentResults")  # no data at all: nulls
    check(call("/experiments/exp-1")[1], "ExperimentConfig")
    check(call("/experiments/nope/results")[1], "ApiError")
    check(call("/experiments/exp-1/results", {"alpha": "x"})[1], "ApiError")
    broken = call("/experiments/exp-1/results")[1]
    broken["verdict"]["decision"] = "ship it"
    with pytest.raises(jsonschema.ValidationError):
        check(broken, "ExperimentResults")


def test_config_route_hides_plumbing_and_normalises_weights(api):
    call, tables = api
    _load(tables)
    status, body = call("/experiments/exp-1")
    assert status == 200
    assert body["variants"]["B"]["live"] is True and body["variants"]["C"]["live"] is False
    assert body["variants"]["C"]["weight"] == pytest.approx(0.34)
    assert "event_tracker" not in body


def test_unknown_experiment_is_404_and_bad_parameters_are_400(api):
    call, tables = api
    _load(tables)
    for path in ("/experiments/nope/results", "/experiments/nope"):
        status, body = call(path)
        assert status == 404 and body["error"]["code"] == "not_found" and "nope" in body["error"]["message"]
    for path in ("/experiments/" + "x" * 257, "/experiments/" + "x" * 257 + "/results"):
        status, body = call(path)  # longer than the documented maxLength: 400, not a DynamoDB error
        assert status == 400 and "experimentId" in body["error"]["message"], body
    for query in ({"alpha": "abc"}, {"alpha": "0.9"}, {"analysis": "bayes"}, {"metric": "nope"}):
        status, body = call("/experiments/exp-1/results", query)
        assert status == 400 and body["error"]["code"] == "validation_error", (query, body)
        assert next(iter(query)) == body["error"]["details"][0]["field"], body


def test_configured_experiment_without_record_uses_serving_defaults(api):
    call, _ = api
    status, body = call("/experiments/recs-ab/results")
    assert status == 200
    assert set(body["variants"]) == {"A", "B", "C"} and body["control"] == "A"
    assert body["verdict"]["decision"] == "keep_running"
