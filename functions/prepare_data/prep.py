"""Pure pandas data preparation: raw CSV frames -> Personalize-ready frames + rejected rows.

Raw columns are the schema's field names in lower case (datasets/README.md); extra columns are
kept for the DynamoDB tables (e.g. an item's title) but not sent to Personalize. Every rejected
row keeps its 1-based line number in the raw file and a reason, for the data report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
KINDS = ("interactions", "items", "users")
ID_FIELDS = {"interactions": ("USER_ID", "ITEM_ID"), "items": ("ITEM_ID",), "users": ("USER_ID",)}
MIN_INTERACTIONS = 1000  # Personalize's minimums for training
MIN_USERS_WITH_TWO = 25
EARLIEST = 788918400  # 1995-01-01: older "timestamps" are almost always a unit error
FUTURE_TOLERANCE = 86400  # clocks differ; a day ahead is a bug
MAX_ID_LENGTH = 256
MAX_CATEGORICAL_LENGTH = 1000
STALE_DAYS = 365
MAX_REJECTED_SHARE = 0.5


class DataError(Exception):
    """The data cannot train; the message tells the user what to fix (the execution's cause)."""


@dataclass
class Cleaned:
    frame: pd.DataFrame  # schema columns (upper case) in schema order, plus extras (lower case)
    rejected: pd.DataFrame  # columns: line, reason
    columns: list[str] = field(default_factory=list)  # the Personalize columns


def load_schema(kind: str, directory: Path = SCHEMA_DIR) -> dict:
    return json.loads((directory / f"{kind}.json").read_text())


def schema_fields(schema: dict) -> list[dict]:
    """name, base type and nullability of each field."""
    out = []
    for f in schema["fields"]:
        types = f["type"] if isinstance(f["type"], list) else [f["type"]]
        base = next(t for t in types if t != "null")
        out.append({"name": f["name"], "type": base, "nullable": "null" in types, "categorical": f.get("categorical", False)})  # fmt: skip
    return out


def check_columns(raw: pd.DataFrame, schema: dict, file_name: str) -> None:
    required = [f["name"].lower() for f in schema_fields(schema) if not f["nullable"]]
    missing = [c for c in required if c not in raw.columns]
    if missing:
        expected = ", ".join(f["name"].lower() for f in schema_fields(schema))
        raise DataError(
            f"{file_name} lacks the column(s) {', '.join(missing)} (it has: {', '.join(raw.columns)}). "
            f"Expected header: {expected} (see datasets/README.md)."
        )


def to_epoch_seconds(values: pd.Series) -> pd.Series:
    """Epoch seconds (or milliseconds, detected by size) or ISO-8601 text -> int seconds; NaN if neither."""
    text = values.astype("string").str.strip()
    numeric = pd.to_numeric(text, errors="coerce").astype("float64")
    numeric = numeric.where(numeric < 1e11, numeric / 1000)  # milliseconds
    iso = pd.to_datetime(text.where(numeric.isna()), errors="coerce", utc=True, format="ISO8601")
    from_iso = (iso - pd.Timestamp(0, tz="UTC")).dt.total_seconds().astype("float64")
    return np.floor(numeric.fillna(from_iso))


def clean(raw: pd.DataFrame, kind: str, schema: dict, event_types: list[str], now: float) -> Cleaned:
    """Validate and convert one raw frame (all columns read as strings)."""
    raw = raw.rename(columns=lambda c: str(c).strip().lower())
    check_columns(raw, schema, f"raw/{kind}.csv")
    fields = schema_fields(schema)
    names = [f["name"] for f in fields]
    df = pd.DataFrame(index=raw.index)
    reasons = pd.Series("", index=raw.index, dtype=object)

    def reject(mask: pd.Series, reason: str) -> None:
        mask = mask.fillna(False).astype(bool) & (reasons == "")
        reasons[mask] = reason

    for f in fields:
        col = raw.get(f["name"].lower(), pd.Series(pd.NA, index=raw.index, dtype="string"))
        col = col.astype("string").str.strip().replace("", pd.NA)
        label = f["name"].lower()
        if not f["nullable"]:
            reject(col.isna(), f"missing {label}")
        if f["type"] == "long":
            value = to_epoch_seconds(col)
            reject(col.notna() & value.isna(), f"{label} is neither epoch seconds nor ISO-8601")
            reject((value < EARLIEST) | (value > now + FUTURE_TOLERANCE), f"{label} out of range (before 1995 or in the future)")  # fmt: skip
            df[f["name"]] = value
        elif f["type"] in ("float", "double", "int"):
            value = pd.to_numeric(col, errors="coerce")
            reject(col.notna() & value.isna(), f"{label} is not a number")
            df[f["name"]] = value
        else:
            limit = MAX_CATEGORICAL_LENGTH if f["categorical"] else MAX_ID_LENGTH
            reject(col.str.len() > limit, f"{label} longer than {limit} characters")
            df[f["name"]] = col
    if kind == "interactions":
        allowed = set(event_types)
        reject(~df["EVENT_TYPE"].isin(allowed), f"unknown event_type (allowed: {', '.join(event_types)})")
    extras = [c for c in raw.columns if c.upper() not in names]
    for c in extras:
        df[c] = raw[c]
    ok = reasons == ""
    df, rejected = df[ok].copy(), pd.DataFrame({"line": raw.index[~ok] + 2, "reason": reasons[~ok]})
    df, dups = _drop_duplicates(df, kind, names)
    rejected = pd.concat([rejected, dups], ignore_index=True)
    for f in fields:
        if f["type"] == "long":
            df[f["name"]] = df[f["name"]].astype("int64")
    return Cleaned(df.reset_index(drop=True), rejected.reset_index(drop=True), names)


def _drop_duplicates(df: pd.DataFrame, kind: str, names: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interactions: exact repeats go; items/users: the last row of an id wins (an update)."""
    if kind == "interactions":
        dup = df.duplicated(subset=names, keep="first")
        reason = "duplicate of an earlier row"
    else:
        dup = df.duplicated(subset=list(ID_FIELDS[kind]), keep="last")
        reason = f"{ID_FIELDS[kind][0].lower()} repeated later in the file (the last row wins)"
    return df[~dup], pd.DataFrame({"line": df.index[dup] + 2, "reason": reason})


def preflight(interactions: pd.DataFrame, raw_rows: int, event_types: list[str], now: float) -> list[str]:
    """Raise DataError if Personalize cannot train on this; return warnings otherwise."""
    n = len(interactions)
    if raw_rows and (raw_rows - n) / raw_rows > MAX_REJECTED_SHARE:
        raise DataError(
            f"raw/interactions.csv: {raw_rows - n} of {raw_rows} rows were rejected; "
            "see the data report's rejected rows for the reasons and fix the export."
        )
    if n < MIN_INTERACTIONS:
        raise DataError(
            f"Only {n} valid interactions; Personalize needs at least {MIN_INTERACTIONS}. "
            "Add more interactions to raw/interactions.csv."
        )
    per_user = interactions.groupby("USER_ID").size()
    with_two = int((per_user >= 2).sum())
    if with_two < MIN_USERS_WITH_TWO:
        raise DataError(
            f"Only {with_two} users have 2 or more interactions; Personalize needs at least "
            f"{MIN_USERS_WITH_TWO}. Add interactions for more users."
        )
    warnings = []
    counts = interactions["EVENT_TYPE"].value_counts()
    warnings += [f"no '{t}' events in the data" for t in event_types if counts.get(t, 0) == 0]
    newest = int(interactions["TIMESTAMP"].max())
    if now - newest > STALE_DAYS * 86400:
        days = int((now - newest) // 86400)
        warnings.append(f"the newest interaction is {days} days old: is raw/ the latest export?")
    return warnings


def incremental(interactions: pd.DataFrame, watermark: int | None) -> pd.DataFrame:
    """Only interactions newer than the last import (INCREMENTAL import must not re-add old ones)."""
    return interactions if watermark is None else interactions[interactions["TIMESTAMP"] > watermark]


def popular_items(interactions: pd.DataFrame, limit: int = 100, window_days: int = 30) -> list[str]:
    """Most interacted items over the last window of the data (the serving fallback list)."""
    recent = interactions[interactions["TIMESTAMP"] > interactions["TIMESTAMP"].max() - window_days * 86400]
    counts = recent.groupby("ITEM_ID").size()
    ranked = counts.reset_index(name="n").sort_values(["n", "ITEM_ID"], ascending=[False, True])
    return ranked["ITEM_ID"].head(limit).tolist()


def personalize_csv(cleaned: Cleaned) -> str:
    """The Personalize columns only; categorical lists stay "|"-separated; empty for null."""
    return cleaned.frame[cleaned.columns].to_csv(index=False, lineterminator="\n")


def report_section(kind: str, raw_rows: int, cleaned: Cleaned, max_listed: int = 100) -> dict:
    rejected = cleaned.rejected
    section = {
        "raw_rows": raw_rows,
        "valid_rows": len(cleaned.frame),
        "rejected_rows": len(rejected),
        "rejected_by_reason": {str(k): int(v) for k, v in rejected["reason"].value_counts().items()},
        "rejected_examples": [
            {"line": int(r.line), "reason": r.reason} for r in rejected.head(max_listed).itertuples()
        ],
    }
    if kind == "interactions" and len(cleaned.frame):
        df = cleaned.frame
        section["events_by_type"] = {str(k): int(v) for k, v in df["EVENT_TYPE"].value_counts().items()}
        section["users"] = int(df["USER_ID"].nunique())
        section["items"] = int(df["ITEM_ID"].nunique())
        section["users_with_2_plus"] = int((df.groupby("USER_ID").size() >= 2).sum())
        section["first_timestamp"] = int(df["TIMESTAMP"].min())
        section["last_timestamp"] = int(df["TIMESTAMP"].max())
    return section


def dynamo_items(cleaned: Cleaned, kind: str) -> list[dict]:
    """Rows for the items/users tables: lower-case attributes, genres as a list, no empties."""
    out = []
    for rec in cleaned.frame.to_dict("records"):
        item = {}
        for key, value in rec.items():
            if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
                continue
            key = key.lower()
            if key == "genres":
                value = [g for g in str(value).split("|") if g]
            elif isinstance(value, int | np.integer):
                value = int(value)
            elif isinstance(value, float | np.floating):
                value = float(value)
            else:
                value = str(value)
            if value != "" and value != []:
                item[key] = value
        out.append(item)
    return out
