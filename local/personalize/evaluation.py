"""Offline metrics the way Amazon Personalize documents them (GetSolutionMetrics).

Personalize's guide ("Evaluating a solution version with metrics") says: for every recipe type
other than USER_SEGMENTATION, the training set is 90% of the users and their interactions and
the testing set is the remaining 10% of users; after training, the solution version is given
the oldest 90% of each test user's data as input, and its recommendations are compared with the
latest 10% of that user's interactions.

Here, deterministically for a seed:
- test users: a random 10% (rounded, at least 1) of the users with 2+ interactions;
- per test user, interactions are ordered by TIMESTAMP (ties: input order); the latest
  max(1, ceil(10%)) are the targets, the rest are the input;
- a list of 25 items is produced for every test user, leaving out the user's input items for
  every recipe, exactly as serving.get_recommendations serves a known user (it never re-recommends
  what the user interacted with, popularity included), so the metrics describe the served lists
  and the quality gate compares recipes on the same terms. (Personalize itself leaves that
  exclusion to filters; before popularity excluded seen items too, it "won" the gate on the sample
  by re-listing viewed items: 47% of the held-out targets are funnel steps, view → click →
  purchase, on an item already in the input.)
- metrics, averaged over test users (r = 1-based rank of a target in the list):
  precision_at_K = hits in top K / K;
  mean_reciprocal_rank_at_25 = 1 / r of the first hit in the top 25 (0 without one);
  normalized_discounted_cumulative_gain_at_K = Σ_hits 1/log2(1+r) / Σ_{r=1..min(K,|targets|)} 1/log2(1+r);
  coverage = distinct items in all lists / items in the catalogue (interactions ∪ items dataset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from local.personalize.models.base import event_weights

TOP_K = 25
BATCH_USERS = 256  # users scored at once: bounds the dense batch × catalogue score matrix
METRIC_NAMES = (
    "coverage",
    "mean_reciprocal_rank_at_25",
    "normalized_discounted_cumulative_gain_at_5",
    "normalized_discounted_cumulative_gain_at_10",
    "normalized_discounted_cumulative_gain_at_25",
    "precision_at_5",
    "precision_at_10",
    "precision_at_25",
)


@dataclass
class Split:
    train: pd.DataFrame  # interactions of the training users
    test_input: pd.DataFrame  # oldest ~90% of each test user's interactions
    targets: dict[str, list[str]]  # test user -> items of the latest ~10%


def personalize_split(interactions: pd.DataFrame, seed: int = 42, user_frac=0.1, holdout_frac=0.1) -> Split:
    counts = interactions.groupby("USER_ID").size()
    eligible = np.array(sorted(counts[counts >= 2].index.tolist()), dtype=object)
    rng = np.random.default_rng(seed)
    n_test = max(1, round(len(eligible) * user_frac))
    test_users = set(rng.choice(eligible, size=min(n_test, len(eligible)), replace=False).tolist())
    is_test = interactions["USER_ID"].isin(test_users).to_numpy()
    test = interactions[is_test].copy()
    test["_order"] = np.arange(len(test))
    test = test.sort_values(["USER_ID", "TIMESTAMP", "_order"], kind="stable")
    size = test.groupby("USER_ID")["ITEM_ID"].transform("size").to_numpy()
    position = test.groupby("USER_ID").cumcount().to_numpy()
    n_target = np.maximum(1, np.ceil(size * holdout_frac)).astype(int)
    is_target = position >= size - n_target
    targets = test[is_target].groupby("USER_ID")["ITEM_ID"].apply(list).to_dict()
    return Split(interactions[~is_test], test[~is_target].drop(columns="_order"), targets)


def recommend_for_test_users(model, split: Split, k: int = TOP_K) -> dict[str, list[str]]:
    """Top-k item ids per test user, given only the user's input interactions (folded in)."""
    frame = split.test_input
    codes = frame["ITEM_ID"].map(model.catalog.index)
    frame = frame[codes.notna().to_numpy()]  # items the model never saw cannot be input
    items_all = codes.dropna().to_numpy(np.int64)
    ts_all = frame["TIMESTAMP"].to_numpy(np.float64)
    weights_all = event_weights(frame["EVENT_TYPE"], ts_all, model.now, model.config)
    rows = dict(frame.groupby("USER_ID").indices.items())
    empty = np.zeros(0, np.int64)
    users = list(split.targets)
    profiles = [(items_all[i], weights_all[i], ts_all[i]) for i in (rows.get(u, empty) for u in users)]
    lists = {}
    for lo in range(0, len(users), BATCH_USERS):
        chunk = profiles[lo : lo + BATCH_USERS]
        for user, (items, _, _), user_scores in zip(users[lo:], chunk, _scores(model, chunk), strict=False):
            scores = np.asarray(user_scores, dtype=np.float64).copy()
            scores[items] = -np.inf  # every recipe: see the module docstring
            lists[user] = model.catalog.item_ids[top_indices(scores, k)].tolist()
    return lists


def _scores(model, profiles):
    """One call per batch where the model scores batches (the same function serving uses)."""
    batch = getattr(model, "item_scores_for_profiles", None)
    return batch(profiles) if batch else [model.item_scores_for_profile(*p) for p in profiles]


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best finite scores, best first (ties: lower index first)."""
    finite = np.flatnonzero(np.isfinite(scores))
    k = min(k, len(finite))
    if k == 0:
        return finite[:0]
    values = scores[finite]
    kth = -np.partition(-values, k - 1)[k - 1]
    # Everything above the k-th score, then the lowest indices among the ties at it (deterministic).
    above, tied = finite[values > kth], finite[values == kth]
    part = np.concatenate([above, tied[: k - len(above)]])
    return part[np.lexsort((part, -scores[part]))]


def ranking_metrics(
    lists: dict[str, list[str]], targets: dict[str, list[str]], catalogue_size: int
) -> dict[str, float]:
    """Personalize's metric names from ranked lists and held-out targets (see module docstring)."""
    sums = dict.fromkeys(METRIC_NAMES, 0.0)
    shown: set[str] = set()
    for user, relevant_list in targets.items():
        ranked = lists.get(user, [])[:TOP_K]
        shown.update(ranked)
        relevant = set(relevant_list)
        hits = [item in relevant for item in ranked]
        first = next((r for r, hit in enumerate(hits, 1) if hit), None)
        sums["mean_reciprocal_rank_at_25"] += 1.0 / first if first else 0.0
        for k in (5, 10, 25):
            sums[f"precision_at_{k}"] += sum(hits[:k]) / k
            dcg = sum(1.0 / math.log2(r + 1) for r, hit in enumerate(hits[:k], 1) if hit)
            ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(k, len(relevant)) + 1))
            sums[f"normalized_discounted_cumulative_gain_at_{k}"] += dcg / ideal if ideal else 0.0
    n = max(len(targets), 1)
    metrics = {name: value / n for name, value in sums.items()}
    metrics["coverage"] = len(shown) / max(catalogue_size, 1)
    return metrics


def evaluate(model, split: Split, catalogue_size: int) -> dict[str, float]:
    return ranking_metrics(recommend_for_test_users(model, split), split.targets, catalogue_size)
