"""Sufficient statistics per experiment x variant, kept as atomic DynamoDB counters.

The aggregator (functions/aggregator) turns a change in one user's totals into counter deltas
and ADDs them to one of AGGREGATE_SHARDS copies of each slice; readers (experiment analysis) sum
the shards and turn the counters back into per-variant stats. Naming is fixed in
docs/architecture.md ("Aggregates").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from itertools import combinations

ALL = "ALL"
VALUE = "value"


# '<variant>#ALL' or '<variant>#YYYY-MM-DD', then '#<shard>' (items written before sharding have none)
_SLICE = re.compile(r"^(?P<variant>.+)#(?P<day>ALL|\d{4}-\d{2}-\d{2})(?:#(?P<shard>\d{1,4}))?$")


def slice_key(variant: str, day: str = ALL, shard: int | None = None) -> str:
    """Range key of a slice: '<variant>#ALL' or '<variant>#YYYY-MM-DD', with '#NN' for a shard."""
    return f"{variant}#{day}" if shard is None else f"{variant}#{day}#{shard:02d}"


def parse_slice(key: str) -> tuple[str, str] | None:
    """(variant, day) of a slice key of any shard; None for an item that is not a slice."""
    m = _SLICE.match(key)
    return (m["variant"], m["day"]) if m else None


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
    """Sum raw aggregate items (every shard of a slice) into
    {variant: {"all": counters, "days": {day: counters}}}."""
    out: dict[str, dict] = {}
    for item in items:
        parsed = parse_slice(item["slice"])
        if parsed is None:
            continue
        variant, day = parsed
        entry = out.setdefault(variant, {"all": {}, "days": {}})
        target = entry["all"] if day == ALL else entry["days"].setdefault(day, {})
        for k, v in item.items():
            if k not in ("experiment_id", "slice"):
                target[k] = target.get(k, 0.0) + float(v)
    return out


def number(x: float) -> dict[str, str]:
    """A DynamoDB N attribute value; integers stay integral so counters read back exact."""
    x = float(x)
    return {"N": str(int(x)) if x.is_integer() else repr(x)}
