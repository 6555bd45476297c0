"""Peeking every day: naive fixed-horizon tests inflate false positives; the sequential mode must not.

Simulations are vectorised and seeded, so each runs in well under a second. Tolerances are
binomial: a rate estimated from `sims` runs is allowed 3 standard errors.
"""

import numpy as np
import pytest

from tests.unit.abtest_helpers import EXPERIMENTS_DIR  # noqa: F401  (puts abtest on sys.path)

from abtest import frequentist, sequential  # isort: skip

ALPHA, SIMS, LOOKS = 0.05, 1000, 20


def _cumulative_counts(rng, p0, p1, per_look):
    x0 = rng.binomial(per_look, p0, (SIMS, LOOKS)).cumsum(axis=1)
    x1 = rng.binomial(per_look, p1, (SIMS, LOOKS)).cumsum(axis=1)
    n = per_look * np.arange(1, LOOKS + 1)
    return x0, x1, np.broadcast_to(n, (SIMS, LOOKS))


def _tolerance(rate):
    return 3 * np.sqrt(rate * (1 - rate) / SIMS)


def _sequential_reject(x0, x1, n, tau):
    theta, se = frequentist.two_proportion_z(x0, n, x1, n)[:2]
    p_bar = (x0[:, -1:] + x1[:, -1:]) / (2 * n[:, -1:])
    p, low, high = sequential.always_valid(theta, se**2, tau**2 * p_bar * (1 - p_bar), ALPHA)
    return p, low, high


def test_aa_false_positive_rates_fixed_naive_peeking_and_sequential():
    rng = np.random.default_rng(2024)
    x0, x1, n = _cumulative_counts(rng, 0.1, 0.1, 200)
    p_fixed = frequentist.two_proportion_z(x0, n, x1, n)[3]

    final_only = np.mean(p_fixed[:, -1] < ALPHA)
    peeking = np.mean((p_fixed < ALPHA).any(axis=1))
    p_seq, *_ = _sequential_reject(x0, x1, n, tau=0.1)
    seq = np.mean((p_seq < ALPHA).any(axis=1))

    assert final_only <= ALPHA + _tolerance(ALPHA)
    assert peeking > 2 * ALPHA, f"naive peeking should inflate the error, got {peeking}"
    assert seq <= ALPHA + _tolerance(ALPHA), f"sequential false-positive rate {seq}"


def test_sequential_p_is_monotone_and_confidence_sequence_covers_the_truth():
    rng = np.random.default_rng(7)
    x0, x1, n = _cumulative_counts(rng, 0.10, 0.12, 300)
    p, low, high = _sequential_reject(x0, x1, n, tau=0.1)
    assert np.all(np.diff(p, axis=1) <= 0)
    # Time-uniform coverage: the true difference stays inside at every look in >= 1-alpha runs.
    covered = np.mean(((low <= 0.02) & (high >= 0.02)).all(axis=1))
    assert covered >= 1 - ALPHA - _tolerance(ALPHA)


def test_sequential_has_power_for_a_planted_lift():
    rng = np.random.default_rng(9)
    x0, x1, n = _cumulative_counts(rng, 0.10, 0.13, 1000)  # +30% relative
    p_seq, *_ = _sequential_reject(x0, x1, n, tau=0.1)
    power = np.mean(p_seq[:, -1] < ALPHA)
    assert power >= 0.8, f"power {power}"


def test_msprt_matches_closed_form_at_one_look():
    # Λ for θ̂=0.02, V=1e-4, τ²=4e-4: sqrt(1/5)·exp(4e-4·4e-4 / (2·1e-4·5e-4)) = sqrt(.2)·e^1.6
    p = sequential.msprt_p(0.02, 1e-4, 4e-4)
    assert p == pytest.approx(1 / (np.sqrt(0.2) * np.exp(1.6)))
    # and the CS is exactly the set of θ where the same test would not reject
    half = sequential.cs_halfwidth(1e-4, 4e-4, 0.05)
    assert sequential.msprt_p(half, 1e-4, 4e-4) == pytest.approx(0.05)


def test_undefined_looks_are_skipped():
    p, low, high = sequential.always_valid([np.nan, 0.01, 0.0], [np.nan, 1e-4, 1e-4], 1e-4, 0.05)
    assert p[0] == 1.0 and np.isinf(low[0]) and np.isfinite(low[1])
    assert p[2] == p[1] and high[2] <= high[1]
