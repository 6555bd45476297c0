"""Fixed-horizon tests against the control: two-proportion z, Welch's t, delta-method lifts, Holm.

Functions take plain floats or numpy arrays (elementwise), so the simulations in the tests
run the exact code the API runs.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def two_proportion_z(x0, n0, x1, n1):
    """(difference, unpooled SE, z, two-sided p); z uses the pooled SE under H0 like statsmodels'
    proportions_ztest, while the CI uses the unpooled (Wald) SE."""
    x0, n0, x1, n1 = (np.asarray(v, dtype=float) for v in (x0, n0, x1, n1))
    with np.errstate(divide="ignore", invalid="ignore"):
        p0, p1 = x0 / n0, x1 / n1
        pooled = (x0 + x1) / (n0 + n1)
        se0 = np.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
        z = (p1 - p0) / se0
        se = np.sqrt(p0 * (1 - p0) / n0 + p1 * (1 - p1) / n1)
    return p1 - p0, se, z, 2 * stats.norm.sf(np.abs(z))


def welch_t(m0, v0, n0, m1, v1, n1):
    """(difference, SE, Welch-Satterthwaite df, t, two-sided p) from means and sample variances."""
    m0, v0, n0, m1, v1, n1 = (np.asarray(v, dtype=float) for v in (m0, v0, n0, m1, v1, n1))
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b = v0 / n0, v1 / n1
        se = np.sqrt(a + b)
        df = (a + b) ** 2 / (a**2 / (n0 - 1) + b**2 / (n1 - 1))
        t = (m1 - m0) / se
    return m1 - m0, se, df, t, 2 * stats.t.sf(np.abs(t), df)


def z_test(diff, se):
    """Two-sided p of a normal statistic (used for delta-method ratio metrics)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.asarray(diff, dtype=float) / np.asarray(se, dtype=float)
    return z, 2 * stats.norm.sf(np.abs(z))


def relative_lift(m0, vm0, m1, vm1):
    """(m1/m0 - 1, its delta-method SE) for independent arms; vm* are variances of the means."""
    m0, vm0, m1, vm1 = (np.asarray(v, dtype=float) for v in (m0, vm0, m1, vm1))
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = m1 / m0 - 1
        se = np.sqrt(vm1 / m0**2 + m1**2 * vm0 / m0**4)
    return lift, se


def holm(pvalues):
    """Holm-Bonferroni step-down adjusted p-values (NaNs are left out of the family)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = idx.size
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def bonferroni(pvalues):
    p = np.asarray(pvalues, dtype=float)
    return np.minimum(1.0, p * np.count_nonzero(~np.isnan(p)))
