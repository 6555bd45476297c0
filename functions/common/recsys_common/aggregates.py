"""Sufficient statistics per experiment x variant, kept as atomic DynamoDB counters.

Writers (the events and recommendations Lambdas) turn a change in one user's totals into
counter deltas; readers (experiment analysis) turn the counters back into per-variant stats.
Naming is fixed in docs/architecture.md ("Aggregates").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import combinations

ALL = "ALL"
VALUE = "value"


def slice_key(variant: str, day: str = ALL) -> str:
    """Range key of a slice: '<variant>#ALL' or '<variant>#YYYY-MM-DD'."""
    return f"{variant}#{day}"


def parse_slice(key: str) -> tuple[str, str]:
    variant, _, day = key.rpartition("#")
    return variant, day


def metric_names(event_types: Iterable[str]) -> list[str]:
    """Per-user metrics: one count per event type, plus the summed event value."""
    return sorted({*event_types, VALUE})


def metric_deltas(
    old: Mapping[str, float], new: Mapping[str, float], metrics: Iterable[str]
) -> dict[str, float]:
    """Counter deltas for one user whose totals moved from `old` to `new`.

    Squares and cross products are updated by difference, so sums over users stay exact
    without ever reading raw events.
    """
    metrics = sorted(metrics)
    o = {m: float(old.get(m, 0) or 0) for m in metrics}
    n = {m: float(new.get(m, 0) or 0) for m in metrics}
    deltas: dict[str, float] = {}
    for m in metrics:
        if n[m] == o[m]:
            continue
        deltas[f"sum_{m}"] = n[m] - o[m]
        deltas[f"sumsq_{m}"] = n[m] ** 2 - o[m] ** 2
        if o[m] == 0 and n[m] > 0:
            deltas[f"users_{m}"] = 1
    for a, b in combinations(metrics, 2):
        d = n[a] * n[b] - o[a] * o[b]
        if d:
            deltas[f"sumxy_{a}__{b}"] = d
    return deltas


def add_expression(deltas: Mapping[str, float]) -> tuple[str, dict[str, str], dict[str, float]]:
    """An UpdateExpression 'ADD #a :a, ...' with its names and (un-serialised) values."""
    names, values, parts = {}, {}, []
    for i, (attr, delta) in enumerate(sorted(deltas.items())):
        names[f"#a{i}"] = attr
        values[f":a{i}"] = delta
        parts.append(f"#a{i} :a{i}")
    return "ADD " + ", ".join(parts), names, values


def variant_totals(items: Iterable[Mapping]) -> dict[str, dict]:
    """Group raw aggregate items into {variant: {"all": counters, "days": {day: counters}}}."""
    out: dict[str, dict] = {}
    for item in items:
        variant, day = parse_slice(item["slice"])
        counters = {k: float(v) for k, v in item.items() if k not in ("experiment_id", "slice")}
        entry = out.setdefault(variant, {"all": {}, "days": {}})
        if day == ALL:
            entry["all"] = counters
        else:
            entry["days"][day] = counters
    return out


# --- Write path (serving Lambdas): low-level TransactWriteItems operations ---------------------


def number(x: float) -> dict[str, str]:
    """A DynamoDB N attribute value; integers stay integral so counters read back exact."""
    x = float(x)
    return {"N": str(int(x)) if x.is_integer() else repr(x)}


def day_of(epoch_seconds: float) -> str:
    """UTC day 'YYYY-MM-DD' of the slice an update lands in."""
    import time

    return time.strftime("%Y-%m-%d", time.gmtime(epoch_seconds))


def slice_updates(
    table: str, experiment_id: str, variant: str, deltas: Mapping[str, float], day: str
) -> list[dict]:
    """Two Update operations (the '<variant>#ALL' slice and the day slice) that ADD `deltas`.

    Put them in the same TransactWriteItems as the change they count, so each change is
    counted exactly once: both slices move together with it, or nothing moves.
    """
    deltas = {k: v for k, v in deltas.items() if v}
    if not deltas:
        return []
    expression, names, values = add_expression(deltas)
    ops = []
    for key in (slice_key(variant), slice_key(variant, day)):
        ops.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": {"experiment_id": {"S": experiment_id}, "slice": {"S": key}},
                    "UpdateExpression": expression,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": {k: number(v) for k, v in values.items()},
                }
            }
        )
    return ops
