"""The whole results document from counters: figures, verdicts, SRM, timeline, JSON safety."""

import json

import numpy as np
import pytest

from tests.unit.abtest_helpers import EVENT_TYPES, counters_from_users, simulate_users

from abtest import AnalysisOptions, analyze  # isort: skip

WEIGHTS = {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3}


def _experiment(seed, plan, days=5, per_day=400):
    """plan: {variant: (p_click, p_buy)} -> (variant_totals-shaped dict, raw users per variant)."""
    rng = np.random.default_rng(seed)
    totals, raw = {}, {}
    for v, (pc, pb) in plan.items():
        users = [simulate_users(rng, per_day, pc, pb) for _ in range(days)]
        day_counters = {f"2026-11-{10 + d:02d}": counters_from_users(u, per_day) for d, u in enumerate(users)}
        raw[v] = {m: np.concatenate([u[m] for u in users]) for m in users[0]}
        totals[v] = {"all": counters_from_users(raw[v], per_day * days), "days": day_counters}
    return totals, raw


def _run(totals, weights=WEIGHTS, **kw):
    out = analyze(totals, {"control": "A", "weights": weights}, EVENT_TYPES, AnalysisOptions(**kw))
    json.dumps(out, allow_nan=False)  # the API must never emit NaN
    return out


def test_figures_match_raw_data_and_the_better_variant_wins():
    totals, raw = _experiment(1, {"A": (0.1, 0.2), "B": (0.1, 0.35), "C": (0.1, 0.2)})
    out = _run(totals)
    for v in "ABC":
        m = out["variants"][v]["metrics"]
        assert m["purchase_rate"]["mean"] == pytest.approx(np.mean(raw[v]["purchase"] > 0))
        assert m["value_per_user"]["mean"] == pytest.approx(raw[v]["value"].mean())
        assert m["value_per_user"]["variance"] == pytest.approx(raw[v]["value"].var(ddof=1))
        assert m["click_per_view"]["mean"] == pytest.approx(raw[v]["click"].sum() / raw[v]["view"].sum())
        assert out["variants"][v]["events"]["click"] == raw[v]["click"].sum()
    assert out["verdict"]["decision"] == "winner" and out["verdict"]["winner"] == "B"
    b = out["comparisons"]["purchase_rate"]["B"]
    assert b["significant"] and b["bayes"]["chance_to_beat_control"] > 0.95
    assert not out["comparisons"]["purchase_rate"]["C"]["significant"]
    assert out["srm"]["status"] == "ok"


def test_timeline_is_cumulative_and_ends_at_the_totals():
    totals, _ = _experiment(2, {"A": (0.1, 0.2), "B": (0.1, 0.2), "C": (0.1, 0.2)}, days=4)
    out = _run(totals)
    assert [r["day"] for r in out["timeline"]] == ["2026-11-10", "2026-11-11", "2026-11-12", "2026-11-13"]
    assert [r["exposed"]["A"] for r in out["timeline"]] == [400, 800, 1200, 1600]
    last = out["timeline"][-1]
    assert last["means"]["B"] == pytest.approx(out["variants"]["B"]["metrics"]["purchase_rate"]["mean"])
    seq_p = [r["lift"]["B"]["sequential_p"] for r in out["timeline"]]
    assert seq_p == sorted(seq_p, reverse=True)


def test_aa_has_no_winner_and_a_large_aa_says_no_meaningful_difference():
    plan = {"A": (0.2, 0.3), "B": (0.2, 0.3), "C": (0.2, 0.3)}
    small, _ = _experiment(3, plan, days=3, per_day=200)
    assert _run(small)["verdict"]["decision"] == "keep_running"
    big, _ = _experiment(4, plan, days=10, per_day=6000)
    out = _run(big, mde=0.1)
    assert out["verdict"]["decision"] == "no_difference", out["verdict"]


def test_srm_alert_blocks_any_verdict():
    totals, _ = _experiment(5, {"A": (0.1, 0.2), "B": (0.1, 0.35), "C": (0.1, 0.2)})
    out = _run(totals, weights={"A": 0.5, "B": 0.25, "C": 0.25})
    assert out["srm"]["status"] == "alert"
    assert out["verdict"]["decision"] == "invalid"


def test_fixed_mode_and_options_change_the_decision_basis():
    totals, _ = _experiment(6, {"A": (0.1, 0.2), "B": (0.1, 0.27), "C": (0.1, 0.2)})
    fixed, seq = _run(totals, analysis="fixed"), _run(totals, analysis="sequential")
    b_f, b_s = fixed["comparisons"]["purchase_rate"]["B"], seq["comparisons"]["purchase_rate"]["B"]
    assert b_f["p_value"] == b_s["p_value"]
    assert b_s["sequential"]["p_value"] >= b_f["p_value"]  # always-valid costs power
    assert fixed["comparisons"]["purchase_rate"]["B"]["p_value_adjusted"] >= b_f["p_value"]
    other = _run(totals, metric="value_per_user")
    assert other["primary_metric"] == "value_per_user" and other["verdict"]["metric"] == "value_per_user"


def test_no_data_at_all_is_a_clean_keep_running():
    out = _run({})
    assert out["verdict"]["decision"] == "keep_running"
    assert out["variants"]["B"]["exposed"] == 0
    assert out["comparisons"]["purchase_rate"]["B"]["p_value"] is None
