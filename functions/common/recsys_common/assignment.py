"""Deterministic A/B assignment: GrowthBook's hashing and bucket ranges (SDK specification).

Pure functions, no AWS: the sticky storage of assignments lives in `assignments_store.py`.
Verified against GrowthBook's published SDK test cases (tests/unit/data/growthbook_cases.json).
"""

from __future__ import annotations

from collections.abc import Sequence

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a32(text: str) -> int:
    """FNV-1a, 32 bit, over the string's code points (as GrowthBook's Python SDK does)."""
    h = _FNV_OFFSET
    for ch in text:
        h = ((h ^ ord(ch)) * _FNV_PRIME) & 0xFFFFFFFF
    return h


def gb_hash(seed: str, value: str, version: int = 2) -> float | None:
    """GrowthBook `hash(seed, value, version)` into [0, 1); None for unknown versions.

    Version 2 hashes twice so that similar seeds do not give correlated buckets across experiments.
    """
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + value))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(value + seed) % 1000) / 1000
    return None


def equal_weights(n: int) -> list[float]:
    return [1.0 / n] * n if n > 0 else []


def bucket_ranges(n: int, coverage: float = 1.0, weights: Sequence[float] | None = None):
    """GrowthBook `getBucketRanges`: one [start, end) per variant, shrunk by coverage.

    Weights that do not match the variant count or do not sum to ~1 fall back to equal weights.
    """
    coverage = min(1.0, max(0.0, coverage))
    if weights is None or len(weights) != n or not 0.99 <= sum(weights) <= 1.01:
        weights = equal_weights(n)
    ranges, cumulative = [], 0.0
    for w in weights:
        start = cumulative
        cumulative += w
        ranges.append((start, start + coverage * w))
    return ranges


def in_range(n: float, r: Sequence[float]) -> bool:
    return r[0] <= n < r[1]


def choose_variation(n: float, ranges) -> int:
    """Index of the range holding n, or -1 (outside coverage)."""
    for i, r in enumerate(ranges):
        if in_range(n, r):
            return i
    return -1


def normalise(weights: Sequence[float]) -> list[float]:
    """Relative weights (33/33/34 or 0.2/0.8) as shares summing to 1."""
    total = float(sum(weights))
    if total <= 0:
        return equal_weights(len(weights))
    return [float(w) / total for w in weights]


def assign(seed: str, user_id: str, names: Sequence[str], weights: Sequence[float], coverage: float = 1.0):
    """(variant name or None when outside coverage, bucket) for one user."""
    bucket = gb_hash(seed, user_id, 2)
    index = choose_variation(bucket, bucket_ranges(len(names), coverage, normalise(weights)))
    return (names[index] if index >= 0 else None), bucket
