"""Fixed-horizon tests against statsmodels/scipy (independent references) and worked examples."""

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest
from statsmodels.stats.weightstats import ttest_ind

from tests.unit.abtest_helpers import counters_from_users, simulate_users

from abtest import frequentist  # isort: skip  (path set up by abtest_helpers)
from abtest.moments import moments, ratio  # isort: skip


@pytest.mark.parametrize(
    ("x0", "n0", "x1", "n1"), [(120, 1000, 150, 1000), (7, 90, 2, 130), (500, 4000, 455, 3700)]
)
def test_two_proportion_z_matches_statsmodels(x0, n0, x1, n1):
    diff, _, z, p = frequentist.two_proportion_z(x0, n0, x1, n1)
    z_ref, p_ref = proportions_ztest([x1, x0], [n1, n0])
    assert z == pytest.approx(z_ref, rel=1e-10)
    assert p == pytest.approx(p_ref, rel=1e-10)
    assert diff == pytest.approx(x1 / n1 - x0 / n0)


def test_two_proportion_z_worked_examples():
    # homeworksource.com/p/1008622: 140/200 vs 255/340 -> pooled SE 0.03949401, z = -1.266015
    # (its p uses a t table, so only z is compared).
    _, _, z, _ = frequentist.two_proportion_z(255, 340, 140, 200)
    assert z == pytest.approx(-1.266015, abs=1e-6)
    # homeworksource.com/p/997366: 28/254 vs 36/301 -> z = -0.344, two-sided p = 0.7307.
    _, _, z, p = frequentist.two_proportion_z(36, 301, 28, 254)
    assert z == pytest.approx(-0.344, abs=1e-3)
    assert p == pytest.approx(0.7307, abs=1e-3)


def test_welch_from_sufficient_stats_matches_statsmodels_and_scipy():
    rng = np.random.default_rng(3)
    a = simulate_users(rng, 700, 0.1, 0.2)["value"]
    b = simulate_users(rng, 900, 0.1, 0.3)["value"]
    ma = moments({"sum_value": a.sum(), "sumsq_value": (a * a).sum()}, "value", len(a))
    mb = moments({"sum_value": b.sum(), "sumsq_value": (b * b).sum()}, "value", len(b))
    diff, _se, df, t, p = frequentist.welch_t(ma.mean, ma.variance, ma.n, mb.mean, mb.variance, mb.n)
    t_ref, p_ref, df_ref = ttest_ind(b, a, usevar="unequal")
    assert (t, p, df) == pytest.approx((t_ref, p_ref, df_ref), rel=1e-8)
    assert p == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-8)
    assert diff == pytest.approx(b.mean() - a.mean())


def test_welch_worked_example_from_summary_statistics():
    # senseofstudy.com two-sample tests, example 4: n=20, mean 100, s=15 vs n=20, mean 95, s=20
    # -> t ~ 0.895, Welch df ~ 35.2, not significant.
    _, _, df, t, p = frequentist.welch_t(95, 20**2, 20, 100, 15**2, 20)
    assert t == pytest.approx(0.895, abs=1e-3)  # the source rounds SE to 5.59
    assert df == pytest.approx(35.2, abs=0.05)
    assert p > 0.05


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(5)
    for _ in range(50):
        p = rng.uniform(0, 0.2, rng.integers(1, 6))
        p[rng.integers(0, len(p))] = p[0]  # ties
        assert frequentist.holm(p) == pytest.approx(multipletests(p, method="holm")[1], rel=1e-12)
    assert frequentist.bonferroni([0.01, 0.4]) == pytest.approx(
        multipletests([0.01, 0.4], method="bonferroni")[1]
    )


def test_holm_ignores_undefined_pvalues():
    out = frequentist.holm([0.01, float("nan"), 0.04])
    assert out[0] == pytest.approx(0.02) and np.isnan(out[1]) and out[2] == pytest.approx(0.04)


def test_relative_lift_ci_covers_the_truth_at_nominal_rate():
    # 2000 simulated experiments, true relative lift +10%: the delta-method 95% CI must cover
    # it in 95% of them, within a 4-sigma binomial tolerance.
    rng = np.random.default_rng(11)
    sims, n, p0, p1 = 2000, 5000, 0.10, 0.11
    x0, x1 = rng.binomial(n, p0, sims), rng.binomial(n, p1, sims)
    m0, m1 = x0 / n, x1 / n
    lift, se = frequentist.relative_lift(m0, m0 * (1 - m0) / n, m1, m1 * (1 - m1) / n)
    z = stats.norm.isf(0.025)
    covered = np.mean((lift - z * se <= 0.1) & (lift + z * se >= 0.1))
    tol = 4 * np.sqrt(0.95 * 0.05 / sims)
    assert abs(covered - 0.95) < tol


def test_ratio_metric_delta_variance_matches_linearisation_of_raw_data():
    # Independent computation: per-user linearised values (x - R y)/ȳ, their variance / n.
    rng = np.random.default_rng(2)
    users = simulate_users(rng, 3000, 0.2, 0.2)
    c = counters_from_users(users, 3000)
    r = ratio(c, "click", "view", 3000)
    x, y = users["click"], users["view"]
    R = x.sum() / y.sum()
    lin = (x - R * y) / y.mean()
    assert r.mean == pytest.approx(R)
    assert r.var_of_mean == pytest.approx(lin.var(ddof=1) / len(x), rel=1e-9)


def test_moments_match_numpy():
    rng = np.random.default_rng(4)
    x = rng.poisson(1.3, 500).astype(float)
    m = moments({"sum_click": x.sum(), "sumsq_click": (x * x).sum()}, "click", 500)
    assert (m.mean, m.variance) == pytest.approx((x.mean(), x.var(ddof=1)))
