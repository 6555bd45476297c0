"""Amazon Personalize's documented rules, enforced by the local engine: one test per rule, through real
boto3 clients on the engine's wire protocol. Each rule's source is quoted where the engine implements it
and listed in docs/aws-conformance.md ("Personalize (local engine)")."""

from __future__ import annotations

import threading

import pytest

from local.personalize import solutions
from tests.integration.test_personalize_harness import interactions_csv, items_csv, users_csv

pytest_plugins = ["tests.integration.test_personalize_harness"]
pytestmark = pytest.mark.integration

HEADER = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n"


def interactions(n: int, users: int = 60, start: int = 1_700_000_000) -> str:
    """n distinct interactions spread over `users` users (every user has 2 or more when n >= 2 * users)."""
    return HEADER + "".join(f"r{k % users:04d},i{k % 97:04d},{start + k},click\n" for k in range(n))


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
