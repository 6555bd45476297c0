"""Per-variant means and variances recovered from counters (n, sum, sum of squares, cross sums)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Moments:
    """One per-user metric over the n exposed users of a variant (users without events count as 0)."""

    n: float
    total: float
    sumsq: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n > 0 else float("nan")

    @property
    def variance(self) -> float:
        """Unbiased sample variance; clipped at 0 against float cancellation."""
        if self.n < 2:
            return float("nan")
        return max(self.sumsq - self.total**2 / self.n, 0.0) / (self.n - 1)

    @property
    def var_of_mean(self) -> float:
        return self.variance / self.n if self.n >= 2 else float("nan")


@dataclass(frozen=True)
class Proportion:
    """Share of exposed users with at least one event of a kind (a Bernoulli per user)."""

    n: float
    successes: float

    @property
    def mean(self) -> float:
        return self.successes / self.n if self.n > 0 else float("nan")

    @property
    def variance(self) -> float:
        p = self.mean
        return p * (1 - p)

    @property
    def var_of_mean(self) -> float:
        return self.variance / self.n if self.n > 0 else float("nan")


@dataclass(frozen=True)
class Ratio:
    """A ratio of sums over users, e.g. clicks per view, with its delta-method variance.

    Users are the randomisation unit, so the numerator and denominator are correlated per
    user; Var(R) ~ (s_x² - 2R s_xy + R² s_y²) / (n ȳ²)  (Deng et al., KDD 2018, eq. 3).
    """

    num: Moments
    den: Moments
    sumxy: float

    @property
    def n(self) -> float:
        return self.num.n

    @property
    def mean(self) -> float:
        return self.num.total / self.den.total if self.den.total > 0 else float("nan")

    @property
    def covariance(self) -> float:
        n = self.n
        if n < 2:
            return float("nan")
        return (self.sumxy - self.num.total * self.den.total / n) / (n - 1)

    @property
    def var_of_mean(self) -> float:
        r, n, ybar = self.mean, self.n, self.den.mean
        if n < 2 or not ybar:
            return float("nan")
        v = self.num.variance - 2 * r * self.covariance + r * r * self.den.variance
        return max(v, 0.0) / (n * ybar * ybar)

    @property
    def variance(self) -> float:
        """Per-user variance on the ratio scale (var_of_mean x n), used for power and tau."""
        return self.var_of_mean * self.n


def moments(counters: dict, metric: str, n: float) -> Moments:
    return Moments(n, counters.get(f"sum_{metric}", 0.0), counters.get(f"sumsq_{metric}", 0.0))


def proportion(counters: dict, metric: str, n: float) -> Proportion:
    return Proportion(n, counters.get(f"users_{metric}", 0.0))


def ratio(counters: dict, num: str, den: str, n: float) -> Ratio:
    a, b = sorted((num, den))
    return Ratio(moments(counters, num, n), moments(counters, den, n), counters.get(f"sumxy_{a}__{b}", 0.0))
