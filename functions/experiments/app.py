"""GET /experiments/{experimentId} (config) and GET /experiments/{experimentId}/results (analysis).

The config comes from the experiments table; results are computed from the aggregates table
(one Query per experiment, no raw events). scipy/numpy load only when results are asked for,
so the config route stays as light as the serving Lambdas. Routes, parameter limits and the
error shape are the other functions' (recsys_common: contract, http, ddb, config).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from recsys_common import aggregates, config, contract, ddb, http

logger = Logger()
tracer = Tracer()
app = APIGatewayHttpResolver()
# Routes, parameter limits and defaults are docs/openapi.yaml's (recsys_common.contract).
http.install(app, contract.routes("experiments"))
CONFIG_PARAMS = contract.parameters("getExperiment")
RESULTS_PARAMS = contract.parameters("getExperimentResults")

# Fields of the experiment record that are internal plumbing, not part of the public config.
PRIVATE_FIELDS = {"event_tracker", "fallback_item_ids", "filters", "dataset_group_arn"}


def load_config(experiment_id: str) -> dict:
    """The experiment record, or the serving defaults for the configured experiment id."""
    record = ddb.get_item("EXPERIMENTS_TABLE", {"experiment_id": experiment_id})
    if record:
        record.setdefault("variants", {})
        record.setdefault("control", next(iter(record["variants"]), "A"))
        record["source"] = "experiments_table"
        return record
    if experiment_id != config.default_experiment_id():
        raise http.ApiError(404, "not_found", f"experiment '{experiment_id}' does not exist")
    defaults = config.defaults(experiment_id)  # what serving runs on before the pipeline's first record
    return {
        "experiment_id": experiment_id,
        "status": defaults.status,
        "control": defaults.control,
        "variants": {n: {"weight": w} for n, w in zip(defaults.names, defaults.weights, strict=True)},
        "source": "defaults",
    }


def _weights(record: dict) -> dict[str, float]:
    raw = {name: float(v.get("weight", 0) or 0) for name, v in record["variants"].items()}
    total = sum(raw.values())
    return {k: (w / total if total else 0.0) for k, w in raw.items()}


@contract.route(app, "getExperiment")
@tracer.capture_method
def get_experiment(experimentId: str):
    CONFIG_PARAMS.read({"experimentId": experimentId}, app.current_event.get_query_string_value)
    record = load_config(experimentId)
    weights = _weights(record)
    out = {k: v for k, v in record.items() if k not in PRIVATE_FIELDS}
    out["variants"] = {
        name: {**v, "weight": weights[name], "live": bool(v.get("campaign_arn"))}
        for name, v in record["variants"].items()
    }
    return out


def _aggregate_items(experiment_id: str) -> list[dict]:
    """The experiment's counter items (one Query, paginated): keys and numeric counters only
    (writers may add timestamps)."""
    return [
        {k: v for k, v in item.items() if k in ("experiment_id", "slice") or _counter(v)}
        for item in ddb.query_partition("AGGREGATES_TABLE", "experiment_id", experiment_id)
    ]


def _counter(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@contract.route(app, "getExperimentResults")
@tracer.capture_method
def get_results(experimentId: str):
    from abtest import AnalysisOptions, analyze  # lazy: scipy/numpy only on this route
    from abtest.analysis import default_metric, metric_specs

    q = RESULTS_PARAMS.read({"experimentId": experimentId}, app.current_event.get_query_string_value)
    record = load_config(experimentId)
    event_types = config.event_types()
    metrics = [s.name for s in metric_specs(event_types)]
    metric = q["metric"] or default_metric(event_types)
    if metric not in metrics:  # the metrics follow the stack's event types: no schema can list them
        problem = f"must be one of {', '.join(metrics)}, got '{metric}'"
        raise http.bad_request(
            f"query parameter 'metric' {problem}", [{"field": "metric", "problem": problem}]
        )
    opts = AnalysisOptions(
        alpha=q["alpha"], analysis=q["analysis"], metric=metric, mde=q["mde"], tau=q["tau"],
        correction=q["correction"],
    )  # fmt: skip
    totals = aggregates.variant_totals(_aggregate_items(experimentId))
    control = record.get("control") or next(iter(record["variants"]))
    result = analyze(totals, {"control": control, "weights": _weights(record)}, event_types, opts)
    logger.info("results", extra={"experiment_id": experimentId, "verdict": result["verdict"]["decision"]})
    return {"experiment_id": experimentId, "status": record.get("status", "RUNNING"), **result}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event, context):
    return app.resolve(event, context)
