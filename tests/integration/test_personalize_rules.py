"""Amazon Personalize's documented rules, enforced by the local engine: one test per rule, through real
boto3 clients on the engine's wire protocol. Each rule's source is quoted where the engine implements it
and listed in docs/aws-conformance.md ("Personalize (local engine)")."""

from __future__ import annotations

import threading

import pytest

from local.personalize import importer, solutions
from local.personalize.protocol import service_model
from tests.plugins.personalize_engine import ROLE, interactions_csv, items_csv, users_csv

pytest_plugins = ["tests.plugins.personalize_engine"]
pytestmark = pytest.mark.integration

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
HEADER = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"


def interactions(n: int, users: int = 60, start: int = 1_700_000_000) -> str:
    """n distinct interactions spread over `users` users (every user has 2 or more when n >= 2 * users)."""
    return HEADER + "".join(f"r{k % users:04d},i{k % 97:04d},{start + k},click\n" for k in range(n))


def create_import(engine, name: str, dataset: str, location: str, mode: str) -> str:
    return engine.personalize.create_dataset_import_job(
        jobName=name, datasetArn=dataset, dataSource={"dataLocation": location}, roleArn=ROLE, importMode=mode
    )["datasetImportJobArn"]


@pytest.fixture(scope="module")
def shop(engine):
    """A dataset group holding the sample's bulk interactions, items and users."""
    arns = engine.dataset_group("rules")
    for kind, body in (("interactions", interactions_csv()), ("items", items_csv()), ("users", users_csv())):
        job = engine.import_job(f"rules-{kind}", arns[kind], engine.upload(f"rules/{kind}.csv", body))
        assert job["status"] == "ACTIVE", job.get("failureReason")
    return arns


def test_update_training_needs_user_personalization_v1_and_an_active_full_version(engine, shop):
    p = engine.personalize
    v2 = engine.solution("rules-up-v2", shop["group"], "aws-user-personalization-v2")
    assert engine.train(v2)["status"] == "ACTIVE"
    with pytest.raises(p.exceptions.InvalidInputException, match="uses aws-user-personalization-v2"):
        p.create_solution_version(solutionArn=v2, trainingMode="UPDATE")

    v1 = engine.solution("rules-up-v1", shop["group"], "aws-user-personalization")
    with pytest.raises(p.exceptions.InvalidInputException, match="train FULL first"):
        p.create_solution_version(solutionArn=v1, trainingMode="UPDATE")
    assert engine.train(v1)["status"] == "ACTIVE"
    update = engine.train(v1, mode="UPDATE")
    assert (update["status"], update["trainingMode"]) == ("ACTIVE", "UPDATE")


def test_stopped_versions_go_to_create_stopped_and_carry_no_failure_reason(engine, shop, monkeypatch):
    p = engine.personalize
    solution = engine.solution("rules-stop", shop["group"], "aws-user-personalization")
    monkeypatch.setattr(solutions, "PENDING_SECONDS", 1.0)  # long enough to stop it while CREATE PENDING
    pending = p.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    p.stop_solution_version_creation(solutionVersionArn=pending)
    stopped = p.describe_solution_version(solutionVersionArn=pending)["solutionVersion"]
    assert (
        stopped["status"] == "CREATE STOPPED" and "failureReason" not in stopped
    )  # CREATE_PENDING > CREATE_STOPPED

    gate, train = threading.Event(), solutions._train
    monkeypatch.setattr(solutions, "PENDING_SECONDS", 0.05)
    monkeypatch.setattr(solutions, "_train", lambda *args: gate.wait(60) and train(*args))
    running = p.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    engine.wait("describe_solution_version", "solutionVersionArn", running, done=("CREATE IN_PROGRESS",))
    p.stop_solution_version_creation(solutionVersionArn=running)
    stopping = p.describe_solution_version(solutionVersionArn=running)["solutionVersion"]
    assert stopping["status"] == "CREATE STOPPING"  # CREATE_IN_PROGRESS > CREATE_STOPPING > CREATE_STOPPED
    gate.set()
    final = engine.wait("describe_solution_version", "solutionVersionArn", running)
    assert final["status"] == "CREATE STOPPED" and "failureReason" not in final
    latest = p.describe_solution(solutionArn=solution)["solution"]["latestSolutionVersion"]
    assert latest["status"] == "CREATE STOPPED" and "failureReason" not in latest


def test_incremental_import_needs_bulk_records_already_imported(engine):
    p = engine.personalize
    arns = engine.dataset_group("rules-fresh")
    items = engine.upload("rules-fresh/items.csv", items_csv())
    with pytest.raises(p.exceptions.InvalidInputException, match="first import of a dataset must be FULL"):
        create_import(engine, "rules-fresh-incr", arns["items"], items, "INCREMENTAL")
    bad = engine.upload("rules-fresh/bad.csv", "ITEM_ID,COLOUR\ni1,red\n")
    assert engine.import_job("rules-fresh-bad", arns["items"], bad)["status"] == "CREATE FAILED"
    with pytest.raises(
        p.exceptions.InvalidInputException, match="must be FULL"
    ):  # a failed job imported nothing
        create_import(engine, "rules-fresh-incr-2", arns["items"], items, "INCREMENTAL")

    assert engine.import_job("rules-fresh-full", arns["items"], items)["status"] == "ACTIVE"
    few = engine.upload("rules-fresh/few.csv", "\n".join(items_csv().splitlines()[:4]) + "\n")
    job = engine.import_job("rules-fresh-few", arns["items"], few, mode="INCREMENTAL")
    assert job["status"] == "ACTIVE", job.get("failureReason")  # no documented minimum for items


def test_an_interactions_import_job_needs_1000_records(engine, shop):
    fresh = engine.dataset_group("rules-small")
    job = engine.import_job(
        "rules-small-full", fresh["interactions"], engine.upload("s/999.csv", interactions(999))
    )
    assert job["status"] == "CREATE FAILED" and "999 interaction records" in job["failureReason"]

    later = 1_800_000_000
    short = engine.upload("rules/999-new.csv", interactions(999, start=later))
    job = engine.import_job("rules-int-999", shop["interactions"], short, mode="INCREMENTAL")
    assert job["status"] == "CREATE FAILED" and "at least 1000" in job["failureReason"]
    enough = engine.upload("rules/1000-new.csv", interactions(1000, start=later))
    job = engine.import_job("rules-int-1000", shop["interactions"], enough, mode="INCREMENTAL")
    assert job["status"] == "ACTIVE", job.get("failureReason")


def test_incremental_imports_of_interactions_and_users_are_size_limited(engine, shop, monkeypatch):
    users = engine.upload("rules/users-again.csv", users_csv())
    monkeypatch.setitem(importer.MAX_INCREMENTAL_BYTES, "USERS", len(users_csv()) - 1)  # 1 GB on AWS
    job = engine.import_job("rules-usr-big", shop["users"], users, mode="INCREMENTAL")
    assert (
        job["status"] == "CREATE FAILED" and "INCREMENTAL import into a USERS dataset" in job["failureReason"]
    )
    job = engine.import_job("rules-usr-full", shop["users"], users)  # FULL has no such limit (100 GB)
    assert job["status"] == "ACTIVE", job.get("failureReason")


def test_training_counts_unique_interactions_and_users_with_two(engine):
    arns = engine.dataset_group("rules-min")
    rows = interactions(1000).splitlines(keepends=True)
    duplicated = "".join(rows[:991] + rows[1:11])  # 1000 records, 990 distinct events
    job = engine.import_job("rules-min-dups", arns["interactions"], engine.upload("min/dups.csv", duplicated))
    assert job["status"] == "ACTIVE", job.get("failureReason")
    solution = engine.solution("rules-min-up", arns["group"], "aws-user-personalization")
    version = engine.train(solution)
    assert version["status"] == "CREATE FAILED"
    assert (
        "at least 1000 interactions" in version["failureReason"] and "found 990" in version["failureReason"]
    )

    few_users = engine.upload("min/7-users.csv", interactions(1000, users=7))
    assert engine.import_job("rules-min-7", arns["interactions"], few_users)["status"] == "ACTIVE"
    version = engine.train(solution)
    assert version["status"] == "CREATE FAILED"
    assert "at least 25 users with 2 or more interactions" in version["failureReason"]


def test_update_solution_applies_through_latest_solution_update(engine, shop, monkeypatch):
    p = engine.personalize
    monkeypatch.setattr(solutions, "PENDING_SECONDS", 0.5)
    arn = engine.solution("rules-auto", shop["group"], "aws-popularity-count")  # performAutoTraining False
    for bad in ("rate(0 days)", "rate(31 days)"):
        with pytest.raises(p.exceptions.InvalidInputException, match="between 1 and 30"):
            p.update_solution(
                solutionArn=arn,
                performAutoTraining=True,
                solutionUpdateConfig={"autoTrainingConfig": {"schedulingExpression": bad}},
            )
    with pytest.raises(p.exceptions.InvalidInputException, match="semantic-similarity"):
        p.update_solution(solutionArn=arn, performIncrementalUpdate=True)
    assert "latestSolutionUpdate" not in p.describe_solution(solutionArn=arn)["solution"]

    config = {"autoTrainingConfig": {"schedulingExpression": "rate(3 days)"}}
    p.update_solution(solutionArn=arn, performAutoTraining=True, solutionUpdateConfig=config)
    during = p.describe_solution(solutionArn=arn)["solution"]
    assert during["latestSolutionUpdate"]["status"] in solutions.UPDATING
    assert during["latestSolutionUpdate"]["performAutoTraining"] is True
    assert (
        during["performAutoTraining"] is False
    )  # "Until the update completes, ... the previous configuration"
    with pytest.raises(p.exceptions.ResourceInUseException, match="update of"):
        p.delete_solution(solutionArn=arn)

    done = engine.wait("describe_solution", "solutionArn", arn, field="latestSolutionUpdate.status")
    assert done["latestSolutionUpdate"]["status"] == "ACTIVE"
    assert done["latestSolutionUpdate"]["solutionUpdateConfig"] == config
    assert done["performAutoTraining"] is True
    assert done["solutionConfig"]["autoTrainingConfig"] == config["autoTrainingConfig"]


def test_create_solution_checks_the_schedule_and_incremental_updates(engine, shop):
    p = engine.personalize
    recipe = "arn:aws:personalize:::recipe/aws-user-personalization"
    with pytest.raises(p.exceptions.InvalidInputException, match="between 1 and 30"):
        p.create_solution(
            name="rules-sched",
            datasetGroupArn=shop["group"],
            recipeArn=recipe,
            solutionConfig={"autoTrainingConfig": {"schedulingExpression": "rate(45 days)"}},
        )
    with pytest.raises(p.exceptions.InvalidInputException, match="semantic-similarity"):
        p.create_solution(
            name="rules-incr", datasetGroupArn=shop["group"], recipeArn=recipe, performIncrementalUpdate=True
        )
    # Solution$performAutoTraining: "The default is True and the solution automatically creates new solution
    # versions every 7 days."
    arn = p.create_solution(name="rules-default", datasetGroupArn=shop["group"], recipeArn=recipe)[
        "solutionArn"
    ]
    assert engine.wait("describe_solution", "solutionArn", arn)["performAutoTraining"] is True


def test_dataset_group_role_and_kms_key_come_together(engine):
    p = engine.personalize
    with pytest.raises(p.exceptions.InvalidInputException, match="roleArn is only valid with kmsKeyArn"):
        p.create_dataset_group(name="rules-role-only", roleArn=ROLE)
    with pytest.raises(p.exceptions.InvalidInputException, match="kmsKeyArn needs roleArn"):
        p.create_dataset_group(name="rules-key-only", kmsKeyArn=KEY)
    assert not {"rules-role-only", "rules-key-only"} & {
        g["name"] for g in p.list_dataset_groups()["datasetGroups"]
    }
    arn = p.create_dataset_group(name="rules-encrypted", roleArn=ROLE, kmsKeyArn=KEY)["datasetGroupArn"]
    group = engine.wait("describe_dataset_group", "datasetGroupArn", arn)
    assert (group["status"], group["roleArn"], group["kmsKeyArn"]) == ("ACTIVE", ROLE, KEY)


def test_filters_cannot_be_changed_only_replaced(engine, shop):
    p = engine.personalize
    assert not [op for op in service_model("personalize").operation_names if op.startswith("UpdateFilter")]
    first = 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("purchase")'
    arn = p.create_filter(name="rules-filter", datasetGroupArn=shop["group"], filterExpression=first)[
        "filterArn"
    ]
    with pytest.raises(p.exceptions.ResourceAlreadyExistsException):
        p.create_filter(
            name="rules-filter",
            datasetGroupArn=shop["group"],
            filterExpression='EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")',
        )
    assert p.describe_filter(filterArn=arn)["filter"]["filterExpression"] == first
