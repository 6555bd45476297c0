"""ListRecipes / DescribeRecipe: the recipes the engine trains (training.RECIPES), with Personalize's ARNs."""

from __future__ import annotations

from local.personalize.errors import InvalidInput, NotFound
from local.personalize.ops import operation, page, shaped
from local.personalize.training import RECIPES

RELEASED = 1546300800.0  # fixed creation time of the built-in recipes (2019-01-01)
DESCRIPTIONS = {
    "USER_PERSONALIZATION": "Personalised top-N for a user (EASE item-item model); learns from PutEvents at once.",
    "PERSONALIZED_RANKING": "Re-ranks an input list of items for a user.",
    "RELATED_ITEMS": "Items similar to a given item (co-occurrence, with item metadata for aws-similar-items).",
    "POPULAR_ITEMS": "The most popular (or trending) items, the same list for everyone.",
}


def recipe_arn(name: str) -> str:
    return f"arn:aws:personalize:::recipe/{name}"


def recipe_name(arn: str) -> str:
    name = arn.rsplit("/", 1)[-1] if arn.startswith("arn:aws:personalize:::recipe/") else None
    if name not in RECIPES:
        known = ", ".join(recipe_arn(r) for r in RECIPES)
        raise InvalidInput(f"Unknown recipeArn {arn!r}; the local engine trains: {known}.")
    return name


def describe(name: str) -> dict:
    kind = RECIPES[name]
    return {
        "name": name,
        "recipeArn": recipe_arn(name),
        "algorithmArn": f"arn:aws:personalize:::algorithm/{name}",
        "featureTransformationArn": "arn:aws:personalize:::feature-transformation/JSON-percentile-filtering",
        "status": "ACTIVE",
        "description": DESCRIPTIONS[kind],
        "recipeType": kind,
        "creationDateTime": RELEASED,
        "lastUpdatedDateTime": RELEASED,
    }


@operation("personalize")
def ListRecipes(engine, req):
    if req.get("domain"):
        return {"recipes": []}  # domain recipes (recommenders) are not offered
    return page("ListRecipes", "recipes", [describe(n) for n in sorted(RECIPES)], req)


@operation("personalize")
def DescribeRecipe(engine, req):
    try:
        name = recipe_name(req["recipeArn"])
    except InvalidInput as exc:
        raise NotFound(str(exc)) from None
    return shaped("DescribeRecipe", "recipe", describe(name))
