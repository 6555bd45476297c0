"""The aggregate counters must reproduce per-user sufficient statistics exactly."""

import random
from itertools import combinations

from recsys_common import aggregates


def test_deltas_telescope_to_exact_sums_over_users():
    rng = random.Random(7)
    metrics = aggregates.metric_names(["click", "purchase"])
    users: dict[str, dict[str, float]] = {}
    counters: dict[str, float] = {}
    for _ in range(2000):
        uid = f"u{rng.randrange(60)}"
        old = users.get(uid, {})
        new = dict(old)
        kind = rng.choice(["click", "purchase"])
        new[kind] = new.get(kind, 0) + 1
        if kind == "purchase":
            new["value"] = new.get("value", 0) + rng.choice([4.5, 10.0, 19.99])
        users[uid] = new
        for k, d in aggregates.metric_deltas(old, new, metrics).items():
            counters[k] = counters.get(k, 0) + d

    for m in metrics:
        xs = [u.get(m, 0) for u in users.values()]
        assert abs(counters[f"sum_{m}"] - sum(xs)) < 1e-6
        assert abs(counters[f"sumsq_{m}"] - sum(x * x for x in xs)) < 1e-6
        assert counters[f"users_{m}"] == sum(1 for x in xs if x > 0)
    for a, b in combinations(metrics, 2):
        expected = sum(u.get(a, 0) * u.get(b, 0) for u in users.values())
        assert abs(counters[f"sumxy_{a}__{b}"] - expected) < 1e-6


def test_unchanged_metrics_produce_no_counters():
    assert aggregates.metric_deltas({"click": 2}, {"click": 2}, ["click", "value"]) == {}


def test_add_expression_and_slices_roundtrip():
    expr, names, values = aggregates.add_expression({"sum_click": 1, "exposed": 1})
    assert expr == "ADD #a0 :a0, #a1 :a1"
    assert names == {"#a0": "exposed", "#a1": "sum_click"}
    assert values == {":a0": 1, ":a1": 1}
    items = [
        {"experiment_id": "e", "slice": aggregates.slice_key("A"), "exposed": 3},
        {"experiment_id": "e", "slice": aggregates.slice_key("A", "2026-11-24"), "exposed": 1},
        {"experiment_id": "e", "slice": aggregates.slice_key("B#x"), "exposed": 2},
    ]
    totals = aggregates.variant_totals(items)
    assert totals["A"]["all"] == {"exposed": 3.0}
    assert totals["A"]["days"] == {"2026-11-24": {"exposed": 1.0}}
    assert totals["B#x"]["all"] == {"exposed": 2.0}


def test_readers_sum_every_shard_and_skip_what_is_not_a_slice():
    """The aggregator ADDs to one of AGGREGATE_SHARDS copies per transaction; results sum them
    (with items written before sharding, which carry no shard)."""
    assert aggregates.slice_key("A", "2026-12-01", 7) == "A#2026-12-01#07"
    assert aggregates.parse_slice("A#2026-12-01#07") == ("A", "2026-12-01")
    assert aggregates.parse_slice("B#x#ALL#15") == ("B#x", "ALL")
    assert aggregates.parse_slice("recs-ab") is None  # a watermark item's range key
    items = [
        {"experiment_id": "e", "slice": "A#ALL#00", "exposed": 2, "sum_click": 1.5},
        {"experiment_id": "e", "slice": "A#ALL#13", "exposed": 3},
        {"experiment_id": "e", "slice": "A#ALL", "exposed": 1},
        {"experiment_id": "e", "slice": "A#2026-12-01#04", "exposed": 5},
        {"experiment_id": "e", "slice": "A#2026-12-01#09", "exposed": 1},
        {"experiment_id": "e", "slice": "not-a-slice", "exposed": 100},
    ]
    totals = aggregates.variant_totals(items)
    assert totals == {
        "A": {"all": {"exposed": 6.0, "sum_click": 1.5}, "days": {"2026-12-01": {"exposed": 6.0}}}
    }
