"""Shared by the abtest tests: import the package from the Lambda's folder, and build
aggregate counters from raw per-user data independently of the repo's aggregates module."""

from __future__ import annotations

import sys
from itertools import combinations
from pathlib import Path

import numpy as np

EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "functions" / "experiments"
if str(EXPERIMENTS_DIR) not in sys.path:
    sys.path.insert(0, str(EXPERIMENTS_DIR))

EVENT_TYPES = ["view", "click", "purchase"]


def counters_from_users(users: dict[str, np.ndarray], exposed: int) -> dict[str, float]:
    """Counters of docs/architecture.md computed straight from per-user totals (zeros implied
    for exposed users without events): sums, squares, users with m > 0, cross sums, events."""
    out: dict[str, float] = {"exposed": float(exposed)}
    for m, x in users.items():
        out[f"sum_{m}"] = float(x.sum())
        out[f"sumsq_{m}"] = float((x * x).sum())
        out[f"users_{m}"] = float((x > 0).sum())
        if m != "value":
            out[f"events_{m}"] = float(x.sum())
    for a, b in combinations(sorted(users), 2):
        out[f"sumxy_{a}__{b}"] = float((users[a] * users[b]).sum())
    return out


def variant_counters(totals: dict[str, dict[str, float]], variant_of: dict[str, str], metrics: list[str]):
    """{variant: counters} of exposed users from each user's totals (metric totals, plus
    `requests` and `fallbacks` when given): counters_from_users per variant."""
    out = {}
    for variant in sorted(set(variant_of.values())):
        users = [u for u, v in variant_of.items() if v == variant]
        c = counters_from_users(
            {m: np.array([totals[u].get(m, 0.0) for u in users]) for m in metrics}, len(users)
        )
        for count in ("requests", "fallbacks"):
            c[count] = float(sum(totals[u].get(count, 0.0) for u in users))
        out[variant] = {k: v for k, v in c.items() if v}
    return out


def simulate_users(rng: np.random.Generator, n: int, p_click: float, p_buy: float, price: float = 20.0):
    """Per-user totals for n exposed users: views ~ Poisson, clicks ~ Binomial(views, p_click),
    purchases ~ Binomial(clicks, p_buy), value = purchases x price x noise."""
    views = rng.poisson(3.0, n).astype(float)
    clicks = rng.binomial(views.astype(int), p_click).astype(float)
    buys = rng.binomial(clicks.astype(int), p_buy).astype(float)
    value = np.round(buys * price * rng.uniform(0.5, 1.5, n), 2)
    return {"view": views, "click": clicks, "purchase": buys, "value": value}
