"""Solutions, solution versions (training in the background) and GetSolutionMetrics."""

from __future__ import annotations

import os
import shutil
import time
import uuid

from local.personalize.datasets import RUNNING, require_active
from local.personalize.errors import InUse, InvalidInput, LimitExceeded
from local.personalize.models import load_model
from local.personalize.ops import LIMITS, PENDING_SECONDS, operation, page, shaped
from local.personalize.recipes import recipe_name
from local.personalize.store import StoreClosed
from local.personalize.training import UPDATE_RECIPES, TrainingError, train_solution_version

SOLUTION_MEMBERS = (
    "performHPO",
    "performAutoML",
    "performIncrementalUpdate",
    "recipeArn",
    "eventType",
    "datasetGroupArn",
    "solutionConfig",
)


# --- solutions -----------------------------------------------------------------------------------------
@operation("personalize")
def CreateSolution(engine, req):
    if req.get("performAutoML"):
        raise InvalidInput("performAutoML is not supported by the local engine; choose a recipeArn.")
    if not req.get("recipeArn"):
        raise InvalidInput(
            "recipeArn is required (for example arn:aws:personalize:::recipe/aws-user-personalization)."
        )
    recipe_name(req["recipeArn"])
    group = engine.store.get("dataset-group", req["datasetGroupArn"])
    require_active(group, "dataset group")
    limit = LIMITS["solution per dataset group"]
    arn = engine.arn("solution", req["name"])
    if (
        not engine.store.exists("solution", arn)
        and len(engine.store.all("solution", datasetGroupArn=group["datasetGroupArn"])) >= limit
    ):
        raise LimitExceeded(f"A dataset group has at most {limit} solutions; delete unused ones.")
    record = {
        "name": req["name"],
        "solutionArn": arn,
        "performHPO": req.get("performHPO", False),
        "performAutoML": False,
        "performAutoTraining": req.get("performAutoTraining", True),  # the service's default
        "performIncrementalUpdate": req.get("performIncrementalUpdate", False),
        "recipeArn": req["recipeArn"],
        "datasetGroupArn": group["datasetGroupArn"],
        "eventType": req.get("eventType"),
        "solutionConfig": req.get("solutionConfig") or {},
        "_group": group["name"],
    }
    engine.store.create("solution", arn, record, pending=PENDING_SECONDS)
    return {"solutionArn": arn}


@operation("personalize")
def DescribeSolution(engine, req):
    record = engine.store.get("solution", req["solutionArn"])
    versions = engine.store.all("solution-version", solutionArn=record["solutionArn"])
    if versions:
        latest = versions[0]
        record["latestSolutionVersion"] = {
            k: latest.get(k)
            for k in (
                "solutionVersionArn",
                "status",
                "trainingMode",
                "trainingType",
                "creationDateTime",
                "lastUpdatedDateTime",
                "failureReason",
            )
            if latest.get(k) is not None
        }
    return shaped("DescribeSolution", "solution", record)


@operation("personalize")
def ListSolutions(engine, req):
    where = {"datasetGroupArn": req["datasetGroupArn"]} if req.get("datasetGroupArn") else {}
    return page("ListSolutions", "solutions", engine.store.all("solution", **where), req)


@operation("personalize")
def UpdateSolution(engine, req):
    record = engine.store.get("solution", req["solutionArn"])
    require_active(record, "solution")
    changes = {k: req[k] for k in ("performAutoTraining", "performIncrementalUpdate") if k in req}
    engine.store.update("solution", record["solutionArn"], **changes)
    return {"solutionArn": record["solutionArn"]}


@operation("personalize")
def DeleteSolution(engine, req):
    arn = req["solutionArn"]
    engine.store.get("solution", arn)
    versions = engine.store.all("solution-version", solutionArn=arn)
    serving = {v["solutionVersionArn"] for v in versions}
    for campaign in engine.store.all("campaign"):
        pending = (campaign.get("latestCampaignUpdate") or {}).get("solutionVersionArn")
        if campaign["solutionVersionArn"] in serving or pending in serving:
            raise InUse(
                f"The campaign {campaign['campaignArn']} uses a version of {arn}; delete the campaign first."
            )
    if any(v["status"] in (*RUNNING, "CREATE STOPPING") for v in versions):
        raise InUse(f"A solution version of {arn} is still training; stop it or wait for it to finish.")
    for version in versions:
        engine.models.evict(version["solutionVersionArn"])
        shutil.rmtree(engine.model_dir(version["solutionVersionArn"]), ignore_errors=True)
        engine.store.remove("solution-version", version["solutionVersionArn"])
    engine.store.schedule_delete("solution", arn, PENDING_SECONDS)
    return {}


# --- solution versions ---------------------------------------------------------------------------------
@operation("personalize")
def CreateSolutionVersion(engine, req):
    solution = engine.store.get("solution", req["solutionArn"])
    require_active(solution, "solution")
    mode = req.get("trainingMode", "FULL")
    versions = engine.store.all("solution-version", solutionArn=solution["solutionArn"])
    if any(v["status"] in (*RUNNING, "CREATE STOPPING") for v in versions):
        raise InUse(
            f"A solution version of {solution['solutionArn']} is already training; wait for it to finish."
        )
    running = sum(v["status"] in RUNNING for v in engine.store.all("solution-version"))
    if running >= LIMITS["running solution versions"]:
        raise LimitExceeded(f"At most {LIMITS['running solution versions']} solution versions train at once.")
    if mode == "UPDATE":
        recipe = recipe_name(solution["recipeArn"])
        if recipe not in UPDATE_RECIPES:
            raise InvalidInput(
                f"trainingMode UPDATE works only with {sorted(UPDATE_RECIPES)}; {recipe} needs FULL."
            )
        if not any(v["status"] == "ACTIVE" for v in versions):
            raise InvalidInput(
                "trainingMode UPDATE needs an ACTIVE solution version of this solution; train FULL first."
            )
    version_id = uuid.uuid4().hex[:8]
    arn = f"{solution['solutionArn']}/{version_id}"
    record = {
        "name": req.get("name") or version_id,
        "solutionVersionArn": arn,
        "solutionArn": solution["solutionArn"],
        **{k: solution[k] for k in SOLUTION_MEMBERS if solution.get(k) is not None},
        "trainingMode": mode,
        "trainingType": "MANUAL",
        "status": "CREATE PENDING",
        "_group": solution["_group"],
    }
    engine.store.create("solution-version", arn, record)
    engine.training.submit(run_training, engine, arn)
    return {"solutionVersionArn": arn}


def run_training(engine, arn: str) -> None:
    store = engine.store
    time.sleep(PENDING_SECONDS)
    version = store.get("solution-version", arn)
    if version["status"] == "CREATE STOPPING":
        store.update("solution-version", arn, status="CREATE STOPPED")
        return
    if version["status"] not in RUNNING:
        return
    store.update("solution-version", arn, status="CREATE IN_PROGRESS")
    started = time.time()
    try:
        trained = _train(engine, version)
    except TrainingError as exc:
        store.update("solution-version", arn, status="CREATE FAILED", failureReason=str(exc))
        return
    except Exception as exc:
        if store.closed:
            raise
        store.update("solution-version", arn, status="CREATE FAILED", failureReason=f"Training failed: {exc}")
        return
    metrics, events_seen, tuned = trained
    _take_at_least(store, arn, started + min_training_seconds())
    if store.get("solution-version", arn)["status"] == "CREATE STOPPING":
        shutil.rmtree(engine.model_dir(arn), ignore_errors=True)
        store.update("solution-version", arn, status="CREATE STOPPED")
        return
    hours = (time.time() - started) / 3600
    store.update(
        "solution-version",
        arn,
        status="ACTIVE",
        trainingHours=hours,
        tunedHPOParams={"algorithmHyperParameters": tuned},
        _metrics=metrics,
        _events_seen=events_seen,
    )


def min_training_seconds() -> float:
    """Personalize trains for hours, the engine in seconds: LOCAL_PERSONALIZE_MIN_TRAINING_SECONDS
    makes every training last at least that long, so the pipeline's polling can be exercised."""
    return float(os.environ.get("LOCAL_PERSONALIZE_MIN_TRAINING_SECONDS") or 0)


def _take_at_least(store, arn: str, until: float) -> None:
    while time.time() < until and store.get("solution-version", arn)["status"] != "CREATE STOPPING":
        time.sleep(min(0.2, max(0.0, until - time.time())))


def _train(engine, version: dict) -> tuple[dict, int, dict]:
    recipe = recipe_name(version["recipeArn"])
    config = dict(version.get("solutionConfig") or {})
    if version.get("eventType"):
        config["eventType"] = version["eventType"]
    data, events_seen = engine.data.training_data(version["_group"])
    previous = None
    if version["trainingMode"] == "UPDATE":
        base = _latest_active(engine, version["solutionArn"], before=version["creationDateTime"])
        previous = load_model(engine.model_dir(base["solutionVersionArn"])) if base else None
    model, metrics = train_solution_version(recipe, data, config, version["trainingMode"], previous)
    if engine.store.closed:
        raise StoreClosed("the engine stopped during training")
    target = engine.model_dir(version["solutionVersionArn"])
    staging = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:6]}")
    model.save(staging)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    # The ridge strength chosen on the hold-out (user-personalization), reported like HPO's result.
    tuned = {"lambda": f"{model.lam:g}"} if getattr(model, "lam", 0) else {}
    return {k: float(v) for k, v in metrics.items()}, events_seen, tuned


def _latest_active(engine, solution_arn: str, before: float) -> dict | None:
    for version in engine.store.all("solution-version", solutionArn=solution_arn):
        if version["status"] == "ACTIVE" and version["creationDateTime"] <= before:
            return version
    return None


@operation("personalize")
def DescribeSolutionVersion(engine, req):
    record = engine.store.get("solution-version", req["solutionVersionArn"])
    return shaped("DescribeSolutionVersion", "solutionVersion", record)


@operation("personalize")
def ListSolutionVersions(engine, req):
    where = {"solutionArn": req["solutionArn"]} if req.get("solutionArn") else {}
    if where:
        engine.store.get("solution", req["solutionArn"])
    return page(
        "ListSolutionVersions", "solutionVersions", engine.store.all("solution-version", **where), req
    )


@operation("personalize")
def StopSolutionVersionCreation(engine, req):
    record = engine.store.get("solution-version", req["solutionVersionArn"])
    if record["status"] not in RUNNING:
        raise InvalidInput(
            f"Only a solution version in CREATE PENDING or CREATE IN_PROGRESS can be stopped; this one is {record['status']}."
        )
    engine.store.update("solution-version", record["solutionVersionArn"], status="CREATE STOPPING")
    return {}


@operation("personalize")
def GetSolutionMetrics(engine, req):
    record = engine.store.get("solution-version", req["solutionVersionArn"])
    if record["status"] != "ACTIVE":
        raise InUse(f"The solution version is {record['status']}; metrics exist once it is ACTIVE.")
    return {"solutionVersionArn": record["solutionVersionArn"], "metrics": record.get("_metrics", {})}
