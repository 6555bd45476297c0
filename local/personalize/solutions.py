"""Solutions, solution versions (training in the background) and GetSolutionMetrics."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid

from local.personalize.datasets import RUNNING, require_active
from local.personalize.errors import InUse, InvalidInput, LimitExceeded
from local.personalize.models import load_model
from local.personalize.ops import LIMITS, PENDING_SECONDS, operation, summary
from local.personalize.recipes import recipe_name
from local.personalize.resources import before_delete, describes
from local.personalize.store import StoreClosed
from local.personalize.training import UPDATE_RECIPES, TrainingError, train_solution_version

# SolutionUpdateSummary$status: "CREATE PENDING > CREATE IN_PROGRESS > ACTIVE -or- CREATE FAILED".
UPDATING = ("CREATE PENDING", "CREATE IN_PROGRESS")
SCHEDULE = re.compile(r"rate\((\d+) days?\)")
SEMANTIC_SIMILARITY = "aws-semantic-similarity"

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
    recipe = recipe_name(req["recipeArn"])
    _check_incremental_update(req.get("performIncrementalUpdate"), recipe)
    _check_schedule(req.get("solutionConfig"), "solutionConfig")
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


@describes("solution")
def _latest_version(engine, record: dict) -> dict:
    versions = engine.store.all("solution-version", solutionArn=record["solutionArn"])
    if versions:
        record["latestSolutionVersion"] = summary("SolutionVersionSummary", versions[0])
    return record


@before_delete("solution")
def _delete_versions(engine, solution: dict) -> None:
    """DeleteSolution (botocore personalize 2018-05-22): "Deletes all versions of a solution ... Before
    deleting a solution, you must delete all campaigns based on the solution ... You can't delete a
    solution if an associated SolutionVersion is in the CREATE PENDING or IN PROGRESS state." """
    arn = solution["solutionArn"]
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
    # https://docs.aws.amazon.com/personalize/latest/dg/updating-solution.html: "While the update is in
    # progress, you can create solution versions for the solution but you can't delete the solution."
    if (solution.get("latestSolutionUpdate") or {}).get("status") in UPDATING:
        raise InUse(
            f"An update of {arn} is in progress; wait until latestSolutionUpdate.status is ACTIVE, then delete."
        )
    for version in versions:
        engine.models.evict(version["solutionVersionArn"])
        shutil.rmtree(engine.model_dir(version["solutionVersionArn"]), ignore_errors=True)
        engine.store.remove("solution-version", version["solutionVersionArn"])


@operation("personalize")
def UpdateSolution(engine, req):
    """The update runs in the background (latestSolutionUpdate.status); "Until the update completes, the
    solution uses the previous configuration" (https://docs.aws.amazon.com/personalize/latest/dg/updating-solution.html)."""
    record = engine.store.get("solution", req["solutionArn"])
    require_active(record, "solution")
    config = req.get("solutionUpdateConfig") or {}
    _check_schedule(config, "solutionUpdateConfig")
    _check_incremental_update(req.get("performIncrementalUpdate"), recipe_name(record["recipeArn"]))
    now = time.time()
    update = {
        "solutionUpdateConfig": config,
        "performAutoTraining": req.get("performAutoTraining", record["performAutoTraining"]),
        "performIncrementalUpdate": req.get(
            "performIncrementalUpdate", record.get("performIncrementalUpdate", False)
        ),
        "status": "CREATE PENDING",
        "creationDateTime": now,
        "lastUpdatedDateTime": now,
    }
    engine.store.update("solution", record["solutionArn"], latestSolutionUpdate=update)
    engine.jobs.submit(run_solution_update, engine, record["solutionArn"], now)
    return {"solutionArn": record["solutionArn"]}


def run_solution_update(engine, arn: str, created: float) -> None:
    """CREATE PENDING → CREATE IN_PROGRESS → ACTIVE, then the solution takes the new configuration.
    A newer UpdateSolution (another `created`) takes over; this one then stops."""
    for step in ("CREATE IN_PROGRESS", "ACTIVE"):
        time.sleep(PENDING_SECONDS)
        with engine.store.lock:
            record = engine.store.get("solution", arn)
            update = record.get("latestSolutionUpdate") or {}
            if update.get("creationDateTime") != created or update.get("status") not in UPDATING:
                return
            changes = {"latestSolutionUpdate": {**update, "status": step, "lastUpdatedDateTime": time.time()}}
            if step == "ACTIVE":
                changes.update(_applied(record, update))
            engine.store.update("solution", arn, **changes)


def _applied(record: dict, update: dict) -> dict:
    config = {**(record.get("solutionConfig") or {}), **update["solutionUpdateConfig"]}
    return {
        "performAutoTraining": update["performAutoTraining"],
        "performIncrementalUpdate": update["performIncrementalUpdate"],
        "solutionConfig": config,
    }


def _check_schedule(config: dict | None, where: str) -> None:
    # AutoTrainingConfig$schedulingExpression (botocore personalize 2018-05-22): "Specify a rate expression in
    # rate(value unit) format. For value, specify a number between 1 and 30. For unit, specify day or days."
    # (the model's pattern checks the format, not the range).
    expression = ((config or {}).get("autoTrainingConfig") or {}).get("schedulingExpression")
    if expression is None:
        return
    match = SCHEDULE.fullmatch(expression)
    if not match or not 1 <= int(match.group(1)) <= 30:
        raise InvalidInput(
            f"{where}.autoTrainingConfig.schedulingExpression {expression!r} must be rate(N days) with N "
            "between 1 and 30 (the default is every 7 days)."
        )


def _check_incremental_update(flag: bool | None, recipe: str) -> None:
    # CreateSolutionRequest$performIncrementalUpdate and UpdateSolutionRequest$performIncrementalUpdate: "This
    # parameter is supported only for solutions that use the semantic-similarity recipe."
    if flag and recipe != SEMANTIC_SIMILARITY:
        raise InvalidInput(
            f"performIncrementalUpdate is supported only for the {SEMANTIC_SIMILARITY} recipe, not {recipe}; "
            "omit it or set it to false."
        )


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
        _check_update_allowed(solution, versions)
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


def _check_update_allowed(solution: dict, versions: list[dict]) -> None:
    """CreateSolutionVersionRequest$trainingMode (botocore personalize 2018-05-22): "The UPDATE option can
    only be used when you already have an active solution version created from the input solution using the
    FULL option and the input solution was trained with the User-Personalization recipe or the legacy
    HRNN-Coldstart recipe." Not -v2: https://docs.aws.amazon.com/personalize/latest/dg/native-recipe-new-item-USER_PERSONALIZATION.html
    is the v1 recipe."""
    recipe = recipe_name(solution["recipeArn"])
    if recipe not in UPDATE_RECIPES:
        raise InvalidInput(
            f"trainingMode UPDATE works only for solutions with the {' or '.join(sorted(UPDATE_RECIPES))} "
            f"recipe; {solution['solutionArn']} uses {recipe}: create the version with trainingMode FULL."
        )
    if not any(v["status"] == "ACTIVE" and v.get("trainingMode") == "FULL" for v in versions):
        raise InvalidInput(
            f"trainingMode UPDATE needs an ACTIVE solution version of {solution['solutionArn']} trained with "
            "trainingMode FULL; train FULL first."
        )


def run_training(engine, arn: str) -> None:
    store = engine.store
    time.sleep(PENDING_SECONDS)
    with store.lock:  # StopSolutionVersionCreation may land between the read and the write
        version = store.get("solution-version", arn)
        if version["status"] == "CREATE STOPPING":
            store.update("solution-version", arn, status="CREATE STOPPED")
            return
        if version["status"] not in RUNNING:
            return
        store.update("solution-version", arn, status="CREATE IN_PROGRESS")
    started = time.time()
    try:
        metrics, events_seen, tuned = _train(engine, version)
    except TrainingError as exc:
        _finish(engine, arn, status="CREATE FAILED", failureReason=str(exc))
        return
    except Exception as exc:
        if store.closed:
            raise
        _finish(engine, arn, status="CREATE FAILED", failureReason=f"Training failed: {exc}")
        return
    _take_at_least(store, arn, started + min_training_seconds())
    _finish(
        engine,
        arn,
        status="ACTIVE",
        trainingHours=(time.time() - started) / 3600,
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


def _finish(engine, arn: str, **outcome) -> None:
    """The training's outcome, unless a stop was asked meanwhile: then CREATE STOPPED, with no model and
    no failureReason (a stopped version did not fail)."""
    with engine.store.lock:
        if engine.store.get("solution-version", arn)["status"] == "CREATE STOPPING":
            shutil.rmtree(engine.model_dir(arn), ignore_errors=True)
            engine.store.update("solution-version", arn, status="CREATE STOPPED")
        else:
            engine.store.update("solution-version", arn, **outcome)


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
    # The settings chosen on the hold-out (user-personalization), reported like HPO's result; the same
    # names in algorithmHyperParameters pin them.
    tuned = {"lambda": f"{model.lam:g}"} if getattr(model, "lam", 0) else {}
    if getattr(model, "seq", None) is not None:
        tuned |= {
            "sequenceHalfLife": f"{model.seq.half_life:g}",
            "markovWeight": f"{model.seq.markov_weight:g}",
        }
    return {k: float(v) for k, v in metrics.items()}, events_seen, tuned


def _latest_active(engine, solution_arn: str, before: float) -> dict | None:
    for version in engine.store.all("solution-version", solutionArn=solution_arn):
        if version["status"] == "ACTIVE" and version["creationDateTime"] <= before:
            return version
    return None


@operation("personalize")
def StopSolutionVersionCreation(engine, req):
    record = engine.store.get("solution-version", req["solutionVersionArn"])
    if record["status"] not in RUNNING:
        raise InvalidInput(
            f"Only a solution version in CREATE PENDING or CREATE IN_PROGRESS can be stopped; this one is {record['status']}."
        )
    # StopSolutionVersionCreation (botocore personalize 2018-05-22): "CREATE_PENDING > CREATE_STOPPED or
    # CREATE_IN_PROGRESS > CREATE_STOPPING > CREATE_STOPPED". A stopped version has no failureReason:
    # SolutionVersion$failureReason is "If training a solution version fails, the reason for the failure."
    stopped = "CREATE STOPPED" if record["status"] == "CREATE PENDING" else "CREATE STOPPING"
    engine.store.update("solution-version", record["solutionVersionArn"], status=stopped)
    return {}


@operation("personalize")
def GetSolutionMetrics(engine, req):
    record = engine.store.get("solution-version", req["solutionVersionArn"])
    if record["status"] != "ACTIVE":
        raise InUse(f"The solution version is {record['status']}; metrics exist once it is ACTIVE.")
    return {"solutionVersionArn": record["solutionVersionArn"], "metrics": record.get("_metrics", {})}
