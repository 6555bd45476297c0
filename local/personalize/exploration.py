"""Item exploration of user-personalization campaigns (campaignConfig.itemExplorationConfig).

Personalize's documentation (create-recommender-configure-exploration.html, same settings for a
campaign's itemExplorationConfig; the lines are quoted in docs/architecture.md):
- explorationWeight, 0 to 1, default 0.3: "With more exploration, recommendations include more
  items with less item interactions data or relevance based on previous behavior. At zero, no
  exploration occurs and recommendations are based on current data (relevance)."
- explorationItemAgeCutOff, days, default 30: "the maximum item age in days since the latest
  interaction across all items ... This defines the scope of item exploration based on item age";
  age comes from the creation timestamp or, without one, from the interactions data.

So only items within the age cut-off are explored, and they are weighed into the ranking, not
given reserved slots: ranking score = (1 − w)·relevance + w·novelty for those items and
(1 − w)·relevance for every other item, where relevance is the model score scaled to [0, 1]
over the candidates and novelty = 1 / (1 + interactions) (fewer interactions, more to learn).
Items outside the cut-off keep their order among themselves, and a catalogue without young items
gets exactly the list it would get at weight 0. (Personalize also uses impressions to steer
exploration; the local engine does not count impressions.)
"""

from __future__ import annotations

import numpy as np

from local.personalize.models.base import SECONDS_PER_DAY

DEFAULT_WEIGHT = 0.3
DEFAULT_AGE_CUTOFF_DAYS = 30.0


class ExplorationConfigError(ValueError):
    pass


def settings(campaign_config: dict | None) -> tuple[float, float]:
    config = (campaign_config or {}).get("itemExplorationConfig") or {}
    try:
        weight = float(config.get("explorationWeight", DEFAULT_WEIGHT))
        cutoff = float(config.get("explorationItemAgeCutOff", DEFAULT_AGE_CUTOFF_DAYS))
    except (TypeError, ValueError):
        raise ExplorationConfigError("itemExplorationConfig values must be numbers.") from None
    if not 0.0 <= weight <= 1.0:
        raise ExplorationConfigError("explorationWeight must be between 0 and 1.")
    return weight, cutoff


def explorable(catalog, now: float, cutoff_days: float) -> np.ndarray:
    """Items created (else first seen) within the cut-off of the newest event; unknown age: no."""
    with np.errstate(invalid="ignore"):
        return (now - catalog.created) <= cutoff_days * SECONDS_PER_DAY


def rank_scores(scores: np.ndarray, catalog, now: float, campaign_config: dict | None) -> np.ndarray:
    """The scores the list is ranked by once exploration is weighed in (see module doc)."""
    weight, cutoff = settings(campaign_config)
    young = explorable(catalog, now, cutoff) & np.isfinite(scores)
    if weight == 0 or not young.any():
        return scores
    finite = np.isfinite(scores)
    low, high = scores[finite].min(), scores[finite].max()
    relevance = np.where(finite, (scores - low) / (high - low or 1.0), -np.inf)
    novelty = np.where(young, 1.0 / (1.0 + catalog.counts), 0.0)
    return (1.0 - weight) * relevance + weight * novelty
