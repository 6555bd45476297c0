"""Personalize-style split and metrics, checked against hand computation and an independent
vectorised re-implementation."""

import math

import numpy as np
import pandas as pd
from test_models import planted_interactions, planted_items

from local.personalize.evaluation import evaluate, personalize_split, ranking_metrics
from local.personalize.models.popularity import PopularityModel
from local.personalize.training import TrainingData, normalise, train_solution_version


def test_metrics_match_a_hand_computation():
    lists = {"u1": ["x", "a", "y", "b"] + [f"f{i}" for i in range(21)], "u2": [f"g{i}" for i in range(25)]}
    targets = {"u1": ["a", "b", "c"], "u2": ["z"]}
    m = ranking_metrics(lists, targets, catalogue_size=100)
    # u1: hits at ranks 2 and 4; u2: none.
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert math.isclose(m["mean_reciprocal_rank_at_25"], (1 / 2 + 0) / 2)
    assert math.isclose(m["precision_at_5"], (2 / 5 + 0) / 2)
    assert math.isclose(m["precision_at_10"], (2 / 10) / 2)
    assert math.isclose(m["precision_at_25"], (2 / 25) / 2)
    assert math.isclose(m["normalized_discounted_cumulative_gain_at_5"], dcg / ideal3 / 2)
    assert math.isclose(m["normalized_discounted_cumulative_gain_at_25"], dcg / ideal3 / 2)
    assert math.isclose(m["coverage"], 50 / 100)


def test_split_holds_out_latest_tenth_of_a_tenth_of_users_deterministically():
    df = normalise(planted_interactions(n_users=100, per_user=20))
    a, b = personalize_split(df, seed=5), personalize_split(df, seed=5)
    assert a.targets == b.targets
    assert personalize_split(df, seed=6).targets != a.targets
    assert len(a.targets) == 10  # 10% of 100 users
    assert set(a.train["USER_ID"]).isdisjoint(a.targets)
    for user, held in a.targets.items():
        rows = df[df["USER_ID"] == user].sort_values("TIMESTAMP")
        assert held == rows["ITEM_ID"].tolist()[-2:]  # ceil(10% of 20) = 2 latest
        assert (
            a.test_input[a.test_input["USER_ID"] == user]["ITEM_ID"].tolist() == rows["ITEM_ID"].tolist()[:-2]
        )
    assert len(a.train) + len(a.test_input) + sum(map(len, a.targets.values())) == len(df)


def independent_metrics(ranked: np.ndarray, relevant: list[set], k: int) -> tuple[float, float]:
    """NDCG@k and precision@k via a relevance matrix (a different code path from evaluation.py)."""
    rel = np.array([[item in r for item in row[:k]] for row, r in zip(ranked, relevant, strict=True)], float)
    gains = rel / np.log2(np.arange(2, k + 2))
    ideal = np.array([(1 / np.log2(np.arange(2, min(k, len(r)) + 2))).sum() for r in relevant])
    return float((gains.sum(1) / ideal).mean()), float(rel.sum(1).mean() / k)


def test_popularity_metrics_agree_with_an_independent_computation():
    df = normalise(planted_interactions(n_users=80, per_user=15, seed=2))
    split = personalize_split(df, seed=9)
    model = PopularityModel.from_events("aws-popularity-count", "POPULAR_ITEMS", split.train, None, None, {})
    model.fit(split.train)
    metrics = evaluate(model, split, catalogue_size=60)
    # Popularity: the training set's most counted items, less the test user's input items.
    counts = split.train["ITEM_ID"].value_counts()
    order = sorted(counts.index, key=lambda i: (-counts[i], model.catalog.index[i]))
    users = list(split.targets)
    seen = split.test_input.groupby("USER_ID")["ITEM_ID"].apply(set).to_dict()
    ranked = np.array([[i for i in order if i not in seen.get(u, set())][:25] for u in users])
    relevant = [set(split.targets[u]) for u in users]
    for k in (5, 10, 25):
        ndcg, precision = independent_metrics(ranked, relevant, k)
        assert math.isclose(metrics[f"normalized_discounted_cumulative_gain_at_{k}"], ndcg, rel_tol=1e-9)
        assert math.isclose(metrics[f"precision_at_{k}"], precision, rel_tol=1e-9)
    assert math.isclose(metrics["coverage"], len(set(ranked.ravel())) / 60)


def test_training_metrics_are_deterministic_and_sensible():
    data = TrainingData(planted_interactions(), planted_items(), None)
    _, m1 = train_solution_version("aws-user-personalization", data, {}, "FULL", None)
    _, m2 = train_solution_version("aws-user-personalization", data, {}, "FULL", None)
    assert m1 == m2
    shuffled = TrainingData(data.interactions.sample(frac=1.0, random_state=1), planted_items(), None)
    _, m3 = train_solution_version("aws-user-personalization", shuffled, {}, "FULL", None)
    assert m3 == m1  # row order does not matter
    assert m1["precision_at_5"] >= m1["precision_at_25"] * 0.5
    extra = pd.concat([planted_items(), pd.DataFrame([{"ITEM_ID": "never", "GENRES": "X"}])])
    _, m4 = train_solution_version(
        "aws-popularity-count", TrainingData(data.interactions, extra, None), {}, "FULL", None
    )
    _, m5 = train_solution_version("aws-popularity-count", data, {}, "FULL", None)
    n_items = data.interactions["ITEM_ID"].nunique()
    # The catalogue counts the items dataset's items too (here one more, never interacted with).
    assert math.isclose(m4["coverage"] * (n_items + 1), m5["coverage"] * n_items, rel_tol=1e-9)
