"""Sequence awareness, exploration and factored EASE of the user-personalization model (issue 13),
on small planted data: each test fails if its property is lost (order, next item, fold-in shift,
exploration confined to young items, the factored closed form)."""

import numpy as np
import pandas as pd
import scipy.sparse as sp
from test_models import DAY, T0, ids, planted_interactions, planted_items, train

from local.personalize import exploration
from local.personalize.models.factored import Factors
from local.personalize.models.sequence import transition_matrix
from local.personalize.models.user_personalization import ease
from local.personalize.serving import get_recommendations

NO_EXPLORATION = {"itemExplorationConfig": {"explorationWeight": "0"}}


def drifting_interactions(n_users=80, per_phase=10, seed=0) -> pd.DataFrame:
    """Four taste groups; every user's taste moves from one to the next (u0: a→b, u1: b→c, u2:
    c→d, u3: d→a, ...), `per_phase` events each, so what comes next is what was watched last."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        phases = ["abcd"[u % 4], "abcd"[(u + 1) % 4]]
        for p, group in enumerate(phases):
            for k, i in enumerate(rng.choice(30, size=per_phase, replace=False)):
                rows.append(
                    (f"u{u}", f"{group}{i}", T0 + u * 3600 + (p * per_phase + k) * 60, "click", np.nan)
                )
    return pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"])


def group_share(recs, group: str) -> float:
    return sum(i.startswith(group) for i in ids(recs)) / len(recs)


def test_tuning_on_the_hold_out_chooses_order_awareness_when_taste_drifts():
    model, metrics = train("aws-user-personalization", drifting_interactions())
    assert model.seq.half_life > 0 or model.seq.markov_weight > 0  # the hold-out rewards order
    plain, plain_metrics = train(
        "aws-user-personalization",
        drifting_interactions(),
        config={"algorithmHyperParameters": {"sequenceHalfLife": "0", "markovWeight": "0"}},
    )
    assert plain.seq.half_life == 0 and plain.seq.markov_weight == 0  # pinned, not tuned
    ndcg = "normalized_discounted_cumulative_gain_at_10"
    assert metrics[ndcg] > 1.2 * plain_metrics[ndcg]
    # u0 went a→b: the latest phase leads.
    assert (
        group_share(get_recommendations(model, user_id="u0", num_results=10, campaign_config={}), "b") >= 0.8
    )


def test_the_same_items_in_another_order_give_another_list():
    pinned = {"algorithmHyperParameters": {"sequenceHalfLife": "2", "markovWeight": "0"}}
    model, _ = train("aws-user-personalization", config=pinned)
    a_items, b_items = [f"a{i}" for i in range(5)], [f"b{i}" for i in range(5)]
    for k, item in enumerate(a_items + b_items):
        model.record_event("a_then_b", item, "click", T0 + 30 * DAY + k)
    for k, item in enumerate(b_items + a_items):
        model.record_event("b_then_a", item, "click", T0 + 30 * DAY + k)
    first = get_recommendations(model, user_id="a_then_b", num_results=6, campaign_config=NO_EXPLORATION)
    second = get_recommendations(model, user_id="b_then_a", num_results=6, campaign_config=NO_EXPLORATION)
    assert group_share(first, "b") > 0.5 and group_share(second, "a") > 0.5


def test_fold_in_shifts_a_long_history_towards_the_latest_events():
    model, _ = train("aws-user-personalization", drifting_interactions())
    user = "u1"  # b then c, never a
    before = get_recommendations(model, user_id=user, num_results=10, campaign_config=NO_EXPLORATION)
    assert group_share(before, "a") <= 0.2
    for k, item in enumerate(["a0", "a1", "a2", "a3", "a4"]):
        model.record_event(user, item, "click", T0 + 40 * DAY + k)
    after = get_recommendations(model, user_id=user, num_results=10, campaign_config=NO_EXPLORATION)
    assert group_share(after, "a") >= 0.6


def test_next_item_term_follows_the_transitions_of_the_training_data():
    # Histories a0→a1→…→a9 for every user: after a4 comes a5.
    rows = [
        (f"u{u}", f"a{i}", T0 + u * 3600 + i * 60, "click", np.nan)
        for u in range(120)
        for i in range(10)
        if (u + i) % 7  # some gaps, so items are not all co-watched
    ]
    df = pd.DataFrame(rows, columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"])
    pinned = {"algorithmHyperParameters": {"sequenceHalfLife": "0", "markovWeight": "1"}}
    model, _ = train("aws-user-personalization", df, config=pinned)
    for k, item in enumerate(["a1", "a2", "a3", "a4"]):
        model.record_event("viewer", item, "click", T0 + 30 * DAY + k)
    assert ids(get_recommendations(model, user_id="viewer", num_results=1, campaign_config={})) == ["a5"]


def test_transition_matrix_counts_consecutive_pairs_per_user_in_time_order():
    # user 0: items 2 (t=5), 0 (t=1), 1 (t=3) -> 0→1→2 ; user 1: 1 (t=1), 2 (t=2) -> 1→2
    T = transition_matrix(np.array([0, 3, 5]), np.array([2, 0, 1, 1, 2]), np.array([5, 1, 3, 1, 2]), 3)
    assert np.allclose(T.toarray(), [[0, 1, 0], [0, 0, 1], [0, 0, 0]])


def test_exploration_only_touches_items_younger_than_the_cut_off():
    old_rare = {"old_rare": ("GroupA", T0 - 400 * DAY)}  # few interactions, but old
    items = planted_items({**old_rare, "fresh": ("GroupA", T0 + 0.5 * DAY)})
    model, _ = train("aws-user-personalization", items=items)
    scores = model.user_scores("u1")
    scores[model.history.profile("u1")[0]] = -np.inf
    explored = exploration.rank_scores(scores, model.catalog, model.now, {})  # default weight 0.3
    young = exploration.explorable(model.catalog, model.now, 30)
    assert young.tolist() == [i == "fresh" for i in model.catalog.item_ids]
    old = ~young & np.isfinite(scores)
    # Items outside the cut-off keep their order; only the young item moves up.
    assert (np.argsort(-explored[old], kind="stable") == np.argsort(-scores[old], kind="stable")).all()
    fresh = model.catalog.index["fresh"]
    assert (explored[old] > explored[fresh]).mean() < (scores[old] > scores[fresh]).mean()
    recs = ids(get_recommendations(model, user_id="u1", num_results=10, campaign_config={}))
    assert "fresh" in recs and "old_rare" not in recs


def test_a_catalogue_without_young_items_loses_nothing_to_exploration():
    model, _ = train(
        "aws-user-personalization", items=planted_items({"old_rare": ("GroupA", T0 - 400 * DAY)})
    )
    for user in ("u1", "u40"):
        weighted = {"itemExplorationConfig": {"explorationWeight": "0.3"}}
        assert get_recommendations(model, user_id=user, num_results=25, campaign_config=weighted) == (
            get_recommendations(model, user_id=user, num_results=25, campaign_config=NO_EXPLORATION)
        )


def test_item_age_falls_back_to_the_first_interaction():
    late = pd.DataFrame(
        [(f"u{u}", "late_item", T0 + 60 * DAY + u, "click", np.nan) for u in range(3)],
        columns=["USER_ID", "ITEM_ID", "TIMESTAMP", "EVENT_TYPE", "EVENT_VALUE"],
    )
    model, _ = train("aws-user-personalization", pd.concat([planted_interactions(), late]))  # no items data
    young = exploration.explorable(model.catalog, model.now, 30)
    assert model.catalog.item_ids[young].tolist() == ["late_item"]


def test_factored_ease_at_full_rank_is_exact_ease():
    rng = np.random.default_rng(4)
    X = sp.csr_matrix((rng.random((50, 12)) < 0.3).astype(float))
    lam = 3.0
    B, _ = ease(X, lam)
    _, s, vt = np.linalg.svd(X.toarray(), full_matrices=False)
    score = Factors(vt.T.astype(np.float32), s).scorer(lam)
    queries = (rng.random((5, 12)) < 0.4).astype(float)
    assert np.allclose(score(sp.csr_matrix(queries)), queries @ B.astype(np.float64), atol=1e-4)
