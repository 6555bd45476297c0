"""Dataset import jobs: read the CSV from S3 with boto3 and validate it against the dataset's Avro
schema the way Personalize does. Every problem becomes an ImportFailed whose message (the job's
failureReason) names the file, the row and the column to fix."""

from __future__ import annotations

import io
import json

import boto3
import pandas as pd

ID_FIELDS = {"USER_ID", "ITEM_ID"}
MAX_ID_LENGTH = 256
MAX_PROBLEMS = 5
NUMERIC = {"int", "long", "float", "double"}
# https://docs.aws.amazon.com/personalize/latest/dg/limits.html (Service quotas, per dataset import job):
# "Minimum number of item interaction records per dataset import job with FULL or INCREMENTAL import mode"
# 1000, and for INCREMENTAL https://docs.aws.amazon.com/personalize/latest/dg/updating-datasets.html: "To
# append data to an Item interactions dataset or Action interactions dataset with a dataset import job, you
# must have at minimum 1000 new item interaction or action interaction records."
MIN_INTERACTION_RECORDS = 1000
# limits.html: "Maximum amount of bulk item interactions data per dataset import job with INCREMENTAL import
# mode" and "... bulk users data ... with INCREMENTAL import mode": 1 GB each.
MAX_INCREMENTAL_BYTES = {"INTERACTIONS": 1 << 30, "USERS": 1 << 30}
REQUIRED_FIELDS = {
    "INTERACTIONS": {"USER_ID", "ITEM_ID", "TIMESTAMP"},
    "ITEMS": {"ITEM_ID"},
    "USERS": {"USER_ID"},
}


class ImportFailed(Exception):
    """The data cannot be imported; the message says what to fix."""


class SchemaError(ValueError):
    """The Avro schema is not one Personalize accepts."""


def parse_schema(text: str) -> list[dict]:
    """Fields of a Personalize Avro schema: [{name, type, nullable}] (CreateSchema validates with this)."""
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"The schema is not valid JSON: {exc}.") from None
    if (
        not isinstance(schema, dict)
        or schema.get("type") != "record"
        or not isinstance(schema.get("fields"), list)
    ):
        raise SchemaError(
            'The schema must be an Avro record: {"type": "record", "name": ..., "fields": [...]}.'
        )
    fields, seen = [], set()
    for index, field in enumerate(schema["fields"]):
        if not isinstance(field, dict) or not isinstance(field.get("name"), str):
            raise SchemaError(f"Field {index} of the schema has no name.")
        types = field.get("type")
        types = types if isinstance(types, list) else [types]
        concrete = [t for t in types if t != "null"]
        if len(concrete) != 1 or concrete[0] not in NUMERIC | {"string", "boolean"}:
            raise SchemaError(
                f"Field {field['name']} has type {field.get('type')!r}; use string, int, long, float, double "
                'or boolean, optionally in a union with "null".'
            )
        name = field["name"].upper()
        if name in seen:
            raise SchemaError(f"Field {field['name']} appears twice in the schema.")
        seen.add(name)
        fields.append({"name": field["name"], "type": concrete[0], "nullable": "null" in types})
    return fields


def check_dataset_schema(fields: list[dict], dataset_type: str) -> None:
    names = {f["name"].upper() for f in fields}
    missing = REQUIRED_FIELDS[dataset_type] - names
    if missing:
        raise SchemaError(f"A {dataset_type} dataset's schema needs the field(s) {sorted(missing)}.")


def read_s3_csv(data_location: str, credentials: dict | None = None) -> list[tuple[str, bytes]]:
    """(name, bytes) of the object at s3://bucket/key, or of every .csv under a prefix ending in /,
    read with `credentials` (the job's role, when the engine knows it)."""
    if not data_location.startswith("s3://") or "/" not in data_location[5:]:
        raise ImportFailed(f"dataLocation {data_location!r} must look like s3://bucket/path/file.csv.")
    bucket, key = data_location[5:].split("/", 1)
    s3 = boto3.client("s3", **(credentials or {}))
    try:
        if key and not key.endswith("/"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return [(data_location, body)]
        keys = [
            obj["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
            for obj in page.get("Contents", [])
            if obj["Key"].lower().endswith(".csv")
        ]
        if not keys:
            raise ImportFailed(f"No .csv files under {data_location}.")
        return [
            (f"s3://{bucket}/{k}", s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in sorted(keys)
        ]
    except ImportFailed:
        raise
    except Exception as exc:  # botocore ClientError, endpoint errors: the reason is what the user needs
        raise ImportFailed(f"Could not read {data_location}: {exc}") from None


def load(
    data_location: str, fields: list[dict], dataset_type: str, mode: str, credentials: dict | None = None
) -> pd.DataFrame:
    files = read_s3_csv(data_location, credentials)
    size, limit = sum(len(body) for _, body in files), MAX_INCREMENTAL_BYTES.get(dataset_type)
    if mode == "INCREMENTAL" and limit is not None and size > limit:
        raise ImportFailed(
            f"{data_location} holds {size} bytes; an INCREMENTAL import into a {dataset_type} dataset takes at "
            f"most {limit} bytes. Import it in parts, or with importMode FULL (all the data)."
        )
    frame = pd.concat([validate_csv(name, body, fields) for name, body in files], ignore_index=True)
    if dataset_type == "INTERACTIONS" and len(frame) < MIN_INTERACTION_RECORDS:
        raise ImportFailed(
            f"{data_location} has {len(frame)} interaction records; an import job into an Item interactions "
            f"dataset needs at least {MIN_INTERACTION_RECORDS} (FULL or INCREMENTAL). Import them once there "
            "are enough, or record them one by one with PutEvents."
        )
    return frame


def validate_csv(name: str, body: bytes, fields: list[dict]) -> pd.DataFrame:
    """The rows as strings in the schema's columns (upper-case names, "" = null), or ImportFailed."""
    try:
        frame = pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False, na_values=[])
    except Exception as exc:
        raise ImportFailed(f"{name} is not a readable CSV file: {exc}") from None
    by_name = {f["name"].upper(): f for f in fields}
    columns = _match_header(name, list(frame.columns), by_name)
    frame.columns = columns
    if frame.empty:
        raise ImportFailed(f"{name} has a header but no rows.")
    problems = []
    for column in columns:
        problems += _column_problems(frame[column], by_name[column])
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        listed = "; ".join(problems[:MAX_PROBLEMS])
        raise ImportFailed(f"{name} does not match the schema: {listed}. Fix these rows and import again.")
    for field in by_name:
        if field not in frame:
            frame[field] = ""
    return frame[list(by_name)]


def _match_header(name: str, header: list[str], by_name: dict) -> list[str]:
    columns = [str(c).strip().upper() for c in header]
    unknown = [h for h, c in zip(header, columns, strict=True) if c not in by_name]
    if unknown:
        raise ImportFailed(
            f"{name}: column(s) {unknown} are not in the dataset's schema (fields {list(by_name)}); "
            "header names must match the schema's field names (case-insensitive)."
        )
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise ImportFailed(f"{name}: column(s) {duplicated} appear more than once in the header.")
    missing = [f for f, spec in by_name.items() if not spec["nullable"] and f not in columns]
    if missing:
        raise ImportFailed(f"{name}: the header lacks the required column(s) {missing} of the schema.")
    return columns


def _column_problems(values: pd.Series, field: dict) -> list[str]:
    problems = []
    column, kind = field["name"].upper(), field["type"]
    empty = values.str.strip() == ""
    if not field["nullable"]:
        problems += _rows(values[empty], column, "is empty but the field is required (not nullable)")
    present = values[~empty]
    if kind in NUMERIC:
        numbers = pd.to_numeric(present, errors="coerce")
        problems += _rows(present[numbers.isna()], column, f"is not a number ({kind})")
        if kind in ("int", "long"):
            fractional = numbers.notna() & (numbers != numbers.round())
            problems += _rows(present[fractional], column, f"is not a whole number ({kind})")
    elif kind == "boolean":
        problems += _rows(present[~present.str.lower().isin(["true", "false"])], column, "is not true/false")
    elif column in ID_FIELDS:
        problems += _rows(
            present[present.str.len() > MAX_ID_LENGTH], column, f"is longer than {MAX_ID_LENGTH}"
        )
    return problems


def _rows(bad: pd.Series, column: str, what: str) -> list[str]:
    # Line numbers of the file: the header is line 1, so data row i (from 0) is line i + 2.
    return [f"line {i + 2}, column {column}: {v[:40]!r} {what}" for i, v in bad.head(MAX_PROBLEMS).items()]
