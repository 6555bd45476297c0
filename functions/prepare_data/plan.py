"""The plan the state machine executes: Personalize resource names, recipes and training modes.

Names are deterministic (`<ProjectName>-<Environment>-...`), so a re-run finds what the last run
created (create, and on ResourceAlreadyExistsException derive the ARN from the name) and
dev/staging/prod can share an account. Kept here, in Python, so it is unit-tested.
"""

from __future__ import annotations

import hashlib
import json
import re

# botocore personalize model, CreateSolutionVersionRequest$trainingMode: "The UPDATE option can only
# be used when you already have an active solution version created from the input solution using
# the FULL option and the input solution was trained with the User-Personalization recipe or the
# legacy HRNN-Coldstart recipe" -- not -v2 recipes. Every other variant trains FULL when UPDATE is asked.
UPDATE_RECIPES = {"aws-user-personalization", "aws-hrnn-coldstart"}
MAX_VARIANTS = 5  # the template's VariantNames pattern; statemachines/training.py's history budget
MIN_INCREMENTAL_INTERACTIONS = 1000
MAX_INCREMENTAL_BYTES = 10**9
BASELINE_RECIPE = "aws-popularity-count"
POPULARITY_RECIPES = {"aws-popularity-count", "aws-trending-now"}
DATASET_TYPES = {"interactions": "Interactions", "items": "Items", "users": "Users"}
JOB_ABBREVIATIONS = {"interactions": "int", "items": "itm", "users": "usr"}
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,62}$")
# Filters the serving path can name in a request ("filter": {"name": ..., "values": {...}}).
FILTERS = {
    "category": "INCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY)",
    "exclude_purchased": 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")',
}


class PlanError(ValueError):
    """Configuration that cannot work (the message says which parameter to change)."""


def _name(*parts: str) -> str:
    name = "-".join(parts)
    if not NAME_RE.match(name):
        raise PlanError(
            f"Personalize name {name!r} is invalid (letters, digits, - and _, at most 63): "
            "shorten ProjectName or the variant names."
        )
    return name


def recipe_arn(recipe: str) -> str:
    return f"arn:aws:personalize:::recipe/{recipe}"


def job_suffix(run_id: str) -> str:
    """Short and unique per execution: import job names must be unique and at most 63 long."""
    return hashlib.sha1(run_id.encode()).hexdigest()[:12]


def solution(prefix: str, name: str, recipe: str, training_mode: str, campaign: bool) -> dict:
    short = recipe.removeprefix("aws-")
    entry = {
        "name": name,
        "recipe": recipe,
        "recipeArn": recipe_arn(recipe),
        # the recipe is part of the name: a solution's recipe cannot change, a new recipe is a new solution
        "solutionName": _name(prefix, name, short),
        "trainingMode": training_mode,
        "isPopularity": recipe in POPULARITY_RECIPES,
    }
    if campaign:
        entry["campaignName"] = _name(prefix, name)
    return entry


def variants(
    prefix: str,
    names: list[str],
    recipes: list[str],
    record: dict | None,
    wanted: list[str] | None,
    training_mode: str,
) -> list[dict]:
    """Variants to train; UPDATE only where Personalize allows it (user-personalization with a FULL version)."""
    if len(recipes) == 1:
        recipes = recipes * len(names)
    if len(recipes) != len(names):
        raise PlanError(f"VariantRecipes names {len(recipes)} recipes for {len(names)} variants; give one per variant.")  # fmt: skip
    if len(names) > MAX_VARIANTS:
        raise PlanError(f"VariantNames names {len(names)} variants; at most {MAX_VARIANTS} are supported.")
    unknown = sorted(set(wanted or []) - set(names))
    if unknown:
        raise PlanError(f"unknown variant(s) {unknown} in the execution input; configured: {names}")
    existing = (record or {}).get("variants", {})
    out = []
    for name, recipe in zip(names, recipes, strict=True):
        if wanted and name not in wanted:
            continue
        entry = solution(prefix, name, recipe, "FULL", campaign=True)
        # UPDATE extends a FULL version of the same solution; after a recipe change the variant has
        # a new solution (its name carries the recipe) with no version yet, so it trains FULL.
        live = existing.get(name, {}).get("solution_version_arn") or ""
        if (
            training_mode == "UPDATE"
            and recipe in UPDATE_RECIPES
            and f":solution/{entry['solutionName']}/" in live
        ):
            entry["trainingMode"] = "UPDATE"
        out.append(entry)
    return out


def schema_version(schema: str | None) -> str:
    """A short content hash: Personalize schemas cannot change, so a changed schema is a new one
    (the state machine then points the existing dataset at it with UpdateDataset)."""
    canonical = json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":")) if schema else ""
    return hashlib.sha1(canonical.encode()).hexdigest()[:8]


def import_mode(requested: str, kind: str, new_rows: int, has_watermark: bool, new_bytes: int = 0) -> str:
    """FULL, INCREMENTAL or NONE (nothing to import) for one dataset, by Personalize's rules.

    - "If you haven't imported bulk records into the dataset previously, you can only specify
      FULL" (CreateDatasetImportJobRequest$importMode): INCREMENTAL only after a recorded import
      (the watermark; the state machine also imports FULL into a dataset it has just created).
    - "To append data to an Item interactions dataset ... you must have at minimum 1000 new item
      interaction ... records" (https://docs.aws.amazon.com/personalize/latest/dg/bulk-data-import.html,
      Import modes): fewer new interactions are not imported this time; they stay newer than the
      watermark and go with the next import (or reach Personalize through PutEvents meanwhile).
    - An INCREMENTAL import of interactions or users takes at most 1 GB
      (https://docs.aws.amazon.com/personalize/latest/dg/limits.html): more is imported FULL.
    """
    if requested != "INCREMENTAL" or not has_watermark:
        return "FULL"
    if kind in ("interactions", "users") and new_bytes > MAX_INCREMENTAL_BYTES:
        return "FULL"
    if kind == "interactions" and new_rows < MIN_INCREMENTAL_INTERACTIONS:
        return "NONE"
    return "INCREMENTAL"


def datasets(prefix: str, run_id: str, prepared: dict[str, dict]) -> list[dict]:
    """One entry per dataset type, with what the import needs: importMode FULL | INCREMENTAL | NONE,
    s3Uri (what that mode imports) and fullS3Uri (everything). Absent files are not imported."""
    out = []
    for kind, dataset_type in DATASET_TYPES.items():
        info = prepared.get(kind) or {"present": False, "rows": 0, "importMode": "NONE"}
        out.append({
            "kind": kind,
            "datasetType": dataset_type,
            "arnType": dataset_type.upper(),
            "schemaName": _name(prefix, kind, schema_version(info.get("schema"))),
            "datasetName": _name(prefix, kind),
            "importJobName": _name(prefix, JOB_ABBREVIATIONS[kind], job_suffix(run_id)),
            **info,
        })  # fmt: skip
    return out


def filters(prefix: str) -> list[dict]:
    return [{"key": key, "name": _name(prefix, key), "expression": expr} for key, expr in FILTERS.items()]
