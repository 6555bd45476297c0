"""The local Personalize engine's lifecycle through real boto3 clients: schemas → dataset group →
datasets → imports (one failing on bad data) → solution → FULL and UPDATE versions → metrics →
campaign → GetRecommendations → PutEvents changes the next response → UpdateCampaign → filters →
ranking → similar items. Every response is checked against botocore's output shape."""

from __future__ import annotations

import io
import time

import pandas as pd
import pytest

from local.personalize import campaigns
from local.personalize.training import TrainingData, train_solution_version
from tests.plugins.personalize_engine import interactions_csv, items_csv, users_csv

pytest_plugins = ["tests.plugins.personalize_engine"]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(engine):
    arns = engine.dataset_group("shop")
    for kind, body in (("interactions", interactions_csv()), ("items", items_csv()), ("users", users_csv())):
        job = engine.import_job(f"shop-{kind}-1", arns[kind], engine.upload(f"training/{kind}.csv", body))
        assert job["status"] == "ACTIVE", job.get("failureReason")
    arns["solution"] = engine.solution("shop-up", arns["group"], "aws-user-personalization")
    version = engine.train(arns["solution"])
    assert version["status"] == "ACTIVE", version.get("failureReason")
    arns["version"] = version["solutionVersionArn"]
    campaign = engine.campaign(
        "shop-up", arns["version"], campaignConfig={"itemExplorationConfig": {"explorationWeight": "0"}}
    )
    assert campaign["status"] == "ACTIVE", campaign.get("failureReason")
    arns["campaign"] = campaign["campaignArn"]
    tracker = engine.personalize.create_event_tracker(name="shop-tracker", datasetGroupArn=arns["group"])
    arns["tracker"], arns["tracking_id"] = tracker["eventTrackerArn"], tracker["trackingId"]
    engine.wait("describe_event_tracker", "eventTrackerArn", arns["tracker"])
    return arns


def test_resources_have_personalize_arns_and_statuses(engine, trained):
    p = engine.personalize
    assert trained["group"] == "arn:aws:personalize:us-east-1:123456789012:dataset-group/shop"
    assert trained["interactions"].endswith(":dataset/shop/INTERACTIONS")
    version = p.describe_solution_version(solutionVersionArn=trained["version"])["solutionVersion"]
    assert version["solutionVersionArn"].startswith(trained["solution"] + "/")
    assert version["trainingMode"] == "FULL" and version["trainingHours"] > 0
    tuned = version["tunedHPOParams"]["algorithmHyperParameters"]
    assert float(tuned["lambda"]) > 0
    assert float(tuned["sequenceHalfLife"]) >= 0 and 0 <= float(tuned["markovWeight"]) <= 1
    solution = p.describe_solution(solutionArn=trained["solution"])["solution"]
    assert solution["performAutoTraining"] is False and solution["performHPO"] is False
    assert solution["latestSolutionVersion"]["solutionVersionArn"] == trained["version"]
    dataset = p.describe_dataset(datasetArn=trained["interactions"])["dataset"]
    assert dataset["trackingId"] == trained["tracking_id"]
    assert engine.checked, "responses are shape-checked"


def test_import_of_bad_data_fails_with_a_reason_naming_row_and_column(engine, trained):
    bad = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\nu1,i1,1700000000,view\nu2,i2,yesterday,view\n"
    job = engine.import_job(
        "shop-bad-ts", trained["interactions"], engine.upload("bad/ts.csv", bad), mode="INCREMENTAL"
    )
    assert job["status"] == "CREATE FAILED"
    assert "line 3, column TIMESTAMP" in job["failureReason"] and "'yesterday'" in job["failureReason"]

    missing = "USER_ID,ITEM_ID,EVENT_TYPE\nu1,i1,view\n"
    job = engine.import_job(
        "shop-bad-header", trained["interactions"], engine.upload("bad/h.csv", missing), mode="INCREMENTAL"
    )
    assert job["status"] == "CREATE FAILED" and "TIMESTAMP" in job["failureReason"]

    unknown = "USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE,COLOUR\nu1,i1,1700000000,view,red\n"
    job = engine.import_job(
        "shop-bad-col", trained["interactions"], engine.upload("bad/c.csv", unknown), mode="INCREMENTAL"
    )
    assert job["status"] == "CREATE FAILED" and "COLOUR" in job["failureReason"]

    job = engine.import_job("shop-no-file", trained["interactions"], f"s3://{'engine-test-data'}/nope.csv")
    assert job["status"] == "CREATE FAILED" and "nope.csv" in job["failureReason"]


def test_solution_metrics_are_those_of_the_same_training_in_process(engine, trained):
    metrics = engine.personalize.get_solution_metrics(solutionVersionArn=trained["version"])["metrics"]
    assert set(metrics) >= {
        "coverage",
        "mean_reciprocal_rank_at_25",
        "normalized_discounted_cumulative_gain_at_10",
        "precision_at_25",
    }
    frames = [
        pd.read_csv(io.StringIO(body), dtype=str, keep_default_na=False)
        for body in (interactions_csv(), items_csv(), users_csv())
    ]
    _, expected = train_solution_version("aws-user-personalization", TrainingData(*frames), {}, "FULL", None)
    assert metrics == pytest.approx(expected, rel=1e-9)
    assert metrics["normalized_discounted_cumulative_gain_at_10"] > 0.05


def test_recommendations_and_put_events_fold_in_at_once(engine, trained):
    rt = engine.runtime
    first = rt.get_recommendations(campaignArn=trained["campaign"], userId="u0003", numResults=10)
    items = [i["itemId"] for i in first["itemList"]]
    assert len(items) == 10 and len(set(items)) == 10
    assert first["recommendationId"].startswith("RID-")
    assert all(0 < i["score"] <= 1 for i in first["itemList"])
    assert rt.get_recommendations(campaignArn=trained["campaign"], userId="u0003")["itemList"].__len__() == 25

    engine.events.put_events(
        trackingId=trained["tracking_id"],
        userId="u0003",
        sessionId="s-1",
        eventList=[
            {
                "eventType": "purchase",
                "itemId": items[0],
                "sentAt": time.time(),
                "recommendationId": first["recommendationId"],
                "impression": items,
            },
            {"eventType": "purchase", "itemId": items[1], "sentAt": time.time()},
        ],
    )
    after = [
        i["itemId"]
        for i in rt.get_recommendations(campaignArn=trained["campaign"], userId="u0003", numResults=10)[
            "itemList"
        ]
    ]
    assert after != items
    assert items[0] not in after and items[1] not in after  # bought: no longer recommended


def test_update_training_and_update_campaign_keep_the_old_version_serving(engine, trained, monkeypatch):
    p = engine.personalize
    monkeypatch.setattr(campaigns, "PENDING_SECONDS", 1.0)  # room to look at the update while it is pending
    update = engine.train(trained["solution"], mode="UPDATE")
    assert update["status"] == "ACTIVE" and update["trainingMode"] == "UPDATE"
    old = p.get_solution_metrics(solutionVersionArn=trained["version"])["metrics"]
    assert p.get_solution_metrics(solutionVersionArn=update["solutionVersionArn"])["metrics"] == old

    p.update_campaign(
        campaignArn=trained["campaign"],
        solutionVersionArn=update["solutionVersionArn"],
        campaignConfig={"itemExplorationConfig": {"explorationWeight": "0.2"}},
    )
    during = p.describe_campaign(campaignArn=trained["campaign"])["campaign"]
    assert during["status"] == "ACTIVE"
    assert during["latestCampaignUpdate"]["status"] in ("CREATE PENDING", "CREATE IN_PROGRESS")
    assert during["solutionVersionArn"] == trained["version"]  # the old version serves meanwhile
    with pytest.raises(p.exceptions.ResourceInUseException):
        p.update_campaign(campaignArn=trained["campaign"], solutionVersionArn=trained["version"])
    done = engine.wait(
        "describe_campaign", "campaignArn", trained["campaign"], field="latestCampaignUpdate.status"
    )
    assert done["latestCampaignUpdate"]["status"] == "ACTIVE"
    assert done["solutionVersionArn"] == update["solutionVersionArn"]
    assert done["campaignConfig"]["itemExplorationConfig"]["explorationWeight"] == "0.2"
    versions = p.list_solution_versions(solutionArn=trained["solution"], maxResults=1)["solutionVersions"]
    assert versions[0]["solutionVersionArn"] == update["solutionVersionArn"]  # newest first

    items = engine.runtime.get_recommendations(campaignArn=trained["campaign"], userId="u0010")["itemList"]
    assert len(items) == 25


def test_update_training_is_refused_where_personalize_refuses_it(engine, trained):
    p = engine.personalize
    fresh = engine.solution("shop-up-fresh", trained["group"], "aws-user-personalization")
    with pytest.raises(p.exceptions.InvalidInputException, match="train FULL first"):
        p.create_solution_version(solutionArn=fresh, trainingMode="UPDATE")
    pop = engine.solution("shop-pop", trained["group"], "aws-popularity-count")
    with pytest.raises(p.exceptions.InvalidInputException, match="UPDATE works only"):
        p.create_solution_version(solutionArn=pop, trainingMode="UPDATE")


def test_filters_apply_at_serving_and_bad_expressions_are_refused(engine, trained):
    p = engine.personalize
    arn = p.create_filter(
        name="shop-no-category",
        datasetGroupArn=trained["group"],
        filterExpression="EXCLUDE ItemID WHERE Items.CATEGORY IN ($CATEGORY)",
    )["filterArn"]
    engine.wait("describe_filter", "filterArn", arn)
    items = pd.read_csv(__import__("io").StringIO(items_csv()), dtype=str)
    books = set(items[items.CATEGORY == "books"].ITEM_ID)
    plain = engine.runtime.get_recommendations(
        campaignArn=trained["campaign"], userId="u0005", numResults=100
    )
    assert books & {i["itemId"] for i in plain["itemList"]}
    filtered = engine.runtime.get_recommendations(
        campaignArn=trained["campaign"],
        userId="u0005",
        numResults=100,
        filterArn=arn,
        filterValues={"CATEGORY": '"books"'},
    )
    assert not books & {i["itemId"] for i in filtered["itemList"]}
    with pytest.raises(p.exceptions.InvalidInputException, match="filterExpression"):
        p.create_filter(
            name="shop-bad",
            datasetGroupArn=trained["group"],
            filterExpression="EXCLUDE ItemID WHERE Items.X IN",
        )
    assert [f["name"] for f in p.list_filters(datasetGroupArn=trained["group"])["Filters"]] == [
        "shop-no-category"
    ]


def test_personalized_ranking_and_similar_items(engine, trained):
    ranking = engine.solution("shop-rank", trained["group"], "aws-personalized-ranking")
    version = engine.train(ranking)
    campaign = engine.campaign("shop-rank", version["solutionVersionArn"])
    candidates = ["i0001", "i0002", "i0003", "i0004", "nope"]
    ranked = engine.runtime.get_personalized_ranking(
        campaignArn=campaign["campaignArn"], userId="u0007", inputList=candidates
    )
    order = [i["itemId"] for i in ranked["personalizedRanking"]]
    assert sorted(order) == sorted(candidates) and order[-1] == "nope"

    sims = engine.solution("shop-sims", trained["group"], "aws-similar-items")
    version = engine.train(sims)
    campaign = engine.campaign("shop-sims", version["solutionVersionArn"])
    similar = engine.runtime.get_recommendations(
        campaignArn=campaign["campaignArn"], itemId="i0001", numResults=10
    )
    ids = [i["itemId"] for i in similar["itemList"]]
    assert len(ids) == 10 and "i0001" not in ids
    with pytest.raises(engine.runtime.exceptions.InvalidInputException, match="itemId is required"):
        engine.runtime.get_recommendations(campaignArn=campaign["campaignArn"], userId="u0001")


def test_popularity_serves_known_users_what_they_have_not_seen_and_loses_to_personalisation(engine, trained):
    solution = engine.solution("shop-pop-served", trained["group"], "aws-popularity-count")
    version = engine.train(solution)
    campaign = engine.campaign("shop-pop-served", version["solutionVersionArn"])["campaignArn"]
    frame = pd.read_csv(io.StringIO(interactions_csv()), dtype=str)
    seen = set(frame[frame.USER_ID == "u0003"].ITEM_ID)
    anonymous = {
        i["itemId"]
        for i in engine.runtime.get_recommendations(campaignArn=campaign, userId="nobody")["itemList"]
    }
    known = {
        i["itemId"]
        for i in engine.runtime.get_recommendations(campaignArn=campaign, userId="u0003")["itemList"]
    }
    assert anonymous & seen and not known & seen  # the exclusion is real, not vacuous
    # The metrics describe those served lists, so the quality gate compares like with like.
    metrics = engine.personalize.get_solution_metrics
    pop = metrics(solutionVersionArn=version["solutionVersionArn"])["metrics"]
    up = metrics(solutionVersionArn=trained["version"])["metrics"]
    assert (
        up["normalized_discounted_cumulative_gain_at_10"] > pop["normalized_discounted_cumulative_gain_at_10"]
    )
