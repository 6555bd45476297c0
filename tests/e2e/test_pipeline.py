"""The training pipeline end to end: the real statemachines/training.asl.json executed by moto's
Step Functions engine on the local stack, against the local Personalize engine, driven only
through boto3 (S3 uploads, StartExecution, DescribeExecution/GetExecutionHistory, DynamoDB,
Personalize List*/Describe*, SNS delivered to an SQS queue).

One fresh stack for this module (state must start from an empty account); the tests run in file
order and each builds on what the previous ones left, as an operator's week would.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid

import pytest
from boto3.dynamodb.types import TypeDeserializer

from tests.e2e.conftest import ROOT, RunningStack, start_stack
from tests.support import start_execution, wait_for_execution

pytestmark = pytest.mark.e2e

SAMPLE = ROOT / "datasets" / "sample"
EXPERIMENT_ID = "recs-ab"
VARIANTS = ("A", "B", "C")


# --- helpers: everything through boto3 ----------------------------------------------------------


class Notes:
    """The pipeline topic, read through an SQS queue subscribed to it."""

    def __init__(self, stack: RunningStack):
        self.sqs = stack.client("sqs")
        self.url = self.sqs.create_queue(QueueName=f"pipeline-notes-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        stack.client("sns").subscribe(
            TopicArn=stack.outputs["PipelineTopicArn"], Protocol="sqs", Endpoint=arn
        )

    def drain(self) -> list[dict]:
        """Every message published since the last drain: [{"subject", "message"}]."""
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = got.get("Messages", [])
            if not messages:
                return out
            for m in messages:
                body = json.loads(m["Body"])
                out.append({"subject": body.get("Subject"), "message": body["Message"]})
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])


def start(stack: RunningStack, payload: dict) -> str:
    return start_execution(stack.client("stepfunctions"), stack.outputs["TrainingStateMachineArn"], payload)


def wait(stack: RunningStack, arn: str, timeout: float = 240) -> dict:
    return wait_for_execution(stack.client("stepfunctions"), arn, timeout, poll=0.5)


def history(stack: RunningStack, arn: str) -> list[dict]:
    sfn, events, token = stack.client("stepfunctions"), [], None
    while True:
        page = sfn.get_execution_history(executionArn=arn, maxResults=1000, **({"nextToken": token} if token else {}))  # fmt: skip
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def entered(events: list[dict]) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def run(stack: RunningStack, payload: dict, expect: str = "SUCCEEDED", timeout: float = 240) -> dict:
    described = wait(stack, start(stack, payload), timeout)
    if described["status"] != expect:
        tail = [e["type"] for e in history(stack, described["executionArn"])[-15:]]
        pytest.fail(
            f"{payload}: {described['status']} {described.get('error')}: {described.get('cause')}\n{tail}"
        )
    return described


def experiment(stack: RunningStack) -> dict:
    item = stack.client("dynamodb").get_item(
        TableName=stack.outputs["ExperimentsTableName"],
        Key={"experiment_id": {"S": EXPERIMENT_ID}},
        ConsistentRead=True,
    )["Item"]
    return {k: TypeDeserializer().deserialize(v) for k, v in item.items()}


def lock_held(stack: RunningStack) -> bool:
    items = stack.client("dynamodb").scan(TableName=stack.outputs["ExperimentsTableName"])["Items"]
    return any(i["experiment_id"]["S"].startswith("lock#") for i in items)


def inventory(stack: RunningStack) -> dict[str, int]:
    """How many of each Personalize resource exist (what a re-run must not multiply)."""
    p = stack.client("personalize")
    groups = p.list_dataset_groups()["datasetGroups"]
    counts = {"datasetGroups": len(groups), "schemas": len(p.list_schemas()["schemas"])}
    for g in groups:
        arn = g["datasetGroupArn"]
        counts["datasets"] = counts.get("datasets", 0) + len(p.list_datasets(datasetGroupArn=arn)["datasets"])
        solutions = p.list_solutions(datasetGroupArn=arn)["solutions"]
        counts["solutions"] = counts.get("solutions", 0) + len(solutions)
        counts["eventTrackers"] = counts.get("eventTrackers", 0) + len(
            p.list_event_trackers(datasetGroupArn=arn)["eventTrackers"]
        )
        counts["filters"] = counts.get("filters", 0) + len(p.list_filters(datasetGroupArn=arn)["Filters"])
        campaigns = sum(len(p.list_campaigns(solutionArn=s["solutionArn"])["campaigns"]) for s in solutions)
        counts["campaigns"] = counts.get("campaigns", 0) + campaigns
        counts["solutionVersions"] = counts.get("solutionVersions", 0) + sum(
            len(p.list_solution_versions(solutionArn=s["solutionArn"])["solutionVersions"]) for s in solutions
        )
    return counts


def live_versions(stack: RunningStack) -> dict[str, str]:
    """variant -> the solution version its campaign serves (asked of Personalize, not our table)."""
    p, record = stack.client("personalize"), experiment(stack)
    out = {}
    for name in VARIANTS:
        campaign = p.describe_campaign(campaignArn=record["variants"][name]["campaign_arn"])["campaign"]
        assert campaign["status"] == "ACTIVE", (name, campaign)
        out[name] = campaign["solutionVersionArn"]
    return out


def recommends(stack: RunningStack, variant: str, user: str = "u0001") -> list[str]:
    arn = experiment(stack)["variants"][variant]["campaign_arn"]
    items = stack.client("personalize-runtime").get_recommendations(
        campaignArn=arn, userId=user, numResults=5
    )
    return [i["itemId"] for i in items["itemList"]]


def upload_csv_with_renamed_column(stack: RunningStack, old: str, new: str) -> None:
    """raw/interactions.csv as exported by someone who renamed one column."""
    rows = list(csv.reader(io.StringIO((SAMPLE / "interactions.csv").read_text())))
    rows[0] = [new if c == old else c for c in rows[0]]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    stack.client("s3").put_object(
        Bucket=stack.outputs["DataBucketName"], Key="raw/interactions.csv", Body=out.getvalue().encode()
    )


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    with start_stack(tmp_path_factory.mktemp("pipeline") / "state") as running:
        yield running


@pytest.fixture(scope="module")
def notes(stack: RunningStack) -> Notes:
    return Notes(stack)


# --- the scenarios, in order --------------------------------------------------------------------


def test_bad_raw_data_fails_in_seconds_with_what_to_fix(stack, notes):
    upload_csv_with_renamed_column(stack, "event_type", "evnt_type")
    for kind in ("items", "users"):
        stack.client("s3").upload_file(str(SAMPLE / f"{kind}.csv"), stack.outputs["DataBucketName"], f"raw/{kind}.csv")  # fmt: skip
    described = run(stack, {"trainingMode": "FULL"}, expect="FAILED")
    assert described["error"] == "Pipeline.PrepareDataFailed"
    cause = described["cause"]
    assert cause.startswith('Step "Prepare data" failed with DataError: raw/interactions.csv lacks the column(s) event_type')  # fmt: skip
    assert "evnt_type" in cause and "Expected header: user_id, item_id, timestamp, event_type" in cause
    assert "Traceback" not in cause and "stackTrace" not in cause
    events = history(stack, described["executionArn"])
    names = entered(events)
    assert names.count("Prepare data") == 1 and "Create dataset group" not in names
    assert sum(e["type"] == "TaskFailed" for e in events) == 1, "one failure, no wall of retries"
    assert not lock_held(stack)
    sent = notes.drain()
    assert [n["subject"] for n in sent] == ["Training failed"]
    assert cause in sent[0]["message"] and "keep serving" in sent[0]["message"]


def test_too_few_interactions_after_cleaning_fail_before_any_import(stack, notes):
    rows = (SAMPLE / "interactions.csv").read_text().splitlines()
    s3, bucket = stack.client("s3"), stack.outputs["DataBucketName"]
    s3.put_object(Bucket=bucket, Key="raw/interactions.csv", Body="\n".join(rows[:900]).encode())
    described = run(stack, {"trainingMode": "FULL"}, expect="FAILED")
    assert described["error"] == "Pipeline.PrepareDataFailed"
    assert "valid interactions; Personalize needs at least 1000. Add more interactions" in described["cause"]
    assert "/data-report.json" in described["cause"]  # where the rejected rows are listed
    report_key = described["cause"].rsplit(f"s3://{bucket}/", 1)[1].split()[0]
    report = json.loads(s3.get_object(Bucket=bucket, Key=report_key)["Body"].read())
    assert report["error"] in described["cause"] and report["interactions"]
    assert not lock_held(stack)
    assert [n["subject"] for n in notes.drain()] == ["Training failed"]


SEEN: dict = {}  # what earlier scenarios left behind, for the later ones


def test_happy_path_from_an_empty_account(stack, notes):
    stack.upload_raw()  # the sample, whole again
    assert inventory(stack) == {"datasetGroups": 0, "schemas": 0}
    described = run(stack, {"trainingMode": "FULL"})
    p, record = stack.client("personalize"), experiment(stack)
    for name in VARIANTS:
        v = record["variants"][name]
        assert v["campaign_arn"] and v["solution_arn"] and v["solution_version_arn"] and v["promoted_at"], v
        assert v["metrics"]["normalized_discounted_cumulative_gain_at_10"] > 0, v["metrics"]
        assert [h["solution_version_arn"] for h in v["history"]] == [v["solution_version_arn"]]
        solution = p.describe_solution(solutionArn=v["solution_arn"])["solution"]
        assert solution["performAutoTraining"] is False and solution["recipeArn"].endswith(v["recipe"])
        version = p.describe_solution_version(solutionVersionArn=v["solution_version_arn"])["solutionVersion"]
        assert (version["status"], version["trainingMode"]) == ("ACTIVE", "FULL")
        assert len(recommends(stack, name)) == 5
    assert live_versions(stack) == {n: record["variants"][n]["solution_version_arn"] for n in VARIANTS}
    similar = p.describe_campaign(campaignArn=record["similar_items"]["campaign_arn"])["campaign"]
    assert similar["status"] == "ACTIVE"
    assert record["event_tracker"]["tracking_id"] and set(record["filters"]) >= {
        "category",
        "exclude_purchased",
    }
    assert record["dataset_group_arn"].endswith(":dataset-group/personalize-ab-dev")
    assert not lock_held(stack)
    sent = notes.drain()
    assert [n["subject"] for n in sent] == ["Training finished"]
    summary = json.loads(sent[0]["message"])
    assert summary["execution"] == described["name"]
    assert {v["variant"]: v["outcome"] for v in summary["variants"]} == dict.fromkeys(VARIANTS, "promote")
    for v in summary["variants"]:  # every metric of every variant, as published
        assert {k: float(x) for k, x in v["metrics"].items()} == {
            k: float(x) for k, x in record["variants"][v["variant"]]["metrics"].items()
        }
    assert summary["baseline"]["metrics"] and summary["dataReport"].endswith("/data-report.json")
    # measured by ModelMonitorFunction (invoked at the end of the run): the oldest and each variant's
    metrics = stack.client("cloudwatch").list_metrics(MetricName="ModelAgeHours")["Metrics"]
    dimensions = [m["Dimensions"] for m in metrics]
    assert [{"Name": "ExperimentId", "Value": EXPERIMENT_ID}] in dimensions
    assert [{"Name": "ExperimentId", "Value": EXPERIMENT_ID}, {"Name": "Variant", "Value": "A"}] in dimensions
    SEEN["inventory"] = inventory(stack)


def test_second_full_run_creates_nothing_twice_and_updates_the_campaigns(stack, notes):
    before, old = SEEN["inventory"], live_versions(stack)
    # margin 1: every new version is promoted (the gate itself is tested below)
    described = run(stack, {"trainingMode": "FULL", "qualityGate": {"margin": 1}})
    assert "Dataset: Replace schema" not in entered(history(stack, described["executionArn"]))
    after = inventory(stack)
    assert {k: v for k, v in after.items() if k != "solutionVersions"} == {
        k: v for k, v in before.items() if k != "solutionVersions"
    }
    assert after["solutionVersions"] == before["solutionVersions"] + len(VARIANTS) + 2  # + baseline, similar
    new, record = live_versions(stack), experiment(stack)
    for name in VARIANTS:
        assert new[name] != old[name]
        assert record["variants"][name]["solution_version_arn"] == new[name]
        assert [h["solution_version_arn"] for h in record["variants"][name]["history"]] == [
            old[name],
            new[name],
        ]
    assert [n["subject"] for n in notes.drain()] == ["Training finished"]


def test_update_run_trains_incrementally_where_personalize_allows_it(stack, notes):
    # a lock left by an execution that no longer exists is taken over, not waited for
    dataset_group = experiment(stack)["dataset_group_arn"]
    stack.client("dynamodb").put_item(
        TableName=stack.outputs["ExperimentsTableName"],
        Item={
            "experiment_id": {"S": f"lock#{dataset_group.rsplit('/', 1)[1]}"},
            "execution": {"S": stack.outputs["TrainingStateMachineArn"].replace(":stateMachine:", ":execution:") + ":gone"},
        },
    )  # fmt: skip
    assert lock_held(stack)
    old = live_versions(stack)
    run(stack, {"trainingMode": "UPDATE", "qualityGate": {"margin": 1}})
    p, new = stack.client("personalize"), live_versions(stack)
    modes = {n: p.describe_solution_version(solutionVersionArn=new[n])["solutionVersion"]["trainingMode"] for n in VARIANTS}  # fmt: skip
    recipes = {n: experiment(stack)["variants"][n]["recipe"] for n in VARIANTS}
    for name in VARIANTS:
        assert new[name] != old[name]
        # UPDATE only for aws-user-personalization (v1) and the legacy HRNN-Coldstart (botocore's
        # CreateSolutionVersion trainingMode); -v2 and popularity variants train FULL instead
        expected = "UPDATE" if recipes[name] in ("aws-user-personalization", "aws-hrnn-coldstart") else "FULL"
        assert modes[name] == expected, (name, recipes[name], modes[name])
    assert "UPDATE" in modes.values() and not lock_held(stack)
    notes.drain()


def _with_fresh_interactions(stack: RunningStack, count: int) -> list[str]:
    now = int(time.time())
    fresh = [f"u{u % 300:04d},i{u * 7 % 400:04d},{now - 2000 + u},click," for u in range(count)]
    text = (SAMPLE / "interactions.csv").read_text().rstrip("\n") + "\n" + "\n".join(fresh) + "\n"
    stack.client("s3").put_object(
        Bucket=stack.outputs["DataBucketName"], Key="raw/interactions.csv", Body=text.encode()
    )
    return fresh


def test_incremental_import_of_too_few_new_interactions_waits_for_more(stack, notes):
    """Personalize appends interactions in bulk only 1000 at a time or more (bulk-data-import.html):
    fewer are not imported, and the watermark stays so that they go with the next import."""
    watermark = int(experiment(stack)["interactions_watermark"])
    _with_fresh_interactions(stack, 40)
    try:
        payload = {"trainingMode": "UPDATE", "importMode": "INCREMENTAL", "variants": ["C"], "qualityGate": {"margin": 1}}  # fmt: skip
        summary = json.loads(run(stack, payload)["output"])
    finally:
        stack.upload_raw()
    interactions = next(i for i in summary["imports"] if i["kind"] == "interactions")
    assert interactions["imported"] is False and int(experiment(stack)["interactions_watermark"]) == watermark
    assert any("40 new interactions were not imported" in w for w in summary["warnings"])
    notes.drain()


def test_incremental_import_sends_only_the_interactions_newer_than_the_last_import(stack, notes):
    watermark = int(experiment(stack)["interactions_watermark"])
    fresh = _with_fresh_interactions(stack, 1000)
    s3, bucket = stack.client("s3"), stack.outputs["DataBucketName"]
    try:
        payload = {"trainingMode": "UPDATE", "importMode": "INCREMENTAL", "variants": ["A"], "qualityGate": {"margin": 1}}  # fmt: skip
        described = run(stack, payload)
    finally:
        stack.upload_raw()
    p, summary = stack.client("personalize"), json.loads(described["output"])
    job_arn = next(i["importJobArn"] for i in summary["imports"] if i["kind"] == "interactions")
    job = p.describe_dataset_import_job(datasetImportJobArn=job_arn)["datasetImportJob"]
    assert (job["status"], job["importMode"]) == ("ACTIVE", "INCREMENTAL")
    key = job["dataSource"]["dataLocation"].split(f"s3://{bucket}/", 1)[1]
    sent = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
    assert len(sent) == 1 + len(fresh)  # header + only the new interactions
    assert watermark < int(experiment(stack)["interactions_watermark"]) == int(fresh[-1].split(",")[2])
    # A (aws-user-personalization-v2) cannot UPDATE: asked to, it trains FULL rather than failing
    a = live_versions(stack)["A"]
    assert p.describe_solution_version(solutionVersionArn=a)["solutionVersion"]["trainingMode"] == "FULL"
    notes.drain()


def test_skip_import_trains_on_what_personalize_already_has(stack, notes):
    p, record = stack.client("personalize"), experiment(stack)
    datasets = p.list_datasets(datasetGroupArn=record["dataset_group_arn"])["datasets"]

    def jobs() -> int:
        return sum(
            len(p.list_dataset_import_jobs(datasetArn=d["datasetArn"])["datasetImportJobs"]) for d in datasets
        )

    before, old = jobs(), live_versions(stack)["C"]
    described = run(stack, {"trainingMode": "FULL", "skipImport": True, "variants": ["C"], "qualityGate": {"margin": 1}})  # fmt: skip
    assert jobs() == before
    assert [i["imported"] for i in json.loads(described["output"])["imports"]] == [False, False, False]
    assert "Save import watermark" not in entered(history(stack, described["executionArn"]))
    assert live_versions(stack)["C"] != old
    notes.drain()


def test_quality_gate_rejection_is_recorded_announced_and_not_deployed(stack, notes):
    old, old_record = live_versions(stack), experiment(stack)
    # margin -1: a version must beat the live one by a whole point, which no version can
    run(stack, {"trainingMode": "FULL", "variants": ["B"], "qualityGate": {"margin": -1}})
    assert live_versions(stack) == old
    record = experiment(stack)
    b = record["variants"]["B"]
    assert b["solution_version_arn"] == old["B"] and b["history"] == old_record["variants"]["B"]["history"]
    rejection = b["last_rejection"]
    assert rejection["solution_version_arn"] != old["B"] and "below" in rejection["reason"]
    assert record["variants"]["A"] == old_record["variants"]["A"]  # not in this run's variants
    sent = notes.drain()
    assert [n["subject"] for n in sent] == ["Promotion rejected by the quality gate", "Training finished"]
    assert "Variant B" in sent[0]["message"] and rejection["solution_version_arn"] in sent[0]["message"]
    summary = json.loads(sent[1]["message"])
    assert [(v["variant"], v["outcome"]) for v in summary["variants"]] == [("B", "rejected")]


def test_rollback_goes_back_to_the_previous_version_in_one_step(stack, notes):
    history_before = experiment(stack)["variants"]["B"]["history"]
    assert len(history_before) == 3  # FULL, FULL, UPDATE
    run(stack, {"rollback": {"variant": "B"}})
    b = experiment(stack)["variants"]["B"]
    assert (
        live_versions(stack)["B"] == history_before[-2]["solution_version_arn"] == b["solution_version_arn"]
    )
    assert b["rolled_back_from"] == history_before[-1]["solution_version_arn"]
    assert b["history"] == history_before[:-1]
    assert [n["subject"] for n in notes.drain()] == ["Rollback done"]
    described = run(stack, {"rollback": {"variant": "Z"}}, expect="FAILED")
    assert described["error"] == "Pipeline.RollbackFailed"
    assert described["cause"].startswith('Step "Rollback" failed with RollbackError: rollback: variant \'Z\' does not exist')  # fmt: skip
    assert experiment(stack)["variants"]["B"] == b and not lock_held(stack)
    assert [n["subject"] for n in notes.drain()] == ["Training failed"]


def test_failed_run_after_success_leaves_the_live_campaigns_serving(stack, notes):
    old, old_record = live_versions(stack), experiment(stack)
    upload_csv_with_renamed_column(stack, "timestamp", "time")
    try:
        described = run(stack, {"trainingMode": "FULL"}, expect="FAILED")
    finally:
        stack.upload_raw()
    assert (
        described["error"] == "Pipeline.PrepareDataFailed"
        and "lacks the column(s) timestamp" in described["cause"]
    )
    assert live_versions(stack) == old
    assert experiment(stack)["variants"] == old_record["variants"]
    for name in VARIANTS:
        assert len(recommends(stack, name)) == 5
    assert [n["subject"] for n in notes.drain()] == ["Training failed"]


def test_run_lock_a_second_execution_fails_fast_and_changes_nothing(stack, notes):
    first = start(stack, {"trainingMode": "FULL", "variants": ["C"], "qualityGate": {"margin": 1}})
    deadline = time.monotonic() + 30
    while not lock_held(stack):
        assert time.monotonic() < deadline, "the first execution never took the lock"
        time.sleep(0.1)
    second = wait(stack, start(stack, {"trainingMode": "FULL"}))
    assert (second["status"], second["error"]) == ("FAILED", "Pipeline.Locked")
    assert first in second["cause"] and "changed nothing" in second["cause"]
    assert "Prepare data" not in entered(history(stack, second["executionArn"]))
    assert wait(stack, first)["status"] == "SUCCEEDED"
    assert not lock_held(stack)
    subjects = [n["subject"] for n in notes.drain()]
    assert sorted(subjects) == ["Training finished", "Training not started: another execution is running"]


def test_a_recipe_the_engine_rejects_fails_the_variant_with_the_real_cause(tmp_path_factory):
    """Own stack: its variants are configured (template parameter) with a recipe that does not exist."""
    bad = start_stack(
        tmp_path_factory.mktemp("pipeline-bad-recipe") / "state",
        "--parameter-overrides",
        "VariantRecipes=aws-popularity-count,aws-no-such-recipe,aws-popularity-count",
    )
    try:
        bad.upload_raw()
        described = run(bad, {"trainingMode": "FULL"}, expect="FAILED")
        assert described["error"] == "Pipeline.VariantsFailed"
        cause = described["cause"]
        assert cause.startswith('Step "Variants" failed with Pipeline.VariantFailed: variant B (aws-no-such-recipe): Personalize.')  # fmt: skip
        assert "aws-no-such-recipe" in cause.split("Personalize.", 1)[1]
        events = history(bad, described["executionArn"])
        # The rejected call once, not a wall of retries. (When an iteration fails, moto's Map also
        # records the aborted sibling iterations' in-flight tasks as failed: those are not counted.)
        failures = [e["taskFailedEventDetails"] for e in events if e["type"] == "TaskFailed"]
        rejected = [f for f in failures if f["error"] == "Personalize.InvalidInputException"]
        assert [f["resource"] for f in rejected] == ["createSolution"], failures
        assert not lock_held(bad)
        record = experiment(bad)
        assert "campaign_arn" not in record["variants"]["B"]
    finally:
        bad.stop()


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory):
    """A second fresh account, for histories the main sequence does not have."""
    with start_stack(tmp_path_factory.mktemp("pipeline-other") / "state") as running:
        yield running


def test_a_dataset_made_with_an_older_schema_moves_to_the_current_one(other):
    """The items dataset exists with a schema from an older release (fewer fields). Personalize
    schemas cannot change, so the pipeline's schema names carry a content hash: it creates the
    current schema, points the dataset at it (UpdateDataset) and the import works."""
    p = other.client("personalize")
    old = {
        "type": "record",
        "name": "Items",
        "namespace": "com.amazonaws.personalize.schema",
        "fields": [{"name": "ITEM_ID", "type": "string"}, {"name": "CREATION_TIMESTAMP", "type": "long"}],
        "version": "1.0",
    }
    group = p.create_dataset_group(name="personalize-ab-dev")["datasetGroupArn"]
    while p.describe_dataset_group(datasetGroupArn=group)["datasetGroup"]["status"] != "ACTIVE":
        time.sleep(0.2)
    old_schema = p.create_schema(name="personalize-ab-dev-items", schema=json.dumps(old))["schemaArn"]
    dataset = p.create_dataset(
        name="personalize-ab-dev-items", datasetType="Items", datasetGroupArn=group, schemaArn=old_schema
    )["datasetArn"]
    other.upload_raw()
    # margin -1: A and B are not deployed (the next test needs variants that never were)
    described = run(other, {"trainingMode": "FULL", "qualityGate": {"margin": -1}})
    current = p.describe_dataset(datasetArn=dataset)["dataset"]
    assert current["schemaArn"] != old_schema and current["latestDatasetUpdate"]["status"] == "ACTIVE"
    schema = json.loads(p.describe_schema(schemaArn=current["schemaArn"])["schema"]["schema"])
    assert json.loads((ROOT / "datasets" / "schemas" / "items.json").read_text()) == schema
    names = entered(history(other, described["executionArn"]))
    assert names.count("Dataset: Replace schema") == 1  # items only; the others were created current
    items = [i for i in json.loads(described["output"])["imports"] if i["kind"] == "items"]
    assert items[0]["imported"] is True


def test_a_variant_rejected_on_its_first_training_is_deployed_by_a_later_run(other):
    record = experiment(other)["variants"]["A"]
    assert "campaign_arn" not in record and record["last_rejection"]
    run(other, {"trainingMode": "FULL", "variants": ["A"]})  # its solution exists, its campaign does not
    a = experiment(other)["variants"]["A"]
    campaign = other.client("personalize").describe_campaign(campaignArn=a["campaign_arn"])["campaign"]
    assert (campaign["status"], campaign["solutionVersionArn"]) == ("ACTIVE", a["solution_version_arn"])


def test_native_auto_training_the_pipeline_only_gates_and_promotes(tmp_path_factory):
    """Own stack with PerformAutoTraining=true (the documented switch): the first execution creates
    every solution with auto-training on and, with no version to gate yet, deploys nothing and
    succeeds; once Personalize has trained (done here by hand, as its schedule would), the next
    execution gates and promotes those versions without training any itself."""
    auto = start_stack(
        tmp_path_factory.mktemp("pipeline-auto") / "state",
        "--parameter-overrides",
        "PerformAutoTraining=true",
    )
    try:
        auto.upload_raw()
        first = json.loads(run(auto, {"trainingMode": "FULL"})["output"])
        assert {v["variant"]: v["outcome"] for v in first["variants"]} == dict.fromkeys(VARIANTS, "waiting")
        assert (
            "has not trained solution" in first["variants"][0]["reason"] and first["similarItems"]["waiting"]
        )
        p = auto.client("personalize")
        group = p.list_dataset_groups()["datasetGroups"][0]["datasetGroupArn"]
        solutions = p.list_solutions(datasetGroupArn=group)["solutions"]
        assert len(solutions) == len(VARIANTS) + 2
        versions = []
        for s in solutions:
            assert (
                p.describe_solution(solutionArn=s["solutionArn"])["solution"]["performAutoTraining"] is True
            )
            assert not p.list_solution_versions(solutionArn=s["solutionArn"])["solutionVersions"]
            versions.append(p.create_solution_version(solutionArn=s["solutionArn"])["solutionVersionArn"])

        def trained(arns: list[str]) -> None:
            deadline = time.monotonic() + 120
            while any(p.describe_solution_version(solutionVersionArn=v)["solutionVersion"]["status"] != "ACTIVE" for v in arns):  # fmt: skip
                assert time.monotonic() < deadline, "Personalize's stand-in training did not finish"
                time.sleep(0.5)

        trained(versions)
        a_solution = next(s["solutionArn"] for s in solutions if "-A-" in s["name"])
        versions.append(
            p.create_solution_version(solutionArn=a_solution)["solutionVersionArn"]
        )  # a newer one
        trained(versions[-1:])
        second = json.loads(run(auto, {"trainingMode": "FULL"})["output"])
        assert {v["variant"]: v["outcome"] for v in second["variants"]} == dict.fromkeys(VARIANTS, "promote")
        live = live_versions(auto)
        assert set(live.values()) <= set(versions) and live["A"] == versions[-1]  # the newest version
        assert sum(len(p.list_solution_versions(solutionArn=s["solutionArn"])["solutionVersions"]) for s in solutions) == len(versions)  # fmt: skip
    finally:
        auto.stop()


def test_a_long_training_polls_with_back_off_in_four_states_and_its_history_stays_in_budget(tmp_path_factory):
    """Own stack whose engine takes at least 12 s per training (as Personalize takes hours): the
    training wait polls along PollSchedule (1 s, then 2 s), four states a poll, and the execution's
    history stays within the worst case statemachines/training.py computes for these settings."""
    from statemachines.training import history_budget

    slow = start_stack(
        tmp_path_factory.mktemp("pipeline-long") / "state",
        "--parameter-overrides", "PollSchedule=1,2", "MaxPolls=40",
        env={"LOCAL_PERSONALIZE_MIN_TRAINING_SECONDS": "12"},
    )  # fmt: skip
    try:
        slow.upload_raw()
        described = run(slow, {"trainingMode": "FULL", "variants": ["C"]}, timeout=400)
        events = history(slow, described["executionArn"])
        loop = [n for n in entered(events) if n.startswith("Variant: Training: ")]
        assert loop[:4] == ["Variant: Training: start polling", "Variant: Training: describe",
                            "Variant: Training: status?", "Variant: Training: back off"]  # fmt: skip
        cycles = loop[1:]
        polls = cycles.count("Variant: Training: describe")
        assert polls >= 6, loop  # 12 s at 1 s then 2 s
        for i in range(polls - 1):  # describe, status?, back off | steady, wait -- then describe again
            cycle = cycles[4 * i : 4 * i + 4]
            assert cycle[:2] == ["Variant: Training: describe", "Variant: Training: status?"], loop
            assert cycle[2] in ("Variant: Training: back off", "Variant: Training: steady") and cycle[3] == "Variant: Training: wait", loop  # fmt: skip
        assert "Variant: Training: steady" in cycles  # past the schedule's end, the interval stays
        waits = [e for e in events if e["type"] in ("WaitStateEntered", "WaitStateExited") and e.get(
            "stateEnteredEventDetails", e.get("stateExitedEventDetails", {}))["name"] == "Variant: Training: wait"]  # fmt: skip
        seconds = [b["timestamp"] - a["timestamp"] for a, b in zip(waits[::2], waits[1::2], strict=True)]
        assert seconds[0].total_seconds() < 1.8 <= seconds[-1].total_seconds(), seconds
        assert polls * 11 < len(events) <= history_budget(40, variants=1)
    finally:
        slow.stop()
