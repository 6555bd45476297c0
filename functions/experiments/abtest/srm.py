"""Sample-ratio mismatch: do exposures per variant match the configured weights?"""

from __future__ import annotations

from scipy import stats

WARN, ALERT = 0.01, 0.001


def srm_check(exposed: dict[str, float], weights: dict[str, float]) -> dict:
    """Pearson chi-square of exposures against weights (variants with weight > 0)."""
    names = [v for v in weights if weights[v] > 0]
    total_w = sum(weights[v] for v in names)
    observed = [float(exposed.get(v, 0.0)) for v in names]
    n = sum(observed)
    expected = [n * weights[v] / total_w for v in names]
    out = {
        "observed": dict(zip(names, observed, strict=True)),
        "expected": dict(zip(names, expected, strict=True)),
        "chi2": None,
        "p_value": None,
        "status": "insufficient_data",
        "warn_below": WARN,
        "alert_below": ALERT,
    }
    stray = {v: float(c) for v, c in exposed.items() if v not in names and c > 0}
    if stray:  # users exposed to a variant that should get none: a mismatch by definition
        out.update(status="alert", unexpected=stray)
        return out
    if len(names) < 2 or n < 1:
        return out
    chi2, p = stats.chisquare(observed, expected)
    status = "alert" if p < ALERT else "warn" if p < WARN else "ok"
    out.update(chi2=float(chi2), p_value=float(p), status=status)
    return out
