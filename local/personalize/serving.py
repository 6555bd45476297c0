"""GetRecommendations / GetPersonalizedRanking on a trained model.

Scores: the raw model scores of the candidate items (after exclusions and the filter) go through
a softmax, like Personalize's user-personalization scores, so every returned score is in (0, 1)
and they sum to at most 1 over the list (exactly 1 over all candidates). Raw scores are first
standardised (divided by their standard deviation over candidates) so the softmax temperature
does not depend on the scale of a model's scores. For ranking, the softmax runs over the input list.

Exploration (USER_PERSONALIZATION only): campaignConfig itemExplorationConfig explorationWeight
(default 0.3) is the share of the list given to cold items: items created within
explorationItemAgeCutOff days (default 30) of the newest event the model has seen, or with at
most COLD_INTERACTIONS interactions. They take every (1/weight)-th slot, best-scored first.
"""

from __future__ import annotations

import numpy as np

from local.personalize.evaluation import top_indices
from local.personalize.filters import CompiledFilter, FilterError, compile_filter
from local.personalize.models.base import SECONDS_PER_DAY

MAX_RESULTS = 500
MAX_INPUT_LIST = 500
COLD_INTERACTIONS = 2
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

    probabilities = softmax(scores)
    top = top_indices(scores, num_results)
    if kind == "USER_PERSONALIZATION":
        top = _explore(model, scores, top, num_results, campaign_config)
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


def _explore(model, scores, top, num_results, campaign_config) -> np.ndarray:
    config = (campaign_config or {}).get("itemExplorationConfig") or {}
    try:
        weight = float(config.get("explorationWeight", 0.3))
        cutoff_days = float(config.get("explorationItemAgeCutOff", 30))
    except ValueError:
        raise RequestError("itemExplorationConfig values must be numbers.") from None
    if not 0.0 <= weight <= 1.0:
        raise RequestError("explorationWeight must be between 0 and 1.")
    slots = round(weight * num_results)
    if slots == 0:
        return top
    catalog = model.catalog
    young = (model.now - catalog.created) <= cutoff_days * SECONDS_PER_DAY  # NaN (no timestamp) -> False
    cold = (young | (catalog.counts <= COLD_INTERACTIONS)) & np.isfinite(scores)
    cold_ranked = top_indices(np.where(cold, scores, -np.inf), slots).tolist()
    if not cold_ranked:
        return top
    warm = [i for i in top if not cold[i]]
    merged, step = [], max(1, round(1 / weight))
    cold_iter, warm_iter = iter(cold_ranked), iter(warm)
    for position in range(num_results):
        source = cold_iter if (position + 1) % step == 0 else warm_iter
        pick = next(source, None)
        if pick is None:
            pick = next(warm_iter if source is cold_iter else cold_iter, None)
        if pick is None:
            break
        merged.append(pick)
    return np.array(merged, dtype=np.int64)
