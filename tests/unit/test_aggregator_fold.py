"""Counter deltas from users' totals images, exactly once (functions/aggregator/fold.py).

The expected counters are computed here from each user's final totals (sums, squares, products
written out), not with the code under test; the images arrive as a stream consumer sees them at
worst: batches redelivered, records of a user out of order, records lost before a later one.
"""

from __future__ import annotations

import random
from itertools import combinations

import pytest

from tests.support import aggregator_modules

TYPES = ["click", "purchase"]
METRICS = sorted([*TYPES, "value"])


@pytest.fixture(scope="module")
def fold():
    with aggregator_modules() as modules:
        yield modules["fold"]


def _image(fold, user, rev, totals, variant="A", phase=1, day="2026-12-01"):
    return fold.Image("exp", user, variant, phase, rev, dict(totals), day)


def _expected(finals: dict[str, dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}

    def add(k, v):
        if v:
            out[k] = out.get(k, 0.0) + v

    for t in finals.values():
        for c in ("exposed", "requests", "fallbacks"):
            add(c, t.get(c, 0.0))
        for m in METRICS:
            x = t.get(m, 0.0)
            add(f"sum_{m}", x)
            add(f"sumsq_{m}", x * x)
            add(f"users_{m}", float(x > 0))
            if m in TYPES:
                add(f"events_{m}", x)
        for a, b in combinations(METRICS, 2):
            add(f"sumxy_{a}__{b}", t.get(a, 0.0) * t.get(b, 0.0))
    return out


def _apply(fold, watermarks, counters, batch):
    """What store.apply_chunk does, in memory: fold each user's images onto its watermark."""
    by_user = {}
    for image in batch:
        by_user.setdefault(image.user_id, []).append(image)
    for user, images in by_user.items():
        plan = fold.plan_user(watermarks.get(user), images, METRICS)
        if plan.watermark is not None:
            watermarks[user] = plan.watermark
        for name, deltas in fold.slice_writes(plan.slices).items():
            target = counters.setdefault(name, {})
            for k, v in deltas.items():
                target[k] = target.get(k, 0.0) + v


def test_redelivered_reordered_and_lost_records_still_count_each_change_once(fold):
    rng = random.Random(16)
    histories, finals = {}, {}
    for u in range(30):
        totals = {"exposed": 1.0, "requests": 1.0, "fallbacks": 0.0}
        images = [_image(fold, f"u{u}", 1, totals)]
        for rev in range(2, rng.randrange(3, 12)):
            totals = dict(totals)
            kind = rng.choice(["click", "purchase", "request"])
            if kind == "request":
                totals["requests"] += 1
                totals["fallbacks"] += rng.random() < 0.3
            else:
                totals[kind] = totals.get(kind, 0.0) + 1
                if kind == "purchase":
                    totals["value"] = totals.get("value", 0.0) + rng.choice([4.5, 10.0, 19.99])
            images.append(_image(fold, f"u{u}", rev, totals))
        histories[f"u{u}"], finals[f"u{u}"] = images, totals
    stream = [i for images in histories.values() for i in images]
    rng.shuffle(stream)  # users interleave; a user's own records are reordered below
    for images in histories.values():  # a few records of each user lost (never the last one)
        for lost in rng.sample(images[:-1], k=min(2, len(images) - 1)):
            stream.remove(lost)
    batches = [stream[i : i + 25] for i in range(0, len(stream), 25)]
    redelivered = batches + rng.sample(batches, 5) + batches[:3]  # retries after partial failures
    watermarks, counters = {}, {}
    for batch in redelivered:
        _apply(fold, watermarks, counters, batch)
    expected = _expected(finals)
    got = counters["A#ALL"]
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-12), k
    assert counters["A#2026-12-01"] == got  # one day: the day slice is the ALL slice


def test_a_redelivered_batch_is_a_no_op(fold):
    applied = _image(fold, "u", 5, {"exposed": 1, "click": 3})
    again = [
        _image(fold, "u", 3, {"exposed": 1, "click": 1}),
        _image(fold, "u", 5, {"exposed": 1, "click": 3}),
    ]
    plan = fold.plan_user(applied, again, METRICS)
    assert plan.watermark is None and plan.slices == {} and plan.stale == 2


def test_an_older_record_after_a_newer_one_adds_nothing(fold):
    first = _image(fold, "u", 1, {"exposed": 1})
    newer, older = (
        _image(fold, "u", 3, {"exposed": 1, "click": 2}),
        _image(fold, "u", 2, {"exposed": 1, "click": 1}),
    )
    plan = fold.plan_user(first, [newer, older], METRICS)
    assert plan.watermark == newer and plan.stale == 1
    assert plan.slices[("A", "2026-12-01")] == {
        "events_click": 2,
        "sum_click": 2,
        "sumsq_click": 4,
        "users_click": 1,
    }


def test_a_new_phase_counts_from_zero_and_leaves_the_old_variant_alone(fold):
    old = _image(fold, "u", 7, {"exposed": 1, "requests": 4, "click": 3}, variant="A", phase=1)
    new = _image(fold, "u", 1, {"exposed": 1, "requests": 1}, variant="B", phase=2)
    plan = fold.plan_user(old, [new], METRICS)
    assert set(plan.slices) == {("B", "2026-12-01")}
    assert plan.slices[("B", "2026-12-01")] == {"exposed": 1, "requests": 1}
    assert fold.plan_user(new, [old], METRICS).watermark is None  # (phase, rev) orders the images


def test_changes_across_midnight_land_in_their_days(fold):
    images = [
        _image(fold, "u", 1, {"exposed": 1, "click": 1}, day="2026-12-01"),
        _image(fold, "u", 2, {"exposed": 1, "click": 3}, day="2026-12-02"),
    ]
    writes = fold.slice_writes(fold.plan_user(None, images, METRICS).slices)
    assert writes["A#2026-12-01"]["sum_click"] == 1 and writes["A#2026-12-02"]["sum_click"] == 2
    assert writes["A#2026-12-02"]["sumsq_click"] == 9 - 1 and writes["A#ALL"]["sumsq_click"] == 9
    assert "users_click" not in writes["A#2026-12-02"]  # the user already had a click


def test_images_from_assignment_items(fold):
    item = {"user_id": "u", "experiment_id": "exp", "variant": "B", "phase": 2, "rev": 4,
            "exposed_at": "2026-12-01T10:00:00.000Z", "n_requests": 3, "n_fallbacks": 1,
            "m_click": 2, "m_value": 12.5, "changed_at": "2026-12-02T00:00:01.000Z"}  # fmt: skip
    image = fold.image_of(item, "1999-01-01")
    assert image.order == (2, 4) and image.day == "2026-12-02" and image.variant == "B"
    assert image.values == {"exposed": 1, "requests": 3, "fallbacks": 1, "click": 2, "value": 12.5}
    legacy = {k: v for k, v in item.items() if k not in ("rev", "changed_at")}
    assert fold.image_of(legacy, "1999-01-01") is None  # counted by the request path before streams
