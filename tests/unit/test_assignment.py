"""A/B assignment against GrowthBook's published SDK cases, plus spread, stability and validation."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from recsys_common import assignment, events_model
from recsys_common.assignments_store import is_bot

CASES = json.loads((Path(__file__).parent / "data" / "growthbook_cases.json").read_text())


@pytest.mark.parametrize(("seed", "value", "version", "expected"), CASES["hash"])
def test_hash_matches_growthbook_cases(seed, value, version, expected):
    got = assignment.gb_hash(seed, value, version)
    assert got == expected if expected is None else got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("name", "args", "expected"), CASES["getBucketRange"], ids=[c[0] for c in CASES["getBucketRange"]]
)
def test_bucket_ranges_match_growthbook_cases(name, args, expected):
    n, coverage, weights = args
    got = assignment.bucket_ranges(n, coverage, weights)
    assert [list(r) for r in got] == [pytest.approx(r, abs=1e-9) for r in expected]


@pytest.mark.parametrize(
    ("seed", "value", "version", "bucket", "variation", "n"), CASES["experiment_buckets"]
)
def test_experiment_buckets_match_growthbook_feature_cases(seed, value, version, bucket, variation, n):
    assert assignment.gb_hash(seed, value, version) == pytest.approx(bucket, abs=1e-12)
    if variation is not None:
        assert assignment.choose_variation(bucket, assignment.bucket_ranges(n)) == variation


def test_fnv1a32_reference_vectors():
    # FNV-1a 32-bit test vectors (the FNV specification's "" and "a").
    assert assignment.fnv1a32("") == 0x811C9DC5
    assert assignment.fnv1a32("a") == 0xE40C292C
    assert assignment.fnv1a32("foobar") == 0xBF9CF968


def test_in_range_is_half_open():
    assert assignment.in_range(0.5, (0.5, 1.0)) and not assignment.in_range(1.0, (0.5, 1.0))
    assert assignment.choose_variation(0.99, assignment.bucket_ranges(2, 0.5)) == -1


def test_spread_follows_weights_and_is_deterministic():
    names, weights = ["A", "B", "C"], [33, 33, 34]
    n = 30_000
    counts = Counter(assignment.assign("recs-ab", f"user-{i}", names, weights)[0] for i in range(n))
    # chi-square goodness of fit against 33/33/34 (df=2; 13.8 is the 0.1% critical value)
    expected = [n * w / 100 for w in weights]
    chi2 = sum((counts[k] - e) ** 2 / e for k, e in zip(names, expected, strict=True))
    assert chi2 < 13.8, counts
    again = [assignment.assign("recs-ab", f"user-{i}", names, weights)[0] for i in range(100)]
    assert again == [assignment.assign("recs-ab", f"user-{i}", names, weights)[0] for i in range(100)]


def test_seeds_are_independent():
    """Version 2 hashing: the same users split independently under two experiment seeds."""
    names = ["A", "B"]
    pairs = Counter(
        (
            assignment.assign("exp-1", f"u{i}", names, [1, 1])[0],
            assignment.assign("exp-2", f"u{i}", names, [1, 1])[0],
        )
        for i in range(20_000)
    )
    for cell in [("A", "A"), ("A", "B"), ("B", "A"), ("B", "B")]:
        assert abs(pairs[cell] / 20_000 - 0.25) < 0.02, pairs


def test_coverage_leaves_users_out():
    outside = sum(assignment.assign("s", f"u{i}", ["A", "B"], [1, 1], 0.2)[0] is None for i in range(10_000))
    assert abs(outside / 10_000 - 0.8) < 0.02


def test_relative_weights_are_normalised():
    assert assignment.normalise([33, 33, 34]) == pytest.approx([0.33, 0.33, 0.34])
    assert assignment.normalise([0, 0]) == [0.5, 0.5]
    assert math.isclose(sum(assignment.normalise([1, 2, 7])), 1.0)


@pytest.mark.parametrize(
    ("ua", "bot"),
    [
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", True),
        ("Mozilla/5.0 (compatible; bingbot/2.0)", True),
        ("facebookexternalhit/1.1", True),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120 Safari/537.36", False),
        ("Python-urllib/3.11", False),
        ("python-requests/2.32", False),
        (None, False),
    ],
)
def test_bots(ua, bot):
    assert is_bot(ua) is bot


# --- event validation ----------------------------------------------------------------------------

TYPES = ["view", "click", "purchase"]
NOW = 1_795_000_000.0


def _ok(**kw):
    return {"user_id": "u", "item_id": "i", "event_type": "click", **kw}


def test_valid_events_get_ids_and_timestamps():
    events = events_model.validate([_ok(), _ok(timestamp=NOW - 10), _ok(event_id="mine")], TYPES, True, NOW)
    assert events[0]["timestamp"] == NOW and events[0]["event_id"].startswith("u-")
    assert events[1]["event_id"].startswith(
        "d-"
    )  # derived: a retry with the same timestamp is the same event
    assert (
        events[1]["event_id"]
        == events_model.validate([_ok(timestamp=NOW - 10)], TYPES, False, NOW)[0]["event_id"]
    )
    assert events[2]["event_id"] == "mine"
    iso = events_model.validate([_ok(timestamp="2026-11-25T10:00:00Z")], TYPES, False, NOW + 10**7)
    assert iso[0]["timestamp"] == pytest.approx(1795600800.0)


@pytest.mark.parametrize(
    ("event", "field", "problem"),
    [
        ({"item_id": "i", "event_type": "click"}, "user_id", "is required"),
        (_ok(user_id=""), "user_id", "non-empty"),
        (_ok(user_id=7), "user_id", "non-empty string"),
        (_ok(item_id="x" * 257), "item_id", "longer than 256"),
        (_ok(event_type="like"), "event_type", "must be one of view, click, purchase"),
        (_ok(value="3"), "value", "finite number"),
        (_ok(value=True), "value", "finite number"),
        (_ok(value=1e12), "value", "within"),
        (_ok(timestamp=NOW * 1000), "timestamp", "milliseconds"),
        (_ok(timestamp=100.0), "timestamp", "before 2000"),
        (_ok(timestamp="yesterday"), "timestamp", "ISO-8601"),
        (_ok(timestamp="2026-11-25T10:00:00"), "timestamp", "time zone"),
        (_ok(properties=[1]), "properties", "object"),
        (_ok(properties={"k": "v" * 2000}), "properties", "1024"),
        (_ok(color="red"), "color", "unknown field"),
        (_ok(event_id="rec#1"), "event_id", "reserved"),
    ],
)
def test_invalid_events_name_the_field(event, field, problem):
    with pytest.raises(events_model.Invalid) as info:
        events_model.validate([_ok(), event], TYPES, True, NOW)
    fields = {p["field"]: p["problem"] for p in info.value.problems}
    assert f"events[1].{field}" in fields, fields
    assert problem in fields[f"events[1].{field}"]
    assert "events[0]" not in str(fields)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "event object"),
        ({"events": "x"}, "array"),
        ({"events": []}, "1 to 100"),
        ({"events": [_ok()] * 101}, "got 101"),
        ({"events": [_ok()], "extra": 1}, "unknown field"),
    ],
)
def test_invalid_batches(body, message):
    with pytest.raises(events_model.Invalid, match=message):
        events_model.batch(body)
