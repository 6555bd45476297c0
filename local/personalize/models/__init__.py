"""Models of the local Personalize engine, one class per family of recipes.

`load_model(directory)` restores any saved model; `MODEL_CLASSES` maps recipe names to classes.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from local.personalize.models.base import Model
from local.personalize.models.popularity import PopularityModel
from local.personalize.models.similar import SimilarItemsModel
from local.personalize.models.user_personalization import UserPersonalizationModel

MODEL_CLASSES: dict[str, type[Model]] = {
    "aws-user-personalization": UserPersonalizationModel,
    "aws-user-personalization-v2": UserPersonalizationModel,
    "aws-personalized-ranking": UserPersonalizationModel,
    "aws-personalized-ranking-v2": UserPersonalizationModel,
    "aws-similar-items": SimilarItemsModel,
    "aws-sims": SimilarItemsModel,
    "aws-popularity-count": PopularityModel,
    "aws-trending-now": PopularityModel,
}
_BY_KIND = {cls.kind: cls for cls in MODEL_CLASSES.values()}


def load_model(directory: pathlib.Path) -> Model:
    """Load a model saved with `Model.save` (memory-light: arrays are read straight from the .npz)."""
    directory = pathlib.Path(directory)
    meta = json.loads((directory / "model.json").read_text())
    with np.load(directory / "arrays.npz", allow_pickle=False) as npz:
        arrays = _Arrays({k: npz[k] for k in npz.files})
    return _BY_KIND[meta["kind"]]._from_saved(meta, arrays)


class _Arrays(dict):
    @property
    def files(self):
        return list(self.keys())


__all__ = ["MODEL_CLASSES", "Model", "load_model"]
