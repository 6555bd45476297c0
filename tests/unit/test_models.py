"""Recipes of the local Personalize engine on synthetic data with planted structure."""

import numpy as np
import pandas as pd
import pytest

from local.personalize.models import load_model
from local.personalize.models.user_personalization import UserPersonalizationModel, ease
from local.personalize.serving import RequestError, get_personalized_ranking, get_recommendations
from local.personalize.training import RECIPES, TrainingData, TrainingError, train_solution_version

DAY = 86400
T0 = 1_700_000_000
GROUP_ITEMS = 30


def planted_interactions(n_users=60, per_user=20, seed=0) -> pd.DataFrame:
    """Users u0..u29 only touch items a0..a29, users u30.. only b0..b29 ("a"/"b" taste groups),
    with a popularity skew inside each group (item 0 most popular)."""
    rng = np.random.default_rng(seed)
    rows = []
    weights = 1.0 / np.arange(1, GROUP_ITEMS + 1) ** 0.7
    weights /= weights.sum()
    for u in range(n_users):
        group = "a" if u < n_users // 2 else "b"
        chosen = rng.choice(GROUP_ITEMS, size=per_user, replace=False, p=weights)
        for k, i in enumerate(chosen):
            rows.append((f"u{u}", f"{group}{i}", T0 + u * 3600 + k * 60, "click", np.nan))
    return pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"])


def planted_items(extra: dict | None = None) -> pd.DataFrame:
    rows = [
        (f"{g}{i}", "GroupA" if g == "a" else "GroupB", float(i), T0 - 400 * DAY)
        for g in "ab"
        for i in range(GROUP_ITEMS)
    ]
    for item_id, (genre, created) in (extra or {}).items():
        rows.append((item_id, genre, 1.0, created))
    return pd.DataFrame(rows, columns=["ITEM_ID", "GENRES", "PRICE", "CREATION_TIMESTAMP"])


def train(recipe, interactions=None, items=None, config=None, mode="FULL", previous=None):
    data = TrainingData(interactions if interactions is not None else planted_interactions(), items, None)
    return train_solution_version(recipe, data, config or {}, mode, previous)


def ids(recs):
    return [r["itemId"] for r in recs]


@pytest.fixture(scope="module")
def up_model():
    return train("aws-user-personalization")[0]


def test_every_recipe_trains_and_reports_personalize_metric_names():
    for recipe, recipe_type in RECIPES.items():
        model, metrics = train(recipe, items=planted_items())
        assert model.recipe_type == recipe_type
        assert set(metrics) == {
            "coverage",
            "mean_reciprocal_rank_at_25",
            "normalized_discounted_cumulative_gain_at_5",
            "normalized_discounted_cumulative_gain_at_10",
            "normalized_discounted_cumulative_gain_at_25",
            "precision_at_5",
            "precision_at_10",
            "precision_at_25",
        }
        assert all(0.0 <= v <= 1.0 for v in metrics.values())


def test_user_personalization_recommends_the_users_taste_group_and_excludes_seen_items(up_model):
    recs = get_recommendations(up_model, user_id="u1", num_results=8, campaign_config={})
    seen = set(planted_interactions().query("USER_ID == 'u1'")["ITEM_ID"])
    assert len(recs) == 8
    assert all(item.startswith("a") for item in ids(recs))
    assert not seen & set(ids(recs))
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-6


def test_user_personalization_beats_popularity_on_planted_data():
    _, up = train("aws-user-personalization")
    _, pop = train("aws-popularity-count")
    assert (
        up["normalized_discounted_cumulative_gain_at_10"]
        > 1.5 * pop["normalized_discounted_cumulative_gain_at_10"]
    )


def test_ease_solution_satisfies_its_optimality_conditions():
    # Independent check of the closed form: for the constrained ridge problem the gradient
    # (XᵀX + λI)B − XᵀX must vanish off the diagonal, and diag(B) must be 0.
    rng = np.random.default_rng(3)
    import scipy.sparse as sp

    X = sp.csr_matrix((rng.random((40, 12)) < 0.3).astype(float))
    lam = 5.0
    B, _ = ease(X, lam)
    G = (X.T @ X).toarray()
    grad = (G + lam * np.eye(12)) @ B.astype(np.float64) - G
    off = grad[~np.eye(12, dtype=bool)]
    assert np.allclose(off, 0, atol=1e-4)
    assert np.allclose(np.diag(B), 0)


def test_fold_in_changes_the_next_recommendations(up_model):
    before = ids(get_recommendations(up_model, user_id="newcomer", num_results=5, campaign_config={}))
    for k, item in enumerate(["b1", "b2", "b3", "b4"]):
        up_model.record_event("newcomer", item, "click", T0 + 10 * DAY + k)
    after = get_recommendations(up_model, user_id="newcomer", num_results=5, campaign_config={})
    assert ids(after) != before
    assert all(i.startswith("b") and i not in {"b1", "b2", "b3", "b4"} for i in ids(after))


def test_event_value_threshold_drops_weak_events_before_the_minimum_check():
    df = planted_interactions()
    df["EVENT_VALUE"] = 1.0
    with pytest.raises(TrainingError, match="at least 1000 interactions"):
        train("aws-user-personalization", df, config={"eventValueThreshold": "2"})


def test_too_little_data_fails_with_a_reason():
    small = planted_interactions().head(500)
    with pytest.raises(TrainingError, match="1000 interactions"):
        train("aws-popularity-count", small)
    with pytest.raises(TrainingError, match="Unknown recipe"):
        train("aws-nonsense")


def test_exploration_surfaces_new_items_only_when_weighted():
    items = planted_items({"fresh": ("GroupA", T0 + 0.5 * DAY)})
    model, _ = train("aws-user-personalization", items=items)
    explore = {"itemExplorationConfig": {"explorationWeight": "0.3", "explorationItemAgeCutOff": "30"}}
    none = {"itemExplorationConfig": {"explorationWeight": "0"}}
    assert "fresh" in ids(get_recommendations(model, user_id="u1", num_results=10, campaign_config=explore))
    assert "fresh" not in ids(get_recommendations(model, user_id="u1", num_results=10, campaign_config=none))


def test_update_adds_new_items_and_is_refused_where_personalize_refuses():
    base = planted_interactions()
    model, metrics = train("aws-user-personalization")
    # A new item that group "a" users start to interact with.
    newcomers = pd.DataFrame(
        [(f"u{u}", "a_new", T0 + 20 * DAY + u, "click", np.nan) for u in range(0, 30, 2)],
        columns=base.columns,
    )
    updated, update_metrics = train(
        "aws-user-personalization", pd.concat([base, newcomers]), mode="UPDATE", previous=model
    )
    assert "a_new" in updated.catalog.index and update_metrics == metrics
    recs = ids(
        get_recommendations(updated, user_id="u1", num_results=len(updated.catalog) - 25, campaign_config={})
    )
    assert recs.index("a_new") < min(recs.index(i) for i in recs if i.startswith("b"))
    sims, _ = train("aws-sims")
    with pytest.raises(TrainingError, match="UPDATE"):
        train("aws-sims", mode="UPDATE", previous=sims)
    with pytest.raises(TrainingError, match="FULL first"):
        train("aws-user-personalization", mode="UPDATE", previous=None)


def test_personalized_ranking_orders_by_taste_and_puts_unknown_items_last():
    model, _ = train("aws-personalized-ranking")
    ranked = get_personalized_ranking(model, user_id="u40", input_list=["a3", "unknown", "b5", "a7", "b9"])
    order = ids(ranked)
    assert set(order[:2]) == {"b5", "b9"} and order[-1] == "unknown"
    with pytest.raises(RequestError, match="GetPersonalizedRanking"):
        get_recommendations(model, user_id="u40")


def test_sims_and_similar_items_return_neighbours_and_metadata_helps_cold_items():
    sims, _ = train("aws-sims")
    assert all(i.startswith("a") for i in ids(get_recommendations(sims, item_id="a0", num_results=10)))
    assert "a0" not in ids(get_recommendations(sims, item_id="a0", num_results=10))
    items = planted_items({"cold_b": ("GroupB", T0 - 400 * DAY)})
    similar, _ = train("aws-similar-items", items=items)
    assert all(i.startswith("b") for i in ids(get_recommendations(similar, item_id="cold_b", num_results=10)))
    with pytest.raises(RequestError, match="itemId is required"):
        get_recommendations(similar, user_id="u1")


def test_popularity_and_trending():
    pop, _ = train("aws-popularity-count")
    counts = planted_interactions()["ITEM_ID"].value_counts()
    top = ids(get_recommendations(pop, num_results=5))
    assert [counts[i] for i in top] == sorted(counts.to_numpy(), reverse=True)[:5]
    assert top[0] == counts.index[0]
    burst = pd.DataFrame(
        [(f"u{u}", "b29", T0 + 30 * DAY + u, "click", np.nan) for u in range(0, 60, 3)],
        columns=planted_interactions().columns,
    )
    trending, _ = train("aws-trending-now", pd.concat([planted_interactions(), burst]))
    assert ids(get_recommendations(trending, num_results=1)) == ["b29"]


def test_save_load_roundtrip_keeps_recommendations(tmp_path):
    items = planted_items()
    for recipe in ("aws-user-personalization", "aws-similar-items", "aws-trending-now"):
        model, _ = train(recipe, items=items)
        model.save(tmp_path / recipe)
        loaded = load_model(tmp_path / recipe)
        kwargs = {"item_id": "a1"} if model.recipe_type == "RELATED_ITEMS" else {"user_id": "u3"}
        assert get_recommendations(loaded, **kwargs) == get_recommendations(model, **kwargs)
        assert loaded.metrics == model.metrics
    up = load_model(tmp_path / "aws-user-personalization")
    assert isinstance(up, UserPersonalizationModel)
    before = get_recommendations(up, user_id="fresh_user", num_results=5, campaign_config={})
    for k, item in enumerate(["b1", "b2", "b3"]):  # fold-in works after a load ...
        up.record_event("fresh_user", item, "click", T0 + 50 * DAY + k)
    folded = get_recommendations(up, user_id="fresh_user", num_results=5, campaign_config={})
    assert folded != before
    assert up.trained_until < T0 + 50 * DAY
    up.save(tmp_path / "again")  # ... and folded-in events survive the next save/load
    assert (
        get_recommendations(
            load_model(tmp_path / "again"), user_id="fresh_user", num_results=5, campaign_config={}
        )
        == folded
    )


def test_request_validation():
    model, _ = train("aws-user-personalization")
    with pytest.raises(RequestError, match="userId is required"):
        get_recommendations(model)
    for bad in (0, 501, "ten"):
        with pytest.raises(RequestError, match="numResults"):
            get_recommendations(model, user_id="u1", num_results=bad)
    with pytest.raises(RequestError, match="explorationWeight"):
        get_recommendations(
            model, user_id="u1", campaign_config={"itemExplorationConfig": {"explorationWeight": "2"}}
        )


def test_large_catalogue_path_uses_factored_ease_and_updates_new_items(monkeypatch):
    import local.personalize.models.user_personalization as up

    monkeypatch.setattr(up, "EASE_MAX_ITEMS", 10)  # force the low-rank path on the small planted data
    model, _ = train("aws-user-personalization", config={"algorithmHyperParameters": {"factors": "4"}})
    assert model.method == "factored" and model.B is None
    assert all(
        i.startswith("a")
        for i in ids(get_recommendations(model, user_id="u2", num_results=5, campaign_config={}))
    )
    base = planted_interactions()
    newcomers = pd.DataFrame(
        [(f"u{u}", "b_new", T0 + 20 * DAY + u, "click", np.nan) for u in range(30, 60, 2)],
        columns=base.columns,
    )
    updated, _ = train(
        "aws-user-personalization", pd.concat([base, newcomers]), mode="UPDATE", previous=model
    )
    assert updated.method == "factored" and updated.factors.V.shape[0] == len(updated.catalog)
    ranking = ids(get_recommendations(updated, user_id="u41", num_results=40, campaign_config={}))
    assert ranking.index("b_new") < min(ranking.index(i) for i in ranking if i.startswith("a"))


def test_loose_input_types_are_normalised():
    df = planted_interactions().drop(columns=["EVENT_TYPE", "EVENT_VALUE"])
    df["USER_ID"] = df["USER_ID"].str[1:].astype(int)  # integer ids, no event columns
    model, _ = train("aws-user-personalization", df)
    assert ids(get_recommendations(model, user_id="1", num_results=3, campaign_config={}))
    bad = planted_interactions()
    bad["TIMESTAMP"] = "yesterday"
    with pytest.raises(TrainingError, match="TIMESTAMP"):
        train("aws-user-personalization", bad)


def test_v2_learns_from_item_metadata_so_a_cold_item_reaches_its_genres_fans():
    """-v2 adds the items' categorical fields to the model (side information): an item nobody has
    touched yet scores for the users of its genre; v1, from interactions alone, cannot score it."""
    items = planted_items({"cold_a": ("GroupA", T0 - 400 * DAY)})
    v1, _ = train("aws-user-personalization", items=items)
    v2, _ = train("aws-user-personalization-v2", items=items)
    cold = v2.catalog.index["cold_a"]
    fan, other = v2.user_scores("u1"), v2.user_scores("u40")  # groups "a" and "b"
    assert fan[cold] > 0 and fan[cold] > other[cold]
    assert v1.user_scores("u1")[cold] == 0
    # -v2 has no UPDATE mode: CreateSolutionVersionRequest$trainingMode allows it only for User-Personalization
    # (v1) and HRNN-Coldstart (see test_personalize_rules.py).
    with pytest.raises(TrainingError, match="UPDATE is supported only"):
        train(
            "aws-user-personalization-v2",
            planted_interactions(seed=1),
            items=items,
            mode="UPDATE",
            previous=v2,
        )
