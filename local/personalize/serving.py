"""GetRecommendations / GetPersonalizedRanking on a trained model.

Scores: the raw model scores of the candidate items (after exclusions and the filter) go through
a softmax, like Personalize's user-personalization scores, so every returned score is in (0, 1)
and they sum to at most 1 over the list (exactly 1 over all candidates). Raw scores are first
standardised (divided by their standard deviation over candidates) so the softmax temperature
does not depend on the scale of a model's scores. For ranking, the softmax runs over the input list.

Exploration (USER_PERSONALIZATION only, exploration.py): items younger than
explorationItemAgeCutOff are weighed into the ranking by explorationWeight; the scores are the
softmax of the ranking scores.
"""

from __future__ import annotations

import numpy as np

from local.personalize import exploration
from local.personalize.evaluation import top_indices
from local.personalize.filters import CompiledFilter, FilterError, compile_filter

MAX_RESULTS = 500
MAX_INPUT_LIST = 500
SOFTMAX_SCALE = 2.0


class RequestError(ValueError):
    """Bad request input (InvalidInputException)."""


def get_recommendations(
    model,
    *,
    user_id=None,
    item_id=None,
    num_results=25,
    filter=None,
    filter_values=None,
    context=None,
    campaign_config=None,
) -> list[dict]:
    num_results = _check_num_results(num_results)
    kind = model.recipe_type
    if kind == "PERSONALIZED_RANKING":
        raise RequestError(f"{model.recipe} ranks an input list: call GetPersonalizedRanking instead.")
    if kind == "USER_PERSONALIZATION" and not user_id:
        raise RequestError(f"userId is required for {model.recipe} (USER_PERSONALIZATION).")
    if kind == "RELATED_ITEMS" and not item_id:
        raise RequestError(f"itemId is required for {model.recipe} (RELATED_ITEMS).")

    if kind == "RELATED_ITEMS":
        index = model.catalog.index.get(str(item_id))
        scores = model.item_scores_for_item(index) if index is not None else model.catalog.counts * 1e-6
        scores = np.array(scores, dtype=np.float64)
        if index is not None:
            scores[index] = -np.inf
    else:
        scores = np.array(model.user_scores(str(user_id) if user_id else None), dtype=np.float64)
        if user_id:  # never re-recommend what the user interacted with (evaluation.py measures the same)
            items, *_ = model.history.profile(str(user_id))
            scores[np.asarray(items, dtype=np.int64)] = -np.inf
    allowed = _filter_mask(model, filter, filter_values, user_id, item_id)
    if allowed is not None:
        scores[~allowed] = -np.inf

    if kind == "USER_PERSONALIZATION":
        try:
            scores = exploration.rank_scores(scores, model.catalog, model.now, campaign_config)
        except exploration.ExplorationConfigError as exc:
            raise RequestError(str(exc)) from exc
    probabilities = softmax(scores)
    top = top_indices(scores, num_results)
    return [
        {"itemId": str(model.catalog.item_ids[i]), "score": round(float(probabilities[i]), 7)} for i in top
    ]


def get_personalized_ranking(
    model, *, user_id, input_list, filter=None, filter_values=None, context=None
) -> list[dict]:
    if model.recipe_type not in ("PERSONALIZED_RANKING", "USER_PERSONALIZATION"):
        raise RequestError(f"{model.recipe} cannot rank items: use a personalized-ranking campaign.")
    if not user_id:
        raise RequestError("userId is required for GetPersonalizedRanking.")
    if not input_list or len(input_list) > MAX_INPUT_LIST:
        raise RequestError(
            f"inputList must hold 1 to {MAX_INPUT_LIST} item ids, got {len(input_list or [])}."
        )
    all_scores = np.array(model.user_scores(str(user_id)), dtype=np.float64)
    allowed = _filter_mask(model, filter, filter_values, user_id, None)
    known, unknown = [], []
    for item in dict.fromkeys(str(i) for i in input_list):  # keep first occurrence, like a set in order
        index = model.catalog.index.get(item)
        if index is None:
            unknown.append(item)
        elif allowed is None or allowed[index]:
            known.append((item, index))
    raw = np.array([all_scores[i] for _, i in known])
    probabilities = softmax(raw) if len(raw) else raw
    order = np.argsort(-raw, kind="stable")
    ranked = [{"itemId": known[i][0], "score": round(float(probabilities[i]), 7)} for i in order]
    # Items the model has never seen cannot be scored: they go last, in input order, score 0.
    return ranked + [{"itemId": item, "score": 0.0} for item in unknown]


def softmax(scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    out = np.zeros_like(scores, dtype=np.float64)
    if not finite.any():
        return out
    values = scores[finite]
    spread = values.std() or 1.0
    z = SOFTMAX_SCALE * (values - values.max()) / spread
    e = np.exp(z)
    out[finite] = e / e.sum()
    return out


def _check_num_results(num_results) -> int:
    try:
        value = int(num_results)
    except (TypeError, ValueError):
        raise RequestError(f"numResults must be an integer from 1 to {MAX_RESULTS}.") from None
    if not 1 <= value <= MAX_RESULTS:
        raise RequestError(f"numResults must be from 1 to {MAX_RESULTS}, got {value}.")
    return value


def _filter_mask(model, filter, filter_values, user_id, item_id):
    if filter is None:
        if filter_values:
            raise RequestError("filterValues were given without a filterArn.")
        return None
    try:
        compiled = filter if isinstance(filter, CompiledFilter) else compile_filter(filter)
        return compiled.allowed(model, user_id=user_id, item_id=item_id, filter_values=filter_values)
    except FilterError as exc:
        raise RequestError(str(exc)) from exc
