"""Bayesian chance to beat control and expected loss.

Proportions: Beta(1 + x, 1 + n - x) posteriors, Monte Carlo with a fixed seed (so the API
answers the same numbers twice). Means and ratios: normal approximation, closed form.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

SEED = 20240601
DRAWS = 200_000


def beta_binomial(x0: float, n0: float, x1: float, n1: float, seed: int = SEED, draws: int = DRAWS):
    """(P(p1 > p0), E[max(p0 - p1, 0)]): the chance the variant is better, and the expected
    conversion given up by shipping it if it is not."""
    rng = np.random.default_rng(seed)
    p0 = rng.beta(1 + x0, 1 + n0 - x0, draws)
    p1 = rng.beta(1 + x1, 1 + n1 - x1, draws)
    return float(np.mean(p1 > p0)), float(np.mean(np.maximum(p0 - p1, 0.0)))


def normal(diff: float, se: float):
    """Same two figures for an approximately normal difference d ~ N(diff, se²) (flat prior):
    P(d > 0) = Φ(diff/se); E[max(-d, 0)] = se φ(diff/se) − diff Φ(−diff/se)."""
    if not se or math.isnan(se) or math.isnan(diff):
        return float("nan"), float("nan")
    z = diff / se
    return float(stats.norm.cdf(z)), float(se * stats.norm.pdf(z) - diff * stats.norm.cdf(-z))
