"""GET /experiments/{experimentId} (config) and GET /experiments/{experimentId}/results (analysis).

The config comes from the experiments table; results are computed from the aggregates table
(one Query per experiment, no raw events). scipy/numpy load only when results are asked for,
so the config route stays as light as the serving Lambdas.
"""

from __future__ import annotations

import os
from decimal import Decimal
from functools import cache

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, NotFoundError
from aws_lambda_powertools.logging import correlation_paths
from boto3.dynamodb.conditions import Key
from recsys_common import aggregates

logger = Logger()
tracer = Tracer()
app = APIGatewayHttpResolver()

# Fields of the experiment record that are internal plumbing, not part of the public config.
PRIVATE_FIELDS = {"event_tracker", "fallback_item_ids", "filters", "dataset_group_arn"}


@cache
def _table(env_var: str):
    return boto3.resource("dynamodb").Table(os.environ[env_var])


def _plain(x):
    """DynamoDB Decimals to int/float, recursively."""
    if isinstance(x, Decimal):
        return int(x) if x == x.to_integral_value() else float(x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | set):
        return [_plain(v) for v in x]
    return x


def _env_list(name: str, default: str) -> list[str]:
    return [s.strip() for s in os.environ.get(name, default).split(",") if s.strip()]


def load_config(experiment_id: str) -> dict:
    """The experiment record, or the serving defaults for the configured experiment id."""
    item = _table("EXPERIMENTS_TABLE").get_item(Key={"experiment_id": experiment_id}).get("Item")
    if item:
        record = _plain(item)
        record.setdefault("variants", {})
        record.setdefault("control", next(iter(record["variants"]), "A"))
        record["source"] = "experiments_table"
        return record
    if experiment_id != os.environ.get("EXPERIMENT_ID", "recs-ab"):
        raise NotFoundError(f"experiment '{experiment_id}' does not exist")
    names = _env_list("VARIANT_NAMES", "A,B,C")
    weights = [float(w) for w in _env_list("VARIANT_WEIGHTS", "33,33,34")]
    if len(weights) != len(names):
        raise ValueError("VARIANT_NAMES and VARIANT_WEIGHTS must have the same length")
    return {
        "experiment_id": experiment_id,
        "status": "RUNNING",
        "control": names[0],
        "variants": {n: {"weight": w} for n, w in zip(names, weights, strict=True)},
        "source": "defaults",
    }


MAX_ID = 256  # docs/openapi.yaml, parameter ExperimentId


def _checked_id(experiment_id: str) -> str:
    """400 for an id no experiment can have (also keeps over-long keys away from DynamoDB)."""
    if not 1 <= len(experiment_id) <= MAX_ID:
        raise BadRequestError(f"path parameter 'experimentId' must be 1 to {MAX_ID} characters")
    return experiment_id


def _weights(config: dict) -> dict[str, float]:
    raw = {name: float(v.get("weight", 0) or 0) for name, v in config["variants"].items()}
    total = sum(raw.values())
    return {k: (w / total if total else 0.0) for k, w in raw.items()}


@app.get("/experiments/<experimentId>")
@tracer.capture_method
def get_experiment(experimentId: str):
    config = load_config(_checked_id(experimentId))
    weights = _weights(config)
    out = {k: v for k, v in config.items() if k not in PRIVATE_FIELDS}
    out["variants"] = {
        name: {**v, "weight": weights[name], "live": bool(v.get("campaign_arn"))}
        for name, v in config["variants"].items()
    }
    return out


def _aggregate_items(experiment_id: str) -> list[dict]:
    table, items, kwargs = _table("AGGREGATES_TABLE"), [], {}
    while True:
        page = table.query(KeyConditionExpression=Key("experiment_id").eq(experiment_id), **kwargs)
        for it in page["Items"]:
            # keep the keys and numeric counters only (writers may add timestamps)
            items.append(
                {k: v for k, v in it.items() if k in ("experiment_id", "slice") or isinstance(v, Decimal)}
            )
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _float_param(name: str, default: float, low: float, high: float) -> float:
    raw = app.current_event.get_query_string_value(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequestError(f"query parameter '{name}' must be a number, got '{raw}'") from None
    if not low < value < high:
        raise BadRequestError(f"query parameter '{name}' must be in ({low}, {high}), got {value}")
    return value


def _choice_param(name: str, choices, default):
    raw = app.current_event.get_query_string_value(name)
    if raw is None:
        return default
    if raw not in choices:
        raise BadRequestError(f"query parameter '{name}' must be one of {', '.join(choices)}, got '{raw}'")
    return raw


@app.get("/experiments/<experimentId>/results")
@tracer.capture_method
def get_results(experimentId: str):
    from abtest import AnalysisOptions, analyze  # lazy: scipy/numpy only on this route
    from abtest.analysis import ANALYSES, CORRECTIONS, default_metric, metric_specs

    config = load_config(_checked_id(experimentId))
    event_types = _env_list("EVENT_TYPES", "view,click,purchase")
    metrics = [s.name for s in metric_specs(event_types)]
    opts = AnalysisOptions(
        alpha=_float_param("alpha", 0.05, 0.0, 0.5),
        analysis=_choice_param("analysis", ANALYSES, "sequential"),
        metric=_choice_param("metric", metrics, default_metric(event_types)),
        mde=_float_param("mde", 0.05, 0.0, 10.0),
        tau=_float_param("tau", 0.1, 0.0, 100.0),
        correction=_choice_param("correction", CORRECTIONS, "holm"),
    )
    totals = aggregates.variant_totals(_aggregate_items(experimentId))
    control = config.get("control") or next(iter(config["variants"]))
    result = analyze(totals, {"control": control, "weights": _weights(config)}, event_types, opts)
    logger.info("results", extra={"experiment_id": experimentId, "verdict": result["verdict"]["decision"]})
    return {"experiment_id": experimentId, "status": config.get("status", "RUNNING"), **result}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    return app.resolve(event, context)
