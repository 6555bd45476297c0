"""The training pipeline (statemachines/training.asl.json), written as its design reads.

    python -m statemachines.training           # write training.asl.json
    python -m statemachines.training --check   # exit 1 if the committed JSON differs
    python -m statemachines.training --budget  # worst-case history events of one execution

Run lock -> rollback, or: prepare data -> dataset group -> datasets and imports -> event tracker
-> filters -> baseline and similar items -> variants -> notify; then the lock is released. A
caught failure goes to "<Step> failed" -> notify -> release the lock, and the execution fails with
Pipeline.<Step>Failed and a cause naming the step, the original error and its cause; campaigns
that were live keep serving. `${Name}` are the template's DefinitionSubstitutions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from statemachines.asl import RETRY_EVENTS, STATE_EVENTS, TASK_EVENTS, Flow, Loop, Top, fmt

ASL_PATH = Path(__file__).with_name("training.asl.json")
EXPERIMENT_KEY = {"experiment_id": {"S": "${ExperimentId}"}}
LOCK_KEY = {"experiment_id": {"S": "lock#${ProjectPrefix}"}}
NOW = {"S.$": "$$.State.EnteredTime"}
# Setup waits (dataset group, dataset, schema update, event tracker, solution, auto-training
# update) take seconds to minutes on AWS: this many polls along PollSchedule is hours.
SETUP_POLLS = 12
LOCK_TRIES = 3
TIMEOUT_SECONDS = 7 * 24 * 3600  # the whole execution; every wait in it is bounded well below
# Iterations per Map (the history budget): datasets, filters (plan.FILTERS), variants (plan.MAX_VARIANTS).
WIDTHS = {"datasets": 3, "filters": 2, "variants": 5, "branch": 1}


def _s(path: str) -> dict:
    return {"S.$": path}


def _arn(kind: str, name_path: str) -> str:
    return fmt(f"{{}}:{kind}/{{}}", "$.ctx.arnPrefix", name_path)


def _update(
    flow: Flow, local: str, expression: str, values: dict, next: str | None, names: dict | None = None
) -> str:
    """UpdateItem on the experiment record."""
    params = {"TableName": "${ExperimentsTable}", "Key": EXPERIMENT_KEY, "UpdateExpression": expression}
    params |= {"ExpressionAttributeNames": names} if names else {}
    params["ExpressionAttributeValues"] = values
    return flow.task(local, "arn:aws:states:::dynamodb:updateItem", params, next)


def _notify(flow: Flow, local: str, subject: str, message: str, next: str, **kw) -> str:
    params = {"TopicArn": "${PipelineTopicArn}", "Subject": subject, "Message.$": message}
    return flow.task(local, "arn:aws:states:::sns:publish", params, next, **kw)


def _invoke(flow: Flow, local: str, function: str, payload: dict, next: str, result: str, **kw) -> str:
    params = {"FunctionName": function, "Payload": payload}
    return flow.task(local, "arn:aws:states:::lambda:invoke", params, next, result=result, **kw)


def _put_lock(flow: Flow, local: str, condition: str, next: str, values: dict | None = None, **kw) -> str:
    item = {**LOCK_KEY, "execution": _s("$$.Execution.Id"), "acquired_at": NOW}
    params = {"TableName": "${ExperimentsTable}", "Item": item, "ConditionExpression": condition}
    params |= {"ExpressionAttributeValues": values} if values else {}
    return flow.task(local, "arn:aws:states:::dynamodb:putItem", params, next, **kw)


def _release_lock(top: Flow, local: str, next: str) -> str:
    params = {
        "TableName": "${ExperimentsTable}",
        "Key": LOCK_KEY,
        "ConditionExpression": "execution = :me",
        "ExpressionAttributeValues": {":me": _s("$$.Execution.Id")},
    }
    return top.task(
        local, "arn:aws:states:::dynamodb:deleteItem", params, next, otherwise=("$.lockReleaseError", next)
    )


def _step_failed(top: Flow, step: str) -> str:
    """A top-level step's failure state (full name): $.failed names the step and its Pipeline error."""
    error = f"Pipeline.{step.title().replace(' ', '').replace('-', '')}Failed"
    return top.pass_(
        f"{step} failed", {"step": step, "error": error}, "Failure: cause given?", result="$.failed"
    )


def _iteration_failed(
    flow: Flow, error: str, label: str, paths: tuple[str, ...], end: dict | None = None
) -> None:
    """A Map iteration's or branch's failure ("<Scope>: Step failed"): the item's label and the
    original error and cause, the cause only if reported. With `end` the iteration ends with that
    output (its siblings go on); without, it fails (so does the enclosing Map or Parallel)."""
    flow.on_failure = flow.name("Step failed")
    flow.choice(
        "Step failed",
        [{"Variable": "$.failure.Cause", "IsPresent": True, "Next": "Failed"}],
        "Failed (no cause)",
    )
    for local, tail in (("Failed", ": {}: {}"), ("Failed (no cause)", ": {} (no cause reported)")):
        fields = ("$.failure.Error", "$.failure.Cause")[: tail.count("{}")]
        cause = fmt(label + tail, *paths, *fields)
        if end is None:
            flow.add(local, {"Type": "Fail", "Error": error, "CausePath": cause})
        else:
            flow.pass_(local, {**end, "error.$": "$.failure.Error", "cause.$": cause}, None)


# --- start: input, configuration, run lock -------------------------------------------------------
def configure(top: Flow) -> None:
    defaults = {
        "trainingMode": "FULL",
        "importMode": "FULL",
        "variants": None,
        "skipImport": False,
        "qualityGate": {},
        "rollback": None,
    }
    top.pass_(
        "Read input",
        {
            "defaults": defaults,
            "input.$": "$$.Execution.Input",
            "arnParts.$": "States.StringSplit($$.StateMachine.Id, ':')",
        },
        "Configure",
        Comment="Defaults for every optional input field (the schedules send only trainingMode).",
    )
    schedule = "States.StringToJson('[${PollSchedule}]')"
    polling = {
        "intervals.$": schedule,
        "ramp.$": f"States.ArrayLength({schedule})",
        "maxPolls.$": "States.StringToJson('${MaxPolls}')",
        "setupPolls": SETUP_POLLS,
    }
    auto_training = {
        "enabled.$": "States.StringToJson('${PerformAutoTraining}')",
        "schedule": "${AutoTrainingSchedule}",
    }
    arn_prefix = fmt(
        "arn:{}:personalize:{}:{}", *(f"States.ArrayGetItem($.arnParts, {i})" for i in (1, 3, 4))
    )
    top.pass_(
        "Configure",
        {
            "config.$": "States.JsonMerge($.defaults, $.input, false)",
            "runId.$": "$$.Execution.Name",
            "lockTries": {"n": 0},
            "ctx": {"arnPrefix.$": arn_prefix, "polling": polling, "autoTraining": auto_training},
        },
        "Take run lock",
        Comment="$.ctx goes into every Map iteration and Parallel branch.",
    )


def run_lock(top: Flow) -> None:
    """One execution per dataset group: a lock item, taken over only from an execution that ended."""
    lock = top.section("", _step_failed(top, "Run lock"))
    held = "DynamoDB.ConditionalCheckFailedException"
    _put_lock(
        lock,
        "Take run lock",
        "attribute_not_exists(experiment_id)",
        "Rollback?",
        catch=((held, "$.lockError", "Read lock"),),
        comment="One execution per dataset group at a time (a lock item in the experiments table).",
    )
    read = {"TableName": "${ExperimentsTable}", "Key": LOCK_KEY, "ConsistentRead": True}
    lock.task("Read lock", "arn:aws:states:::dynamodb:getItem", read, "Lock still held?", result="$.lock")
    lock.choice(
        "Lock still held?",
        [
            {"Variable": "$.lock.Item.execution.S", "IsPresent": True, "Next": "Lock holder status"},
            {"Variable": "$.lockTries.n", "NumericGreaterThanEquals": LOCK_TRIES, "Next": "Lock contended"},
        ],
        "Lock released",
        comment="The holder may release the lock between our put and our read: then try again.",
    )
    lock.pass_(
        "Lock released", {"n.$": "States.MathAdd($.lockTries.n, 1)"}, "Take run lock", result="$.lockTries"
    )
    top.loops.append(Loop("Run lock", LOCK_TRIES, [], cycle_events=14))  # put, read, choice, count
    lock.task(
        "Lock holder status",
        "arn:aws:states:::aws-sdk:sfn:describeExecution",
        {"ExecutionArn.$": "$.lock.Item.execution.S"},
        "Holder running?",
        selector={"status.$": "$.Status"},
        result="$.holder",
        catch=(("Sfn.ExecutionDoesNotExistException", "$.holderGone", "Take over lock"),),
    )
    lock.choice(
        "Holder running?",
        [{"Variable": "$.holder.status", "StringEquals": "RUNNING", "Next": "Locked"}],
        "Take over lock",
    )
    _put_lock(
        lock,
        "Take over lock",
        "execution = :holder",
        "Rollback?",
        {":holder": _s("$.lock.Item.execution.S")},
        catch=((held, "$.lockError", "Lock contended"),),
        comment="Only from an execution that no longer runs; if the lock changed hands meanwhile, give up.",
    )
    locked = "Another training execution ({}) is running on this dataset group; this one changed nothing. Start it again when that one has finished."
    contended = "The run lock changed hands while this execution tried to take it; this one changed nothing. Start it again."
    for local, cause in (
        ("Locked", {"cause.$": fmt(locked, "$.lock.Item.execution.S")}),
        ("Lock contended", {"cause": contended}),
    ):
        top.pass_(
            local,
            {"step": "Run lock", "error": "Pipeline.Locked", **cause},
            "Notify locked",
            result="$.failed",
        )
    subject = "Training not started: another execution is running"
    _notify(top, "Notify locked", subject, "$.failed.cause", "Not started", otherwise=(None, "Not started"))
    top.add("Not started", {"Type": "Fail", "ErrorPath": "$.failed.error", "CausePath": "$.failed.cause"})


# --- rollback --------------------------------------------------------------------------------------
def rollback(top: Flow) -> None:
    """Put a variant's campaign back on its previous promoted version (the quality gate picks it)."""
    present = [
        {"Variable": "$.config.rollback", "IsPresent": True},
        {"Not": {"Variable": "$.config.rollback", "IsNull": True}},
    ]
    top.choice("Rollback?", [{"And": present, "Next": "Rollback: choose version"}], "Prepare data")
    flow = top.section("Rollback", _step_failed(top, "Rollback"))
    target = "$.rollback.target"
    _invoke(
        flow,
        "choose version",
        "${QualityGateFunctionArn}",
        {"rollback.$": "$.config.rollback"},
        "Update campaign",
        "$.rollback",
        selector={"target.$": "$.Payload"},
        timeout=120,
    )
    campaign = {"CampaignArn.$": f"{target}.campaignArn"}
    flow.call(
        "Update campaign",
        "updateCampaign",
        {**campaign, "SolutionVersionArn.$": f"{target}.solutionVersionArn"},
        "Campaign update: start polling",
    )
    flow.fail(
        "Campaign failed",
        "Pipeline.CampaignFailed",
        fmt(
            "Rollback of campaign {}: {}",
            f"{target}.campaignArn",
            "States.JsonToString($.described.Campaign)",
        ),
    )
    flow.wait_for(
        "Campaign update",
        "describeCampaign",
        campaign,
        "Campaign.LatestCampaignUpdate.Status",
        "Publish",
        long=True,
        failed="Campaign failed",
    )
    expression = (
        "SET variants.#v.solution_version_arn = :sv, variants.#v.campaign_arn = :c, variants.#v.#metrics = :m, "
        "variants.#v.promoted_at = :t, variants.#v.rolled_back_from = :from, updated_at = :t REMOVE variants.#v.history[{}]"
    )
    flow.task(
        "Publish",
        "arn:aws:states:::dynamodb:updateItem",
        {
            "TableName": "${ExperimentsTable}",
            "Key": EXPERIMENT_KEY,
            "UpdateExpression.$": fmt(expression, f"{target}.removeIndex"),
            "ConditionExpression": "variants.#v.solution_version_arn = :from",
            "ExpressionAttributeNames": {"#v.$": f"{target}.variant", "#metrics": "metrics"},
            "ExpressionAttributeValues": {
                ":sv": _s(f"{target}.solutionVersionArn"),
                ":c": _s(f"{target}.campaignArn"),
                ":m.$": f"{target}.metricsItem",
                ":t": NOW,
                ":from": _s(f"{target}.fromSolutionVersionArn"),
            },
        },
        "Notify",
    )
    message = fmt(
        "Variant {} rolled back from {} to {}.",
        *(f"{target}.{k}" for k in ("variant", "fromSolutionVersionArn", "solutionVersionArn")),
    )
    _notify(flow, "Notify", "Rollback done", message, "Summary")
    flow.pass_(
        "Summary",
        {"execution.$": "$$.Execution.Name", "rollback.$": target},
        Top("Release lock"),
        result="$.summary",
    )


# --- prepare data, dataset group, datasets and imports --------------------------------------------
def prepare(top: Flow) -> None:
    top.on_failure = _step_failed(top, "Prepare data")
    payload = {
        k + ".$": v
        for k, v in (
            ("runId", "$.runId"),
            ("trainingMode", "$.config.trainingMode"),
            ("importMode", "$.config.importMode"),
            ("variants", "$.config.variants"),
        )
    }
    _invoke(
        top,
        "Prepare data",
        "${PrepareDataFunctionArn}",
        payload,
        "Create dataset group",
        "$.plan",
        selector={"value.$": "$.Payload"},
        timeout=960,
        comment="Validate and clean raw/, write training/ and the data report, load the tables; returns the plan.",
    )


def dataset_group(top: Flow) -> None:
    top.on_failure = _step_failed(top, "Setup")
    name = "$.plan.value.datasetGroupName"
    # The data Personalize holds is encrypted with the project's key: CreateDatasetGroup takes the
    # key and the role Personalize assumes to use it (both or neither; a group cannot change later).
    params = {"Name.$": name, "RoleArn": "${PersonalizeRoleArn}", "KmsKeyArn": "${DataKeyArn}"}
    top.create_or_reuse(
        "dataset group",
        "createDatasetGroup",
        params,
        "DatasetGroupArn",
        _arn("dataset-group", name),
        "Dataset group: start polling",
        "$.ctx.datasetGroup",
    )
    top.wait_for(
        "Dataset group",
        "describeDatasetGroup",
        {"DatasetGroupArn.$": "$.ctx.datasetGroup.arn"},
        "DatasetGroup.Status",
        "Datasets and imports",
    )


def datasets(top: Flow) -> None:
    """Schema, dataset and import job for interactions, items and users, in parallel."""
    flow = Flow("Dataset", "$.dataset.kind")
    _iteration_failed(flow, "Pipeline.DatasetFailed", "dataset {}", ("$.dataset.kind",))
    flow.choice(
        "Present?",
        [{"Variable": "$.dataset.present", "BooleanEquals": True, "Next": "Create schema"}],
        "Skipped",
    )
    flow.pass_("Skipped", {"kind.$": "$.dataset.kind", "imported": False}, None)
    flow.create_or_reuse(
        "schema",
        "createSchema",
        {"Name.$": "$.dataset.schemaName", "Schema.$": "$.dataset.schema"},
        "SchemaArn",
        _arn("schema", "$.dataset.schemaName"),
        "Create dataset",
        "$.schema",
    )
    params = {
        "Name.$": "$.dataset.datasetName",
        "DatasetType.$": "$.dataset.datasetType",
        "DatasetGroupArn.$": "$.ctx.datasetGroup.arn",
        "SchemaArn.$": "$.schema.arn",
    }
    from_name = fmt("{}:dataset/{}/{}", "$.ctx.arnPrefix", "$.datasetGroupName", "$.dataset.arnType")
    flow.create_or_reuse(
        "dataset",
        "createDataset",
        params,
        "DatasetArn",
        from_name,
        "Dataset: start polling",
        "$.ds",
        exists="$.datasetExists",
    )
    dataset = {"DatasetArn.$": "$.ds.arn"}
    flow.wait_for("Dataset", "describeDataset", dataset, "Dataset.Status", "Schema current?")
    flow.choice(
        "Schema current?",
        [
            {
                "Variable": "$.described.Dataset.SchemaArn",
                "StringEqualsPath": "$.schema.arn",
                "Next": "Import?",
            }
        ],
        "Replace schema",
        comment="A dataset made with an earlier schema (schema names carry a content hash) is pointed at the current one.",
    )
    flow.call(
        "Replace schema",
        "updateDataset",
        {**dataset, "SchemaArn.$": "$.schema.arn"},
        "Schema update: start polling",
    )
    flow.fail(
        "Schema update failed",
        "Pipeline.SchemaUpdateFailed",
        fmt(
            "Dataset {} could not take the schema {} (datasets/schemas changed in a way Personalize does not allow, "
            "e.g. a removed or retyped field): {}",
            "$.dataset.datasetName",
            "$.dataset.schemaName",
            "States.JsonToString($.described.Dataset)",
        ),
    )
    flow.wait_for(
        "Schema update",
        "describeDataset",
        dataset,
        "Dataset.LatestDatasetUpdate.Status",
        "Import?",
        failed="Schema update failed",
    )
    import_plan(flow)
    top.on_failure = _step_failed(top, "Datasets and imports")
    top.map(
        "Datasets and imports",
        flow,
        "Present?",
        items="$.plan.value.datasets",
        item="dataset",
        width="datasets",
        result="$.imports",
        next="Imported?",
        concurrency=3,
        comment="Schema, dataset and import job for interactions, items and users, all three in parallel.",
        selector={
            "skipImport.$": "$.config.skipImport",
            "datasetGroupName.$": "$.plan.value.datasetGroupName",
        },
    )


def import_plan(flow: Flow) -> None:
    """Import as Prepare data planned: FULL, INCREMENTAL (new rows only) or nothing. A dataset this
    run created holds no bulk data yet, so an INCREMENTAL plan imports the whole file (FULL)."""
    flow.choice(
        "Import?",
        [
            {"Variable": "$.skipImport", "BooleanEquals": True, "Next": "Not imported"},
            {"Variable": "$.dataset.importMode", "StringEquals": "NONE", "Next": "Not imported"},
            {
                "And": [
                    {"Variable": "$.dataset.importMode", "StringEquals": "INCREMENTAL"},
                    {"Not": {"Variable": "$.datasetExists", "IsPresent": True}},
                ],
                "Next": "Import everything",
            },
        ],
        "Import as planned",
    )
    flow.pass_(
        "Not imported", {"kind.$": "$.dataset.kind", "datasetArn.$": "$.ds.arn", "imported": False}, None
    )
    flow.pass_(
        "Import everything",
        {"mode": "FULL", "uri.$": "$.dataset.fullS3Uri"},
        "Create import job",
        result="$.import",
    )
    flow.pass_(
        "Import as planned",
        {"mode.$": "$.dataset.importMode", "uri.$": "$.dataset.s3Uri"},
        "Create import job",
        result="$.import",
    )
    flow.call(
        "Create import job",
        "createDatasetImportJob",
        {
            "JobName.$": "$.dataset.importJobName",
            "DatasetArn.$": "$.ds.arn",
            "DataSource": {"DataLocation.$": "$.import.uri"},
            "RoleArn": "${PersonalizeRoleArn}",
            "ImportMode.$": "$.import.mode",
        },
        "Import: start polling",
        selector={"arn.$": "$.DatasetImportJobArn"},
        result="$.job",
    )
    flow.fail(
        "Import failed",
        "Pipeline.ImportFailed",
        fmt(
            "Import of {} ({}) failed: {} Fix the data under raw/ (see the data report) and start again.",
            "$.dataset.kind",
            "$.import.uri",
            "States.JsonToString($.described.DatasetImportJob)",
        ),
    )
    flow.wait_for(
        "Import",
        "describeDatasetImportJob",
        {"DatasetImportJobArn.$": "$.job.arn"},
        "DatasetImportJob.Status",
        "Imported",
        long=True,
        failed="Import failed",
    )
    flow.pass_(
        "Imported",
        {
            "kind.$": "$.dataset.kind",
            "datasetArn.$": "$.ds.arn",
            "importJobArn.$": "$.job.arn",
            "importMode.$": "$.import.mode",
            "imported": True,
        },
        None,
    )


def watermark(top: Flow) -> None:
    """INCREMENTAL imports start after the newest interaction Personalize holds: saved right after
    the imports, so a later failure does not make the next run import the same rows twice."""
    top.on_failure = "Setup failed"
    top.choice(
        "Imported?",
        [{"Variable": "$.config.skipImport", "BooleanEquals": True, "Next": "Create event tracker"}],
        "Save import watermark",
    )
    _update(
        top,
        "Save import watermark",
        "SET interactions_watermark = :w, updated_at = :t",
        {":w": {"N.$": "States.Format('{}', $.plan.value.newWatermark)"}, ":t": NOW},
        "Create event tracker",
    )


# --- event tracker and filters ----------------------------------------------------------------------
def event_tracker(top: Flow) -> None:
    group = {"DatasetGroupArn.$": "$.ctx.datasetGroup.arn"}
    top.call(
        "Create event tracker",
        "createEventTracker",
        {"Name.$": "$.plan.value.eventTrackerName", **group},
        "Event tracker: start polling",
        selector={"arn.$": "$.EventTrackerArn"},
        result="$.tracker",
        catch=(("Personalize.ResourceAlreadyExistsException", "$.exists", "Find event tracker"),),
    )
    top.call(
        "Find event tracker",
        "listEventTrackers",
        {**group, "MaxResults": 1},
        "Event tracker found?",
        selector={
            "found.$": "States.ArrayLength($.EventTrackers)",
            "arns.$": "$.EventTrackers[*].EventTrackerArn",
        },
        result="$.trackers",
    )
    top.choice(
        "Event tracker found?",
        [{"Variable": "$.trackers.found", "NumericGreaterThan": 0, "Next": "Use event tracker"}],
        "Event tracker elsewhere",
    )
    top.pass_(
        "Use event tracker",
        {"arn.$": "States.ArrayGetItem($.trackers.arns, 0)"},
        "Event tracker: start polling",
        result="$.tracker",
    )
    top.fail(
        "Event tracker elsewhere",
        "Pipeline.EventTrackerFailed",
        fmt(
            "An event tracker named {} exists, but not in dataset group {}: delete it or change ProjectName.",
            "$.plan.value.eventTrackerName",
            "$.ctx.datasetGroup.arn",
        ),
    )
    top.wait_for(
        "Event tracker",
        "describeEventTracker",
        {"EventTrackerArn.$": "$.tracker.arn"},
        "EventTracker.Status",
        "Publish event tracker",
    )
    tracker = {"M": {"arn": _s("$.tracker.arn"), "tracking_id": _s("$.described.EventTracker.TrackingId")}}
    _update(
        top,
        "Publish event tracker",
        "SET event_tracker = :e, dataset_group_arn = :g, updated_at = :t",
        {":e": tracker, ":g": _s("$.ctx.datasetGroup.arn"), ":t": NOW},
        "Filters",
    )


def filters(top: Flow) -> None:
    """Filters cannot be modified: created once by name, reused after."""
    flow = Flow("Filter", "$.filter.key")
    _iteration_failed(flow, "Pipeline.FilterFailed", "filter {}", ("$.filter.name",))
    flow.call(
        "Create filter",
        "createFilter",
        {
            "Name.$": "$.filter.name",
            "DatasetGroupArn.$": "$.ctx.datasetGroup.arn",
            "FilterExpression.$": "$.filter.expression",
        },
        "Publish filter",
        selector={"arn.$": "$.FilterArn"},
        result="$.created",
        catch=(
            ("Personalize.ResourceAlreadyExistsException", "$.exists", "Filter exists"),
            ("Personalize.InvalidInputException", "$.invalid", "Filter skipped"),
        ),
    )
    flow.pass_(
        "Filter exists", {"arn.$": _arn("filter", "$.filter.name")}, "Publish filter", result="$.created"
    )
    flow.pass_(
        "Filter skipped", None, None, Comment="The data has no field the expression names (e.g. no CATEGORY)."
    )
    _update(
        flow,
        "Publish filter",
        "SET filters.#f = :a",
        {":a": _s("$.created.arn")},
        None,
        {"#f.$": "$.filter.key"},
    )
    top.map(
        "Filters",
        flow,
        "Create filter",
        items="$.plan.value.filters",
        item="filter",
        width="filters",
        result=None,
        next="Baseline and similar items",
        concurrency=2,
        comment="Filters are immutable: created once by name, reused after.",
    )


# --- solution -> version -> metrics -> gate -> campaign ---------------------------------------------
def solution_chain(flow: Flow, then: str) -> None:
    """Create or reuse the solution (auto-training as the template says), train a version or take
    auto-training's newest, and read its metrics; then `then`."""
    solution = {"SolutionArn.$": "$.sol.arn"}
    auto = "$.ctx.autoTraining"
    schedule = {"AutoTrainingConfig": {"SchedulingExpression.$": f"{auto}.schedule"}}
    flow.create_or_reuse(
        "solution",
        "createSolution",
        {
            "Name.$": "$.solution.solutionName",
            "DatasetGroupArn.$": "$.ctx.datasetGroup.arn",
            "RecipeArn.$": "$.solution.recipeArn",
            "PerformHPO": False,
            # performAutoTraining defaults to true: always set (or the service retrains beside our schedule).
            "PerformAutoTraining.$": f"{auto}.enabled",
            "SolutionConfig": schedule,
        },
        "SolutionArn",
        _arn("solution", "$.solution.solutionName"),
        "Solution: start polling",
        "$.sol",
    )
    flow.wait_for("Solution", "describeSolution", solution, "Solution.Status", "Auto-training current?")
    described = "$.described.Solution"
    same_schedule = [
        {
            "Variable": f"{described}.SolutionConfig.AutoTrainingConfig.SchedulingExpression",
            "IsPresent": True,
        },
        {
            "Variable": f"{described}.SolutionConfig.AutoTrainingConfig.SchedulingExpression",
            "StringEqualsPath": f"{auto}.schedule",
        },
    ]
    flow.choice(
        "Auto-training current?",
        [
            {
                "And": [
                    {"Variable": f"{described}.PerformAutoTraining", "IsPresent": True},
                    {"Variable": f"{described}.PerformAutoTraining", "BooleanEqualsPath": f"{auto}.enabled"},
                    {"Or": [{"Variable": f"{auto}.enabled", "BooleanEquals": False}, {"And": same_schedule}]},
                ],
                "Next": "Auto-training?",
            }
        ],
        "Update auto-training",
        comment="A reused solution keeps its own setting: bring it to the template's (UpdateSolution).",
    )
    flow.call(
        "Update auto-training",
        "updateSolution",
        {**solution, "PerformAutoTraining.$": f"{auto}.enabled", "SolutionUpdateConfig": schedule},
        "Auto-training update: start polling",
    )
    flow.wait_for(
        "Auto-training update",
        "describeSolution",
        solution,
        "Solution.LatestSolutionUpdate.Status",
        "Auto-training?",
    )
    flow.choice(
        "Auto-training?",
        [{"Variable": f"{auto}.enabled", "BooleanEquals": True, "Next": "Any version?"}],
        "Create solution version",
    )
    flow.choice(
        "Any version?",
        [{"Variable": f"{described}.LatestSolutionVersion", "IsPresent": True, "Next": "Use latest version"}],
        "Waiting for auto-training",
        comment="DescribeSolution's latestSolutionVersion: the newest version, whoever trained it.",
    )
    flow.pass_(
        "Use latest version",
        {"arn.$": f"{described}.LatestSolutionVersion.SolutionVersionArn"},
        "Training: start polling",
        result="$.version",
    )
    flow.call(
        "Create solution version",
        "createSolutionVersion",
        {**solution, "TrainingMode.$": "$.solution.trainingMode"},
        "Training: start polling",
        selector={"arn.$": "$.SolutionVersionArn"},
        result="$.version",
    )
    training(flow)
    version = {"SolutionVersionArn.$": "$.version.arn"}
    flow.call(
        "Metrics", "getSolutionMetrics", version, then, selector={"values.$": "$.Metrics"}, result="$.metrics"
    )


def training(flow: Flow) -> None:
    """Wait for the version; a failed one says why (when Personalize says), a stopped one that it
    was stopped, one over budget is stopped (StopSolutionVersionCreation) and says so."""
    version = {"SolutionVersionArn.$": "$.version.arn"}
    what = fmt(
        "Training {} ({}, {})", "$.solution.solutionName", "$.solution.recipe", "$.solution.trainingMode"
    )
    flow.wait_for(
        "Training",
        "describeSolutionVersion",
        version,
        "SolutionVersion.Status",
        "Metrics",
        long=True,
        failed="Reason given?",
        stopped="Training stopped",
        timed_out="Stop training",
    )
    reason = "$.described.SolutionVersion.FailureReason"
    flow.choice(
        "Reason given?",
        [{"Variable": reason, "IsPresent": True, "Next": "Training failed"}],
        "Training failed (no reason)",
    )
    flow.fail("Training failed", "Pipeline.TrainingFailed", fmt("{} failed: {}", what, reason))
    flow.fail(
        "Training failed (no reason)",
        "Pipeline.TrainingFailed",
        fmt("{} ended {} without a reason.", what, "$.described.SolutionVersion.Status"),
    )
    flow.fail(
        "Training stopped",
        "Pipeline.TrainingStopped",
        fmt("{} was stopped (CREATE STOPPED) before it finished; start the run again.", what),
    )
    flow.call(
        "Stop training",
        "stopSolutionVersionCreation",
        version,
        "Training overran",
        otherwise=(None, "Training overran"),
        comment="Polling budget spent: stop the training.",
    )
    flow.fail(
        "Training overran",
        "Pipeline.TrainingTimeout",
        fmt(
            "Training {} did not finish within MaxPolls polls along PollSchedule and was stopped: raise MaxPolls or train on less data.",
            "$.solution.solutionName",
        ),
    )


def campaign(flow: Flow, publish: str) -> None:
    """Create the campaign, or move the existing one to the new version (the old one serves until
    the update is ACTIVE: DescribeCampaign's latestCampaignUpdate, while its status stays ACTIVE)."""
    flow.create_or_reuse(
        "campaign",
        "createCampaign",
        {
            "Name.$": "$.solution.campaignName",
            "SolutionVersionArn.$": "$.version.arn",
            "MinProvisionedTPS": 1,
        },
        "CampaignArn",
        _arn("campaign", "$.solution.campaignName"),
        "New or existing?",
        "$.campaign",
        exists="$.campaignExists",
    )
    flow.choice(
        "New or existing?",
        [{"Variable": "$.campaignExists", "IsPresent": True, "Next": "Update campaign"}],
        "Campaign: start polling",
        comment="Only the campaign's own ResourceAlreadyExists decides: a new campaign cannot be updated while it is created.",
    )
    arn = {"CampaignArn.$": "$.campaign.arn"}
    flow.fail(
        "Campaign failed",
        "Pipeline.CampaignFailed",
        fmt(
            "Campaign {}: {} The previous version keeps serving.",
            "$.campaign.arn",
            "States.JsonToString($.described.Campaign)",
        ),
    )
    flow.wait_for(
        "Campaign",
        "describeCampaign",
        arn,
        "Campaign.Status",
        publish,
        long=True,
        failed="Campaign failed",
        either="campaign",
    )
    flow.call(
        "Update campaign",
        "updateCampaign",
        {**arn, "SolutionVersionArn.$": "$.version.arn"},
        "Campaign update: start polling",
    )
    flow.wait_for(
        "Campaign update",
        "describeCampaign",
        arn,
        "Campaign.LatestCampaignUpdate.Status",
        publish,
        long=True,
        failed="Campaign failed",
        either="campaign",
    )


def baseline_branch() -> Flow:
    """A popularity-count baseline on the same data: the quality gate's floor."""
    flow = Flow("Baseline")
    _iteration_failed(
        flow, "Pipeline.BaselineFailed", "baseline {} ({})", ("$.solution.solutionName", "$.solution.recipe")
    )
    flow.pass_("Input", {"ctx.$": "$.ctx", "solution.$": "$.plan.baseline"}, "Create solution")
    solution_chain(flow, "Done")
    waiting = fmt(
        "Personalize has not trained solution {} yet (PerformAutoTraining is on): nothing to compare with.",
        "$.solution.solutionName",
    )
    flow.pass_("Waiting for auto-training", {"metrics": {}, "waiting.$": waiting}, None)
    flow.pass_("Done", {"metrics.$": "$.metrics.values", "solutionVersionArn.$": "$.version.arn"}, None)
    return flow


def similar_items_branch() -> Flow:
    flow = Flow("Similar items")
    _iteration_failed(
        flow,
        "Pipeline.SimilarItemsFailed",
        "similar items {} ({})",
        ("$.solution.solutionName", "$.solution.recipe"),
    )
    flow.pass_("Input", {"ctx.$": "$.ctx", "solution.$": "$.plan.similarItems"}, "Create solution")
    solution_chain(flow, "Create campaign")
    waiting = fmt(
        "Personalize has not trained solution {} yet (PerformAutoTraining is on).", "$.solution.solutionName"
    )
    flow.pass_("Waiting for auto-training", {"metrics": {}, "waiting.$": waiting}, None)
    campaign(flow, "Publish")
    record = {
        "M": {
            "recipe": _s("$.solution.recipe"),
            "solution_arn": _s("$.sol.arn"),
            "solution_version_arn": _s("$.version.arn"),
            "campaign_arn": _s("$.campaign.arn"),
            "promoted_at": NOW,
        }
    }
    _update(flow, "Publish", "SET similar_items = :si, updated_at = :t", {":si": record, ":t": NOW}, "Done")
    flow.pass_("Done", {"solutionVersionArn.$": "$.version.arn", "campaignArn.$": "$.campaign.arn"}, None)
    return flow


def variant_flow() -> Flow:
    """One A/B variant: train, gate, deploy, publish. A failure ends this variant only."""
    flow = Flow("Variant", "$.solution.name")
    label = {"variant.$": "$.solution.name", "recipe.$": "$.solution.recipe"}
    _iteration_failed(
        flow,
        "Pipeline.VariantFailed",
        "variant {} ({})",
        ("$.solution.name", "$.solution.recipe"),
        end={**label, "outcome": "failed"},
    )
    solution_chain(flow, "Quality gate")
    waiting = fmt(
        "Personalize has not trained solution {} yet (PerformAutoTraining is on): nothing to gate; "
        "the first execution after its first version promotes it.",
        "$.solution.solutionName",
    )
    flow.pass_(
        "Waiting for auto-training",
        {**label, "trainingMode": "AUTO", "outcome": "waiting", "reason.$": waiting},
        None,
    )
    payload = {
        "variant.$": "$.solution",
        "solutionVersionArn.$": "$.version.arn",
        "metrics.$": "$.metrics.values",
        "baselineMetrics.$": "$.baselineMetrics",
        "overrides.$": "$.qualityGate",
    }
    _invoke(
        flow,
        "Quality gate",
        "${QualityGateFunctionArn}",
        payload,
        "Promote?",
        "$.gate",
        selector={"decision.$": "$.Payload"},
        timeout=120,
    )
    flow.choice(
        "Promote?",
        [
            {"Variable": "$.gate.decision.promote", "BooleanEquals": True, "Next": "Create campaign"},
            {"Variable": "$.gate.decision.outcome", "StringEquals": "rejected", "Next": "Record rejection"},
        ],
        "Done",
    )
    decision = "$.gate.decision"
    rejection = {
        "M": {
            "solution_version_arn": _s("$.version.arn"),
            "reason": _s(f"{decision}.reason"),
            "metrics.$": f"{decision}.metricsItem",
            "rejected_at": NOW,
            "execution": _s("$$.Execution.Id"),
        }
    }
    _update(
        flow,
        "Record rejection",
        "SET variants.#v.last_rejection = :r, updated_at = :t",
        {":t": NOW, ":r": rejection},
        "Announce rejection",
        {"#v.$": "$.solution.name"},
    )
    _notify(
        flow,
        "Announce rejection",
        "Promotion rejected by the quality gate",
        fmt(
            "Variant {}: solution version {} was not deployed: {}. The live version keeps serving.",
            "$.solution.name",
            "$.version.arn",
            f"{decision}.reason",
        ),
        "Done",
    )
    campaign(flow, "Publish variant")
    promoted = {
        "solution_version_arn": _s("$.version.arn"),
        "campaign_arn": _s("$.campaign.arn"),
        "metrics.$": f"{decision}.metricsItem",
        "promoted_at": NOW,
    }
    _update(
        flow,
        "Publish variant",
        "SET variants.#v.campaign_arn = :c, variants.#v.solution_arn = :s, variants.#v.solution_version_arn = :sv, "
        "variants.#v.recipe = :r, variants.#v.#metrics = :m, variants.#v.promoted_at = :t, "
        "variants.#v.history = list_append(if_not_exists(variants.#v.history, :empty), :h), updated_at = :t",
        {
            ":c": _s("$.campaign.arn"),
            ":s": _s("$.sol.arn"),
            ":sv": _s("$.version.arn"),
            ":r": _s("$.solution.recipe"),
            ":m.$": f"{decision}.metricsItem",
            ":t": NOW,
            ":empty": {"L": []},
            ":h": {"L": [{"M": promoted}]},
        },
        "Done",
        {"#v.$": "$.solution.name", "#metrics": "metrics"},
    )
    flow.pass_(
        "Done",
        {
            **label,
            "trainingMode.$": "$.solution.trainingMode",
            "solutionVersionArn.$": "$.version.arn",
            "outcome.$": f"{decision}.outcome",
            "reason.$": f"{decision}.reason",
            "metric.$": f"{decision}.metric",
            "value.$": f"{decision}.new",
            "metrics.$": "$.metrics.values",
        },
        None,
    )
    return flow


def models(top: Flow) -> None:
    baseline, similar = baseline_branch(), similar_items_branch()
    top.add(
        "Baseline and similar items",
        {
            "Type": "Parallel",
            "Comment": "A popularity-count baseline on the same data (the quality gate's floor) and the similar-items campaign.",
            "Parameters": {"ctx.$": "$.ctx", "plan.$": "$.plan.value"},
            "Branches": [top.scope(baseline, "Input", "branch"), top.scope(similar, "Input", "branch")],
            "ResultSelector": {"baseline.$": "$[0]", "similarItems.$": "$[1]"},
            "ResultPath": "$.trained",
            "Catch": [
                {
                    "ErrorEquals": ["States.ALL"],
                    "ResultPath": "$.failure",
                    "Next": _step_failed(top, "Baseline and similar items"),
                }
            ],
            "Next": "Variants",
        },
    )
    variants = variant_flow()
    top.on_failure = _step_failed(top, "Variants")
    top.map(
        "Variants",
        variants,
        "Create solution",
        items="$.plan.value.variants",
        item="solution",
        width="variants",
        result="$.results",
        next="Any variant failed?",
        concurrency=0,
        comment="Per A/B variant, all at once: train, gate, deploy, publish. One variant failing does not stop the others.",
        selector={"baselineMetrics.$": "$.trained.baseline.metrics", "qualityGate.$": "$.config.qualityGate"},
    )
    # Parameters paths may filter ("Using JSONPath paths": only reference paths are restricted).
    top.pass_(
        "Any variant failed?",
        {"value.$": "States.ArrayContains($.results[*].outcome, 'failed')"},
        "Variants all done?",
        result="$.anyFailed",
    )
    top.choice(
        "Variants all done?",
        [{"Variable": "$.anyFailed.value", "BooleanEquals": True, "Next": "Variant failures"}],
        "Summary",
    )
    top.pass_(
        "Variant failures",
        {
            "Error": "Pipeline.VariantFailed",
            "Cause.$": "States.ArrayGetItem($.results[?(@.outcome == 'failed')].cause, 0)",
        },
        "Variants failed",
        result="$.failure",
    )


# --- finish and failure ------------------------------------------------------------------------------
def finish(top: Flow) -> None:
    top.on_failure = _step_failed(top, "Finish")
    summary = {
        "execution.$": "$$.Execution.Name",
        "trainingMode.$": "$.config.trainingMode",
        "variants.$": "$.results",
        "baseline.$": "$.trained.baseline",
        "similarItems.$": "$.trained.similarItems",
        "imports.$": "$.imports",
        "dataReport.$": "$.plan.value.reportUri",
        "warnings.$": "$.plan.value.warnings",
    }
    top.pass_("Summary", summary, "Notify success", result="$.summary")
    _notify(top, "Notify success", "Training finished", "States.JsonToString($.summary)", "Measure model age")
    _invoke(
        top,
        "Measure model age",
        "${ModelMonitorFunctionArn}",
        {},
        "Release lock",
        None,
        timeout=120,
        otherwise=("$.monitorError", "Release lock"),
        comment="The live models' age, measured now (the monitor also runs on its own schedule).",
    )
    _release_lock(top, "Release lock", "Done")
    top.add("Done", {"Type": "Succeed", "OutputPath": "$.summary"})


def failure(top: Flow) -> None:
    """Pipeline.<Step>Failed (never a reserved States.* name, which a Fail state may not raise),
    with a cause naming the step, the original error and its cause (a Lambda error's message)."""
    top.choice(
        "Failure: cause given?",
        [
            {
                "Not": {"Variable": "$.failure.Cause", "IsPresent": True},
                "Next": "Failure: describe (no cause)",
            },
            {
                "And": [
                    {"Variable": "$.failure.Cause", "IsString": True},
                    {"Variable": "$.failure.Cause", "StringMatches": '{*"errorMessage"*}'},
                ],
                "Next": "Failure: read Lambda error",
            },
        ],
        "Failure: describe",
    )
    top.pass_(
        "Failure: read Lambda error",
        {"Error.$": "$.failure.Error", "Detail.$": "States.StringToJson($.failure.Cause)"},
        "Failure: describe Lambda error",
        result="$.failure",
        Comment="A Lambda function error's cause is its JSON error object: keep its message, not the stack trace.",
    )
    step = {"step.$": "$.failed.step", "error.$": "$.failed.error", "sourceError.$": "$.failure.Error"}
    for local, tail, paths in (
        ("Failure: describe Lambda error", ": {}", ("$.failure.Detail.errorMessage",)),
        ("Failure: describe", ": {}", ("$.failure.Cause",)),
        ("Failure: describe (no cause)", " (no cause reported).", ()),
    ):
        cause = fmt('Step "{}" failed with {}' + tail, "$.failed.step", "$.failure.Error", *paths)
        top.pass_(local, {**step, "cause.$": cause}, "Notify failure", result="$.failed")
    message = fmt(
        "Training execution {} failed. {} The campaigns that were live keep serving.",
        "$$.Execution.Name",
        "$.failed.cause",
    )
    _notify(
        top,
        "Notify failure",
        "Training failed",
        message,
        "Release lock after failure",
        otherwise=(None, "Release lock after failure"),
    )
    _release_lock(top, "Release lock after failure", "Failed")
    top.add("Failed", {"Type": "Fail", "ErrorPath": "$.failed.error", "CausePath": "$.failed.cause"})


def machine() -> tuple[dict, Flow]:
    top = Flow()
    configure(top)
    run_lock(top)
    rollback(top)
    prepare(top)
    dataset_group(top)
    datasets(top)
    watermark(top)
    event_tracker(top)
    filters(top)
    models(top)
    finish(top)
    failure(top)
    comment = "Training pipeline: raw data in S3 -> live Personalize campaigns per A/B variant (generated by statemachines/training.py; see docs/architecture.md)."
    return {"Comment": comment, "TimeoutSeconds": TIMEOUT_SECONDS, **top.definition("Read input")}, top


def history_budget(max_polls: int, variants: int = WIDTHS["variants"]) -> int:
    """Worst-case history events of one execution: every state once, every Task retried to its
    limit, every wait loop to its bound (polls themselves without retries), every Map at its width.
    Step Functions fails an execution, uncatchably, at 25,000 events (Map and Parallel iterations
    count toward their parent's history)."""
    widths = {**WIDTHS, "variants": variants}
    bounds = {"maxPolls": max_polls, "setupPolls": SETUP_POLLS}

    def cost(flow: Flow) -> int:
        total = 0
        for state in flow.states.values():
            if state["Type"] == "Task":
                total += TASK_EVENTS + sum(r["MaxAttempts"] for r in state["Retry"]) * RETRY_EVENTS
            else:
                total += 4 if state["Type"] in ("Map", "Parallel") else STATE_EVENTS
        loops: dict[str, int] = {}
        for loop in flow.loops:  # alternatives (create or update a campaign) count once, the larger
            key = loop.either or loop.name
            loops[key] = max(loops.get(key, 0), loop.cycle_events * bounds.get(loop.bound, loop.bound))
        total += sum(loops.values())
        return total + sum(widths[width] * (cost(child) + 2) for child, width in flow.nested)

    return 2 + cost(machine()[1])


def render() -> str:
    return json.dumps(machine()[0], indent=2) + "\n"


def main(argv: list[str]) -> int:
    if "--budget" in argv:
        for polls in (24, 48, 60):
            print(f"MaxPolls {polls}: at most {history_budget(polls):,} history events (of 25,000)")
        return 0
    text = render()
    if "--check" in argv:
        if ASL_PATH.read_text() != text:
            print(
                f"{ASL_PATH} differs from statemachines/training.py: run python -m statemachines.training",
                file=sys.stderr,
            )
            return 1
        return 0
    ASL_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
