"""Bayesian figures, SRM and power against closed forms, scipy and statsmodels."""

import numpy as np
import pytest
from scipy import special, stats
from statsmodels.stats.power import NormalIndPower

from tests.unit.abtest_helpers import EXPERIMENTS_DIR  # noqa: F401  (puts abtest on sys.path)

from abtest import bayes, power  # isort: skip
from abtest.srm import srm_check  # isort: skip


def _miller_prob_b_beats_a(xa, na, xb, nb):
    """Evan Miller, "Formulas for Bayesian A/B Testing" (2015): exact P(p_B > p_A) for
    Beta(1+x, 1+n-x) posteriors, as a finite sum over i < alpha_B."""
    aa, ba, ab, bb = 1 + xa, 1 + na - xa, 1 + xb, 1 + nb - xb
    i = np.arange(ab)
    terms = (
        special.betaln(aa + i, ba + bb) - np.log(bb + i) - special.betaln(1 + i, bb) - special.betaln(aa, ba)
    )
    return float(np.exp(terms).sum())


@pytest.mark.parametrize(("x0", "n0", "x1", "n1"), [(50, 1000, 65, 1000), (30, 400, 22, 380), (5, 60, 5, 60)])
def test_chance_to_beat_control_matches_evan_millers_closed_form(x0, n0, x1, n1):
    chance, loss = bayes.beta_binomial(x0, n0, x1, n1)
    assert chance == pytest.approx(_miller_prob_b_beats_a(x0, n0, x1, n1), abs=5e-3)
    assert loss >= 0
    assert bayes.beta_binomial(x0, n0, x1, n1) == (chance, loss)  # fixed seed: same answer twice


def test_normal_closed_form_matches_monte_carlo():
    rng = np.random.default_rng(1)
    diff, se = -0.3, 0.5
    d = rng.normal(diff, se, 1_000_000)
    chance, loss = bayes.normal(diff, se)
    assert chance == pytest.approx(np.mean(d > 0), abs=2e-3)
    assert loss == pytest.approx(np.mean(np.maximum(-d, 0)), abs=2e-3)


def test_srm_matches_scipy_and_flags_levels():
    weights = {"A": 0.33, "B": 0.33, "C": 0.34}
    ok = srm_check({"A": 3300, "B": 3310, "C": 3390}, weights)
    ref = stats.chisquare([3300, 3310, 3390], [3300, 3300, 3400])
    assert ok["status"] == "ok"
    assert ok["p_value"] == pytest.approx(ref.pvalue, rel=1e-3)
    assert srm_check({"A": 3300, "B": 3450, "C": 3250}, weights)["status"] == "warn"  # p ~ 0.0012
    assert srm_check({"A": 3000, "B": 3600, "C": 3400}, weights)["status"] == "alert"
    assert srm_check({"A": 10, "B": 10, "D": 3}, {"A": 0.5, "B": 0.5})["status"] == "alert"
    assert srm_check({}, weights)["status"] == "insufficient_data"


def test_users_needed_matches_statsmodels_power_solver():
    # Two arms with equal weights: per-arm n from statsmodels' NormalIndPower (Cohen's d).
    p, delta, alpha = 0.10, 0.01, 0.05
    var = p * (1 - p)
    total = power.users_needed(delta, var, var, 0.5, 0.5, alpha)
    per_arm = NormalIndPower().solve_power(effect_size=delta / np.sqrt(var), alpha=alpha, power=0.8)
    assert total / 2 == pytest.approx(per_arm, rel=1e-3)
    se = np.sqrt(2 * var / per_arm)
    assert power.power_at(delta, se, alpha) == pytest.approx(0.8, abs=1e-3)
    assert power.mde(se, alpha) == pytest.approx(delta, rel=1e-3)


def test_days_needed_from_recent_daily_traffic():
    rate = power.daily_rate({"2026-11-01": 0, "2026-11-02": 100, "2026-11-03": 300})
    assert rate == 200
    assert power.days_needed(1000, 400, rate) == 3
    assert power.days_needed(300, 400, rate) == 0
    assert power.days_needed(1000, 400, 0) is None


def test_planted_lift_is_detected_with_the_promised_power():
    # Size the test with users_needed, run 2000 simulated experiments at that size with the
    # lift planted: the z-test must reject in ~80% of them (3-sigma binomial tolerance).
    from abtest.frequentist import two_proportion_z  # isort: skip

    p0, rel, alpha, sims = 0.10, 0.10, 0.05, 2000
    var0, var1 = p0 * (1 - p0), p0 * (1 + rel) * (1 - p0 * (1 + rel))
    per_arm = power.users_needed(p0 * rel, var0, var1, 0.5, 0.5, alpha) // 2
    rng = np.random.default_rng(17)
    x0 = rng.binomial(per_arm, p0, sims)
    x1 = rng.binomial(per_arm, p0 * (1 + rel), sims)
    rejected = np.mean(two_proportion_z(x0, per_arm, x1, per_arm)[3] < alpha)
    assert abs(rejected - 0.8) < 3 * np.sqrt(0.8 * 0.2 / sims), rejected
