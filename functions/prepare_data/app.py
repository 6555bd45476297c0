"""Pipeline step 1: raw/ CSVs -> validated, Personalize-ready training/ CSVs + a data report.

Also loads the items and users tables, writes the serving fallback list and creates the
experiment record (variants, weights, recipes) if it is missing. Bad data raises DataError, whose
message becomes the execution's cause: it says what to fix. Input (from the state machine):
{"runId", "trainingMode": FULL|UPDATE, "importMode": FULL|INCREMENTAL, "variants": [names] | null}.
"""

from __future__ import annotations

import io
import json
import os
import time
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pandas as pd
import plan
import prep
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

logger = Logger()
DataError = prep.DataError  # its class name is the Step Functions error name


def _env_list(name: str, default: str) -> list[str]:
    return [s.strip() for s in os.environ.get(name, default).split(",") if s.strip()]


def _decimal(x):
    if isinstance(x, float):
        return Decimal(str(x))
    if isinstance(x, dict):
        return {k: _decimal(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_decimal(v) for v in x]
    return x


def read_raw(s3, bucket: str, kind: str) -> pd.DataFrame | None:
    key = f"{os.environ.get('RAW_PREFIX', 'raw/')}{kind}.csv"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise
    try:
        return pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"s3://{bucket}/{key} is not a readable CSV file ({exc}); export it as UTF-8 CSV.") from None  # fmt: skip


def init_experiment(table, experiment_id: str, fallback: list[str], now: str) -> dict:
    """Create the record if missing, add variants that are new, refresh the fallback list."""
    names = _env_list("VARIANT_NAMES", "A,B,C")
    weights = [Decimal(w) for w in _env_list("VARIANT_WEIGHTS", "33,33,34")]
    recipes = _env_list("VARIANT_RECIPES", "aws-user-personalization")
    recipes = recipes * len(names) if len(recipes) == 1 else recipes
    if len(weights) != len(names):
        raise DataError(f"VARIANT_WEIGHTS has {len(weights)} weights for {len(names)} variants ({names}).")
    record = {
        "experiment_id": experiment_id,
        "seed": experiment_id,
        "phase": 1,
        "coverage": Decimal(1),
        "status": "RUNNING",
        "control": names[0],
        "variants": {},
        "updated_at": now,
    }
    try:
        table.put_item(Item=record, ConditionExpression="attribute_not_exists(experiment_id)")
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
    for name, weight, recipe in zip(names, weights, recipes, strict=True):
        table.update_item(
            Key={"experiment_id": experiment_id},
            UpdateExpression="SET variants.#v = if_not_exists(variants.#v, :v)",
            ExpressionAttributeNames={"#v": name},
            ExpressionAttributeValues={":v": {"weight": weight, "recipe": recipe, "history": []}},
        )
    table.update_item(
        Key={"experiment_id": experiment_id},
        UpdateExpression="SET fallback_item_ids = :f, updated_at = :t, filters = if_not_exists(filters, :e)",
        ExpressionAttributeValues={":f": fallback, ":t": now, ":e": {}},
    )
    return table.get_item(Key={"experiment_id": experiment_id}, ConsistentRead=True)["Item"]


def load_table(table_name: str, kind: str, cleaned: prep.Cleaned) -> int:
    key = prep.ID_FIELDS[kind][0].lower()
    rows = prep.dynamo_items(cleaned, kind)
    with boto3.resource("dynamodb").Table(table_name).batch_writer(overwrite_by_pkeys=[key]) as batch:
        for row in rows:
            batch.put_item(Item=_decimal(row))
    return len(rows)


def lambda_handler(event: dict, context) -> dict:
    now = time.time()
    bucket = os.environ["DATA_BUCKET"]
    run_id = str(event.get("runId") or datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))
    training_mode = str(event.get("trainingMode") or "FULL").upper()
    import_mode = str(event.get("importMode") or "FULL").upper()
    if training_mode not in ("FULL", "UPDATE") or import_mode not in ("FULL", "INCREMENTAL"):
        raise DataError(f"trainingMode must be FULL or UPDATE and importMode FULL or INCREMENTAL; got {training_mode}/{import_mode}.")  # fmt: skip
    event_types = _env_list("EVENT_TYPES", "view,click,purchase")
    experiment_id = os.environ.get("EXPERIMENT_ID", "recs-ab")
    s3 = boto3.client("s3")
    experiments = boto3.resource("dynamodb").Table(os.environ["EXPERIMENTS_TABLE"])
    existing = experiments.get_item(Key={"experiment_id": experiment_id}, ConsistentRead=True).get("Item")

    cleaned, raw_rows, report = {}, {}, {"run_id": run_id, "bucket": bucket, "generated_at": datetime.now(UTC).isoformat()}  # fmt: skip
    for kind in prep.KINDS:
        raw = read_raw(s3, bucket, kind)
        if raw is None:
            if kind == "interactions":
                raise DataError(f"s3://{bucket}/raw/interactions.csv does not exist: upload your interactions there (see datasets/README.md).")  # fmt: skip
            continue
        raw_rows[kind] = len(raw)
        cleaned[kind] = prep.clean(raw, kind, prep.load_schema(kind), event_types, now)
        report[kind] = prep.report_section(kind, len(raw), cleaned[kind])
    report_key = f"reports/{run_id}/data-report.json"
    try:
        report["warnings"] = prep.preflight(
            cleaned["interactions"].frame, raw_rows["interactions"], event_types, now
        )
    except DataError as exc:
        report["error"] = str(exc)
        _put_json(s3, bucket, report_key, report)
        raise DataError(f"{exc} Data report: s3://{bucket}/{report_key}") from None

    watermark = int(existing["interactions_watermark"]) if existing and existing.get("interactions_watermark") else None  # fmt: skip
    datasets = {kind: _training_file(s3, bucket, run_id, kind, data, import_mode, watermark) for kind, data in cleaned.items()}  # fmt: skip
    for kind in prep.KINDS:
        datasets.setdefault(kind, {"present": False, "rows": 0, "importMode": "NONE", "schema": json.dumps(prep.load_schema(kind))})  # fmt: skip
    skipped = datasets["interactions"]["importMode"] == "NONE"
    if skipped:
        report["warnings"].append(
            f"{datasets['interactions']['newRows']} new interactions were not imported: an INCREMENTAL import needs at "
            f"least {plan.MIN_INCREMENTAL_INTERACTIONS} (Personalize). They go with the next import."
        )

    for kind, env in (("items", "ITEMS_TABLE"), ("users", "USERS_TABLE")):
        if kind in cleaned and os.environ.get(env):
            report[kind]["loaded_into_table"] = load_table(os.environ[env], kind, cleaned[kind])
    stamp = datetime.now(UTC).isoformat()
    record = init_experiment(
        experiments, experiment_id, prep.popular_items(cleaned["interactions"].frame), stamp
    )
    output = make_plan(run_id, training_mode, event.get("variants"), record, datasets)
    report["variants"] = output["variants"]
    _put_json(s3, bucket, report_key, report)
    logger.info(
        "data prepared", extra={"run_id": run_id, "rows": {k: v["rows"] for k, v in datasets.items()}}
    )
    return {
        **output,
        "runId": run_id,
        "experimentId": experiment_id,
        "newWatermark": watermark if skipped else int(cleaned["interactions"].frame["TIMESTAMP"].max()),
        "reportUri": f"s3://{bucket}/{report_key}",
        "warnings": report["warnings"],
    }


def make_plan(run_id: str, training_mode: str, wanted, record: dict, datasets: dict) -> dict:
    """Everything the state machine creates or trains, by name (see plan.py)."""
    prefix = os.environ.get("PROJECT_PREFIX", "personalize-ab-dev")
    try:
        variants = plan.variants(
            prefix,
            _env_list("VARIANT_NAMES", "A,B,C"),
            _env_list("VARIANT_RECIPES", "aws-user-personalization"),
            record,
            wanted,
            training_mode,
        )
        similar = os.environ.get("SIMILAR_ITEMS_RECIPE", "aws-similar-items")
        return {
            "prefix": prefix,
            "datasetGroupName": prefix,
            "eventTrackerName": f"{prefix}-tracker",
            "datasets": plan.datasets(prefix, run_id, datasets),
            "variants": variants,
            "baseline": plan.solution(prefix, "baseline", plan.BASELINE_RECIPE, "FULL", campaign=False),
            "similarItems": plan.solution(prefix, "similar", similar, "FULL", campaign=True),
            "filters": plan.filters(prefix),
        }
    except plan.PlanError as exc:
        raise DataError(str(exc)) from None


def _training_file(
    s3, bucket: str, run_id: str, kind: str, data: prep.Cleaned, requested: str, watermark: int | None
) -> dict:
    """Write training/<run>/<kind>.csv (and the new interactions beside it for an INCREMENTAL
    import); return the dataset's import plan (plan.import_mode decides the mode)."""
    body = prep.personalize_csv(data).encode()
    full = _put_csv(s3, bucket, f"training/{run_id}/{kind}.csv", body)
    new, new_body = data, body
    if kind == "interactions" and watermark is not None:
        new = prep.Cleaned(prep.incremental(data.frame, watermark), data.rejected, data.columns)
        new_body = prep.personalize_csv(new).encode()
    mode = plan.import_mode(requested, kind, len(new.frame), watermark is not None, len(new_body))
    uri = full
    if mode == "INCREMENTAL" and new is not data:
        uri = _put_csv(s3, bucket, f"training/{run_id}/{kind}-new.csv", new_body)
    return {
        "present": len(data.frame) > 0,
        "importMode": mode,
        "s3Uri": uri,
        "fullS3Uri": full,
        "rows": {"FULL": len(data.frame), "INCREMENTAL": len(new.frame), "NONE": 0}[mode],
        "newRows": len(new.frame),
        "schema": json.dumps(prep.load_schema(kind)),
    }


def _put_csv(s3, bucket: str, key: str, body: bytes) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/csv")
    return f"s3://{bucket}/{key}"


def _put_json(s3, bucket: str, key: str, body: dict) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body, indent=2, default=str).encode(), ContentType="application/json")  # fmt: skip
