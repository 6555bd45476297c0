"""Training entry point of the local Personalize engine (called by the protocol layer).

FULL: metrics from a model trained on Personalize's split (see evaluation.py), then the served
model trained on all data (reusing the hyperparameters tuned on the split).
UPDATE (user-personalization only, like Personalize): the previous model is extended with new
items and refreshed histories/counts, without re-fitting; its metrics are those of the FULL
version it descends from (an UPDATE is not re-evaluated, since the previous model has already
seen every test user's interactions and a fresh evaluation would be optimistic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from local.personalize.evaluation import evaluate, personalize_split
from local.personalize.models import MODEL_CLASSES, Model
from local.personalize.models.base import select_events

RECIPES: dict[str, str] = {
    "aws-user-personalization": "USER_PERSONALIZATION",
    "aws-user-personalization-v2": "USER_PERSONALIZATION",
    "aws-personalized-ranking": "PERSONALIZED_RANKING",
    "aws-personalized-ranking-v2": "PERSONALIZED_RANKING",
    "aws-similar-items": "RELATED_ITEMS",
    "aws-sims": "RELATED_ITEMS",
    "aws-popularity-count": "POPULAR_ITEMS",
    "aws-trending-now": "POPULAR_ITEMS",
}
# CreateSolutionVersionRequest$trainingMode (botocore personalize 2018-05-22): UPDATE "can only be used when
# ... the input solution was trained with the User-Personalization recipe or the legacy HRNN-Coldstart
# recipe" (User-Personalization is aws-user-personalization; -v2 is another recipe). The engine does not
# train HRNN-Coldstart, so CreateSolution already refuses it; it is listed for the rule's sake.
UPDATE_RECIPES = {"aws-user-personalization", "aws-hrnn-coldstart"}
# https://docs.aws.amazon.com/personalize/latest/dg/limits.html: "Minimum number of unique item interactions
# required to create a solution version or recommender. For a custom solution, you must have this many
# records after any filtering by event type or event value before training." 1000; and "At minimum 25 unique
# user IDs with at least two item interactions for each"
# (https://docs.aws.amazon.com/personalize/latest/dg/domain-use-cases.html, same on data-prep.html).
MIN_INTERACTIONS = 1000
MIN_USERS_WITH_TWO = 25
EVAL_SEED = 42


@dataclass
class TrainingData:
    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None


class TrainingError(Exception):
    """Training cannot proceed; the message says what to fix (becomes failureReason)."""


def train_solution_version(
    recipe: str, data: TrainingData, solution_config: dict | None, training_mode: str, previous: Model | None
) -> tuple[Model, dict[str, float]]:
    config = dict(solution_config or {})
    model_class = MODEL_CLASSES.get(recipe)
    if model_class is None:
        raise TrainingError(f"Unknown recipe {recipe!r}; use one of {sorted(RECIPES)}.")
    if training_mode not in ("FULL", "UPDATE"):
        raise TrainingError(f"trainingMode must be FULL or UPDATE, not {training_mode!r}.")
    events = select_events(normalise(data.interactions), config)
    check_minimum(events, config)
    if training_mode == "UPDATE":
        return _update(recipe, events, data, config, previous)

    split = personalize_split(events, seed=EVAL_SEED)
    probe = _build(model_class, recipe, split.train, data, config)
    catalogue = len(set(events["ITEM_ID"].unique().tolist()) | set(_item_ids(data.items)))
    metrics = evaluate(probe, split, catalogue)
    model = _build(model_class, recipe, events, data, config, preset=probe)
    model.metrics = metrics
    return model, metrics


def _build(model_class, recipe, events, data, config, preset=None, previous=None) -> Model:
    model = model_class.from_events(recipe, RECIPES[recipe], events, data.items, data.users, config, previous)
    if preset is not None and hasattr(preset, "tuned_settings"):
        model.preset = preset.tuned_settings()  # tuned once, on the split
    return model.fit(events, previous)


def _update(recipe, events, data, config, previous) -> tuple[Model, dict[str, float]]:
    if recipe not in UPDATE_RECIPES:
        raise TrainingError(
            f"trainingMode UPDATE is supported only for {sorted(UPDATE_RECIPES)}; use FULL for {recipe}."
        )
    if previous is None or previous.recipe not in UPDATE_RECIPES:
        raise TrainingError("trainingMode UPDATE needs an ACTIVE solution version trained with FULL first.")
    model = _build(MODEL_CLASSES[recipe], recipe, events, data, config, previous=previous)
    model.metrics = dict(getattr(previous, "metrics", {}) or {})
    return model, model.metrics


def normalise(interactions: pd.DataFrame) -> pd.DataFrame:
    """The interface's column types, whatever the caller's frame used."""
    missing = {"USER_ID", "ITEM_ID", "TIMESTAMP"} - set(interactions.columns)
    if missing:
        raise TrainingError(f"The interactions data lacks required columns {sorted(missing)}.")
    df = interactions.copy()
    df["USER_ID"] = df["USER_ID"].astype(str)
    df["ITEM_ID"] = df["ITEM_ID"].astype(str)
    ts = pd.to_numeric(df["TIMESTAMP"], errors="coerce")
    if ts.isna().any():
        raise TrainingError("Some interactions have a TIMESTAMP that is not a number (epoch seconds).")
    df["TIMESTAMP"] = ts.astype(np.int64)
    df["EVENT_TYPE"] = df["EVENT_TYPE"].fillna("").astype(str) if "EVENT_TYPE" in df else ""
    df["EVENT_VALUE"] = pd.to_numeric(df["EVENT_VALUE"], errors="coerce") if "EVENT_VALUE" in df else np.nan
    return df.reset_index(drop=True)


def check_minimum(events: pd.DataFrame, config: dict) -> None:
    scope = (
        " after applying eventType/eventValueThreshold"
        if config.get("eventType") or config.get("eventValueThreshold")
        else ""
    )
    # "Unique": "If you record two item interaction ... events with exactly the same timestamp and identical
    # properties, Amazon Personalize keeps only one of the events" (bulk-data-import.html).
    unique = events.drop_duplicates()
    if len(unique) < MIN_INTERACTIONS:
        raise TrainingError(
            f"Training needs at least {MIN_INTERACTIONS} interactions{scope} (identical events count once); "
            f"found {len(unique)}. Import more data."
        )
    with_two = int((unique.groupby("USER_ID").size() >= 2).sum())
    if with_two < MIN_USERS_WITH_TWO:
        raise TrainingError(
            f"Training needs at least {MIN_USERS_WITH_TWO} users with 2 or more interactions{scope}; found {with_two}."
        )


def _item_ids(items: pd.DataFrame | None) -> list[str]:
    return [] if items is None else items["ITEM_ID"].astype(str).tolist()
