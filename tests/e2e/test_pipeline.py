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
import uuid

import pytest
from boto3.dynamodb.types import TypeDeserializer

from tests.e2e.conftest import ROOT, RunningStack, start_stack

pytestmark = pytest.mark.e2e

SAMPLE = ROOT / "datasets" / "sample"
EXPERIMENT_ID = "recs-ab"
VARIANTS = ("A", "B", "C")


def engine_available() -> bool:
    try:
        from local.personalize import PersonalizeServer  # noqa: F401
    except ImportError:
        return False
    return True


needs_engine = pytest.mark.skipif(not engine_available(), reason="local Personalize engine not there yet")


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
    return stack.client("stepfunctions").start_execution(
        stateMachineArn=stack.outputs["TrainingStateMachineArn"],
        name=f"e2e-{uuid.uuid4()}",
        input=json.dumps(payload),
    )["executionArn"]


def wait(stack: RunningStack, arn: str, timeout: float = 240) -> dict:
    import time

    sfn, deadline = stack.client("stepfunctions"), time.monotonic() + timeout
    while True:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        assert time.monotonic() < deadline, f"{arn} still RUNNING after {timeout} s"
        time.sleep(0.5)


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


def run(stack: RunningStack, payload: dict, expect: str = "SUCCEEDED") -> dict:
    described = wait(stack, start(stack, payload))
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
    running = start_stack(tmp_path_factory.mktemp("pipeline") / "state")
    try:
        yield running
    finally:
        running.stop()


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
