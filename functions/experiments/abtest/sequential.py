"""Always-valid inference for a team that looks every day.

mixture SPRT (Johari, Pekelis, Walsh, "Always valid inference", 2017; the normal mixture of
Robbins, the CS of Howard et al. 2021, eq. (14)) for a difference of means θ with estimated
variance V = Var(θ̂) and a normal mixing distribution N(0, τ²) over the effect:

    Λ = sqrt(V / (V + τ²)) · exp(τ² θ̂² / (2 V (V + τ²)))

The always-valid p-value is the running minimum of min(1, 1/Λ) over the looks, and the
confidence sequence is the running intersection of θ̂ ± sqrt(V (V + τ²)/τ² · (2 log(1/α) +
log((V + τ²)/V))). Both stay valid at any data-dependent stopping time.
"""

from __future__ import annotations

import numpy as np


def msprt_p(theta, var, tau2):
    """Per-look p = min(1, 1/Λ), elementwise; NaN where the variance is not yet defined."""
    theta, var, tau2 = (np.asarray(v, dtype=float) for v in (theta, var, tau2))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_lambda = 0.5 * np.log(var / (var + tau2)) + tau2 * theta**2 / (2 * var * (var + tau2))
        return np.minimum(1.0, np.exp(-log_lambda))


def cs_halfwidth(var, tau2, alpha):
    var, tau2 = np.asarray(var, dtype=float), np.asarray(tau2, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(var * (var + tau2) / tau2 * (2 * np.log(1 / alpha) + np.log((var + tau2) / var)))


def always_valid(theta, var, tau2, alpha):
    """Running p-values and confidence sequences along the last axis (the looks).

    Looks with undefined variance (too few users) are skipped: they neither lower p nor
    narrow the interval. Returns (p, low, high) with the same shape as theta.
    """
    theta = np.asarray(theta, dtype=float)
    p = np.fmin.accumulate(np.nan_to_num(msprt_p(theta, var, tau2), nan=1.0), axis=-1)
    half = cs_halfwidth(var, tau2, alpha)
    ok = np.isfinite(half) & np.isfinite(theta)
    low = np.fmax.accumulate(np.where(ok, theta - half, -np.inf), axis=-1)
    high = np.fmin.accumulate(np.where(ok, theta + half, np.inf), axis=-1)
    return p, low, high
