"""Pipeline step: the quality gate for one variant's new solution version.

Input (from the state machine): {"variant": {"name", "isPopularity"}, "solutionVersionArn",
"metrics", "baselineMetrics", "overrides": {"metric", "margin"} (optional, from the execution input)}.
Reads the live version's metrics and promotion time from the experiment record. Output: the
decision (gate.Decision), the model age after this decision, and the metrics as a DynamoDB map.

Also the other promotion decision, rollback: {"rollback": {"variant": "B"}} returns the previous
promoted version of the variant (from its history), or fails with a cause that says why not.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import gate
from aws_lambda_powertools import Logger

logger = Logger()


def _plain(x):
    if isinstance(x, Decimal):
        return float(x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


def live_variant(variant: str) -> dict:
    table = boto3.resource("dynamodb").Table(os.environ["EXPERIMENTS_TABLE"])
    record = table.get_item(Key={"experiment_id": os.environ.get("EXPERIMENT_ID", "recs-ab")}, ConsistentRead=True)  # fmt: skip
    live = record.get("Item", {}).get("variants", {}).get(variant)
    return _plain(live) if live else {}


def rollback_target(request: dict) -> dict:
    name = str((request or {}).get("variant") or "")
    live = live_variant(name)
    if not live:
        raise gate.RollbackError(f"rollback: variant {name!r} does not exist in experiment {os.environ.get('EXPERIMENT_ID', 'recs-ab')}; input must be like {{\"rollback\": {{\"variant\": \"B\"}}}}.")  # fmt: skip
    target = gate.previous_version(name, live.get("solution_version_arn"), live.get("history", []))
    metrics = target.pop("metrics")
    return {**target, "metricsItem": gate.dynamo_map(metrics)}


def hours_since(iso: str | None, now: datetime) -> float:
    if not iso:
        return 0.0
    return round((now - datetime.fromisoformat(iso.replace("Z", "+00:00"))).total_seconds() / 3600, 3)


def lambda_handler(event: dict, context) -> dict:
    if "rollback" in event:
        return rollback_target(event["rollback"])
    overrides = event.get("overrides") or {}
    metric = str(overrides.get("metric") or os.environ.get("QUALITY_GATE_METRIC", "normalized_discounted_cumulative_gain_at_10"))  # fmt: skip
    margin = float(overrides.get("margin", os.environ.get("QUALITY_GATE_MARGIN", "0")))
    variant = event["variant"]
    live = live_variant(variant["name"])
    decision = gate.decide(
        metric,
        margin,
        event["metrics"],
        live.get("metrics") if live.get("solution_version_arn") else None,
        event.get("baselineMetrics"),
        bool(variant.get("isPopularity")),
        same_version=live.get("solution_version_arn") == event["solutionVersionArn"],
    )
    live_age = hours_since(live.get("promoted_at"), datetime.now(UTC))
    logger.info("quality gate", extra={"variant": variant["name"], **decision.as_dict()})
    return {
        **decision.as_dict(),
        "liveSolutionVersionArn": live.get("solution_version_arn"),
        "modelAgeHours": 0.0 if decision.promote else live_age,
        "metricsItem": gate.dynamo_map(event["metrics"]),
    }
