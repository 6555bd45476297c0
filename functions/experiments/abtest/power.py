"""Power and minimum detectable effect at the current sample, and the days still needed.

Fixed-horizon normal approximation for a two-sided test at level alpha' = alpha/(k-1)
(Bonferroni, a conservative stand-in for Holm). Users arrive across all variants by the
configured weights, so the experiment-wide sample N needed for one comparison solves
    (z_{1-α'/2} + z_{power})² (σ0²/w0 + σ1²/w1) / N = δ².
"""

from __future__ import annotations

import math

from scipy import stats


def mde(se: float, alpha: float, power: float = 0.8) -> float:
    """Smallest absolute effect detected with the given power at the current standard error."""
    return (stats.norm.isf(alpha / 2) + stats.norm.ppf(power)) * se


def power_at(delta: float, se: float, alpha: float) -> float:
    z = stats.norm.isf(alpha / 2)
    return float(stats.norm.cdf(delta / se - z) + stats.norm.cdf(-delta / se - z))


def users_needed(delta: float, var0: float, var1: float, w0: float, w1: float, alpha: float, power=0.8):
    """Total users (all variants) so that this comparison reaches `power` for effect `delta`."""
    if not delta or min(w0, w1) <= 0:
        return None
    k = (stats.norm.isf(alpha / 2) + stats.norm.ppf(power)) ** 2
    return math.ceil(k * (var0 / w0 + var1 / w1) / delta**2)


def daily_rate(exposed_by_day: dict[str, float], last: int = 7) -> float:
    """Users exposed per day over the most recent `last` days that had traffic."""
    days = [v for _, v in sorted(exposed_by_day.items()) if v > 0][-last:]
    return sum(days) / len(days) if days else 0.0


def days_needed(needed: int | None, have: float, rate: float) -> int | None:
    if needed is None:
        return None
    if have >= needed:
        return 0
    return math.ceil((needed - have) / rate) if rate > 0 else None
