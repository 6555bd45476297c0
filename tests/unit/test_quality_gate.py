"""Quality gate and rollback target: the pure rule, then the Lambda against moto's DynamoDB."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tests.support import load_module, on_sys_path

FUNC = Path(__file__).resolve().parents[2] / "functions" / "quality_gate"
M = "normalized_discounted_cumulative_gain_at_10"


gate = load_module("gate", FUNC / "gate.py")


@pytest.mark.parametrize(
    ("new", "live", "base", "popularity", "margin", "outcome"),
    [
        (0.30, None, 0.10, False, 0.0, "promote"),  # first version, beats popularity
        (0.05, None, 0.10, False, 0.0, "rejected"),  # below the popularity baseline
        (0.09, None, 0.10, False, 0.02, "promote"),  # within the margin
        (0.25, 0.30, 0.10, False, 0.0, "rejected"),  # regression against the live version
        (0.29, 0.30, 0.10, False, 0.02, "promote"),
        (0.05, None, 0.10, True, 0.0, "promote"),  # a popularity recipe is not compared with itself
    ],
)
def test_decide(new, live, base, popularity, margin, outcome):
    d = gate.decide(M, margin, {M: new}, {M: live} if live is not None else None, {M: base}, popularity)
    assert d.outcome == outcome and d.promote == (outcome == "promote")
    if outcome == "rejected":
        assert ("baseline" in d.reason) == (new < base - margin)


def test_same_version_is_unchanged_and_unknown_metric_is_a_config_error():
    assert gate.decide(M, 0, {M: 0.3}, {M: 0.3}, {M: 0.1}, False, same_version=True).outcome == "unchanged"
    with pytest.raises(gate.GateConfigError, match=r"not among the solution metrics.*precision_at_5"):
        gate.decide("ndcg", 0, {"precision_at_5": 0.1}, None, None, False)


def test_dynamo_map_and_previous_version():
    assert gate.dynamo_map({"b": 1, "a": 0.25}) == {"M": {"a": {"N": "0.25"}, "b": {"N": "1.0"}}}
    history = [
        {"solution_version_arn": "sv1", "campaign_arn": "c", "metrics": {M: 0.2}},
        {"solution_version_arn": "sv2", "campaign_arn": "c", "metrics": {M: 0.3}},
    ]
    target = gate.previous_version("B", "sv2", history)
    assert target == {"variant": "B", "campaignArn": "c", "solutionVersionArn": "sv1",
                      "fromSolutionVersionArn": "sv2", "removeIndex": 1, "metrics": {M: 0.2}}  # fmt: skip
    with pytest.raises(gate.RollbackError, match="no earlier one"):
        gate.previous_version("B", "sv1", history[:1])
    with pytest.raises(gate.RollbackError, match="not the last one"):
        gate.previous_version("B", "sv1", history)


@pytest.fixture
def app(monkeypatch):
    for k, v in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
                 "EXPERIMENTS_TABLE": "experiments", "EXPERIMENT_ID": "recs-ab", "QUALITY_GATE_METRIC": M,
                 "QUALITY_GATE_MARGIN": "0.0"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    with mock_aws():
        boto3.client("dynamodb").create_table(
            TableName="experiments",
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "experiment_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "experiment_id", "AttributeType": "S"}],
        )
        with on_sys_path(FUNC):
            yield (
                load_module("quality_gate_app", FUNC / "app.py"),
                boto3.resource("dynamodb").Table("experiments"),
            )


def test_handler_compares_with_the_live_version_in_the_record(app):
    handler, table = app
    event = {"variant": {"name": "B", "isPopularity": False}, "solutionVersionArn": "sv2",
             "metrics": {M: 0.25}, "baselineMetrics": {M: 0.1}}  # fmt: skip
    first = handler.lambda_handler(event, None)
    assert first["outcome"] == "promote" and first["modelAgeHours"] == 0.0
    assert first["metricsItem"] == {"M": {M: {"N": "0.25"}}}
    table.put_item(Item={"experiment_id": "recs-ab", "variants": {"B": {
        "solution_version_arn": "sv1", "metrics": {M: Decimal("0.3")}, "promoted_at": "2026-11-20T00:00:00Z"}}})  # fmt: skip
    rejected = handler.lambda_handler(event, None)
    assert rejected["outcome"] == "rejected" and rejected["live"] == 0.3
    assert rejected["modelAgeHours"] > 24  # the live model keeps ageing
    assert handler.lambda_handler({**event, "overrides": {"margin": 0.1}}, None)["outcome"] == "promote"


def test_handler_rollback_target(app):
    handler, table = app
    with pytest.raises(gate.RollbackError, match="does not exist"):
        handler.lambda_handler({"rollback": {"variant": "Z"}}, None)
    history = [
        {"solution_version_arn": f"sv{i}", "campaign_arn": "c", "metrics": {M: Decimal("0.2")}}
        for i in (1, 2)
    ]
    table.put_item(Item={"experiment_id": "recs-ab", "variants": {"B": {"solution_version_arn": "sv2", "history": history}}})  # fmt: skip
    target = handler.lambda_handler({"rollback": {"variant": "B"}}, None)
    assert target["solutionVersionArn"] == "sv1" and target["removeIndex"] == 1
    assert target["metricsItem"] == {"M": {M: {"N": "0.2"}}} and "metrics" not in target
