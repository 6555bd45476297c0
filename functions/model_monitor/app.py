"""Scheduled: measure how old the live models are and publish ModelAgeHours (ModelAgeAlarm).

For every variant of the experiment that has a campaign, the model's age is measured from
Personalize itself: the solution version the campaign serves (DescribeCampaign) and when that
version was created (DescribeSolutionVersion). Published per variant (dimensions ExperimentId,
Variant) and as the oldest per experiment (dimension ExperimentId), every hour and at the end of
each training run. So the alarm watches the models, not whether a run happened: a stalled
schedule, a failed run or a rejected version all show as a growing age.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from functools import cache

import boto3
from aws_lambda_powertools import Logger
from recsys_common import config, ddb

logger = Logger()
METRIC = "ModelAgeHours"


@cache
def _personalize():
    return boto3.client("personalize")


def live_versions(record: dict) -> dict[str, str]:
    """variant -> the solution version its campaign serves (variants without a campaign: none)."""
    out = {}
    for name, variant in sorted((record.get("variants") or {}).items()):
        campaign_arn = variant.get("campaign_arn")
        if campaign_arn:
            campaign = _personalize().describe_campaign(campaignArn=campaign_arn)["campaign"]
            out[name] = campaign["solutionVersionArn"]
    return out


def age_hours(version_arn: str, now: datetime) -> float:
    version = _personalize().describe_solution_version(solutionVersionArn=version_arn)["solutionVersion"]
    return round((now - version["creationDateTime"]).total_seconds() / 3600, 3)


def metric_data(experiment_id: str, ages: dict[str, float], now: datetime) -> list[dict]:
    experiment = {"Name": "ExperimentId", "Value": experiment_id}
    data = [
        {"MetricName": METRIC, "Dimensions": [experiment, {"Name": "Variant", "Value": name}], "Value": age,
         "Unit": "None", "Timestamp": now}
        for name, age in ages.items()
    ]  # fmt: skip
    if ages:
        data.append({"MetricName": METRIC, "Dimensions": [experiment], "Value": max(ages.values()), "Unit": "None", "Timestamp": now})  # fmt: skip
    return data


@logger.inject_lambda_context
def lambda_handler(event: dict, context) -> dict:
    experiment_id = config.default_experiment_id()
    item = (
        ddb.client()
        .get_item(
            TableName=ddb.table_name("EXPERIMENTS_TABLE"),
            Key={"experiment_id": {"S": experiment_id}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    record = ddb.deserialize(item) or {}
    now = datetime.now(UTC)
    ages = {name: age_hours(arn, now) for name, arn in live_versions(record).items()}
    data = metric_data(experiment_id, ages, now)
    if data:
        boto3.client("cloudwatch").put_metric_data(
            Namespace=os.environ["POWERTOOLS_METRICS_NAMESPACE"], MetricData=data
        )
    logger.info("model age measured", extra={"experiment_id": experiment_id, "age_hours": ages})
    return {"experimentId": experiment_id, "ageHours": ages}
