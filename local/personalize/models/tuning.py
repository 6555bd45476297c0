"""Hyperparameter tuning of the user-personalization models on a hold-out inside the training data.

The hold-out is Personalize's kind (the latest 10% of the interactions of a random share of the
users, in TIMESTAMP order); every candidate is scored exactly as serving scores a user (the same
`score_profiles` call), so what is tuned is what is served. Coordinate ascent keeps it cheap:
λ first (one matrix per value), then the sequence settings (only the user rows change).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from local.personalize.models.sequence import SequenceParams, blend, profile_rows, transition_matrix

TUNING_USER_FRAC = 0.5  # half the users give a steadier validation signal than 10% (measured on ML-100k)
MAX_TUNING_USERS = 400  # enough to rank a handful of settings; bounds tuning cost on big data
HALF_LIVES = (2.0, 4.0, 8.0, 0.0)  # positions; 0 = order ignored (16 was never the best on ML-100k)
MARKOV_WEIGHTS = (0.0, 0.1, 0.3, 0.6)


@dataclass
class Holdout:
    fit: sp.csr_matrix  # users × items, held-out events removed
    fit_ts: np.ndarray  # timestamps aligned with fit.data
    profiles: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # held-out users' remaining history
    targets: list[np.ndarray]  # their held-out items


def holdout_latest(history, n_items: int, seed: int, user_frac=TUNING_USER_FRAC, item_frac=0.1) -> Holdout:
    """Remove the latest `item_frac` of the events of a random `user_frac` of users (those with 2+)."""
    indptr, items, ts = history.indptr, history.items.astype(np.int64), history.ts
    weights = history.weights.astype(np.float64)
    counts = np.diff(indptr)
    eligible = np.flatnonzero(counts >= 2)
    rng = np.random.default_rng(seed)
    size = min(max(1, round(len(eligible) * user_frac)), MAX_TUNING_USERS, len(eligible))
    keep = np.ones(len(items), dtype=bool)
    profiles, targets = [], []
    for u in np.sort(rng.choice(eligible, size=size, replace=False)) if len(eligible) else []:
        lo, hi = indptr[u], indptr[u + 1]
        order = lo + np.argsort(ts[lo:hi], kind="stable")
        n_hold = max(1, round((hi - lo) * item_frac))
        held, rest = order[-n_hold:], order[:-n_hold]
        keep[held] = False
        profiles.append((items[rest], weights[rest], ts[rest]))
        targets.append(items[held])
    # History rows are sorted by user, so the kept events are the CSR arrays as they stand.
    users = np.repeat(np.arange(len(counts)), counts)[keep]
    fit_indptr = np.searchsorted(users, np.arange(len(counts) + 1)).astype(np.int64)
    fit = sp.csr_matrix((np.log2(1.0 + weights[keep]), items[keep], fit_indptr), shape=(len(counts), n_items))
    return Holdout(fit, ts[keep], profiles, targets)


def score_profiles(
    base: Callable, T: sp.csr_matrix | None, profiles, n_items: int, params: SequenceParams
) -> np.ndarray:
    """Scores of a batch of user histories: the item-item model on the recency-weighted history,
    plus the next-item term. Serving (one user), evaluation and tuning all call this."""
    X, M = profile_rows(profiles, n_items, params)
    markov = (M @ T).toarray() if T is not None and params.markov_weight > 0 else None
    return blend(base(X), markov, params.markov_weight)


def tune(
    holdout: Holdout,
    scorer_for: Callable[[float], Callable],
    lambdas: list[float],
    n_items: int,
    fixed: dict,
) -> tuple[float, SequenceParams]:
    """Best (λ, sequence settings) by NDCG@10 on the hold-out; `fixed` pins any of them
    ("lambda", "half_life", "markov_weight") so they are not searched. Scores are those of
    `score_profiles`, with the parts that do not change between candidates computed once."""
    params = SequenceParams(**{k: v for k, v in fixed.items() if k != "lambda"})
    if not holdout.targets:
        return fixed.get("lambda", lambdas[len(lambdas) // 2]), params
    T = transition_matrix(holdout.fit.indptr, holdout.fit.indices, holdout.fit_ts, n_items)
    seen = _mask(holdout.profiles, n_items, part=0)
    relevant = _mask([(t,) for t in holdout.targets], n_items, part=0)
    _, M = profile_rows(holdout.profiles, n_items, params)  # the next-item rows do not depend on λ, h
    markov = blend((M @ T).toarray(), None, 0.0)
    rows = {}

    def quality(lam, p) -> float:
        if (lam, p.half_life) not in rows:
            X, _ = profile_rows(holdout.profiles, n_items, p)
            rows[lam, p.half_life] = blend(scorer_for(lam)(X), None, 0.0)
        scores = rows[lam, p.half_life] + p.markov_weight * markov
        scores[seen] = -np.inf
        return mean_ndcg(scores, relevant, 10)

    candidates = [fixed["lambda"]] if "lambda" in fixed else lambdas
    best_q, lam = max(((quality(lam, params), lam) for lam in candidates), key=lambda r: (r[0], -r[1]))
    half_lives = [fixed["half_life"]] if "half_life" in fixed else HALF_LIVES
    weights = [fixed["markov_weight"]] if "markov_weight" in fixed else MARKOV_WEIGHTS
    best = (best_q, params)
    for h in half_lives:
        for w in weights:
            candidate = replace(params, half_life=h, markov_weight=w)
            q = quality(lam, candidate)
            if q > best[0] + 1e-9:
                best = (q, candidate)
    return lam, best[1]


def _mask(profiles, n_items: int, part: int) -> np.ndarray:
    mask = np.zeros((len(profiles), n_items), dtype=bool)
    for row, profile in enumerate(profiles):
        mask[row, profile[part]] = True
    return mask


def mean_ndcg(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Mean NDCG@k of score rows against a boolean relevance matrix of the same shape."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), axis=1), 1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (np.take_along_axis(relevant, top, 1) * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(relevant.sum(axis=1), k) - 1]
    return float(np.mean(dcg / ideal))
