"""Campaigns: deploy a solution version (load its model) and switch versions with UpdateCampaign.

During an update `status` stays ACTIVE and the old version keeps serving; the update's own
progress is `latestCampaignUpdate.status` (CREATE PENDING → CREATE IN_PROGRESS → ACTIVE | CREATE FAILED, as the service model documents CampaignUpdateSummary).
"""

from __future__ import annotations

import time

from local.personalize.datasets import RUNNING
from local.personalize.errors import InUse, InvalidInput, LimitExceeded
from local.personalize.ops import LIMITS, PENDING_SECONDS, operation
from local.personalize.resources import before_delete

UPDATING = ("CREATE PENDING", "CREATE IN_PROGRESS")


def _active_version(engine, arn: str) -> dict:
    version = engine.store.get("solution-version", arn)
    if version["status"] != "ACTIVE":
        raise InvalidInput(
            f"The solution version {arn} is {version['status']}; a campaign needs an ACTIVE one."
        )
    return version


def _check_config(config: dict | None) -> dict:
    config = dict(config or {})
    exploration = config.get("itemExplorationConfig") or {}
    unknown = set(exploration) - {"explorationWeight", "explorationItemAgeCutOff"}
    if unknown:
        raise InvalidInput(
            f"Unknown itemExplorationConfig keys {sorted(unknown)}; use explorationWeight, explorationItemAgeCutOff."
        )
    for key, low, high in (("explorationWeight", 0.0, 1.0), ("explorationItemAgeCutOff", 1e-9, float("inf"))):
        if key in exploration:
            try:
                value = float(exploration[key])
            except ValueError:
                raise InvalidInput(
                    f"itemExplorationConfig.{key} must be a number, not {exploration[key]!r}."
                ) from None
            if not low <= value <= high:
                raise InvalidInput(
                    f"itemExplorationConfig.{key} must be between {low:g} and {high:g}, got {value:g}."
                )
    return config


@operation("personalize")
def CreateCampaign(engine, req):
    _active_version(engine, req["solutionVersionArn"])
    config = _check_config(req.get("campaignConfig"))
    arn = engine.arn("campaign", req["name"])
    if not engine.store.exists("campaign", arn) and len(engine.store.all("campaign")) >= LIMITS["campaign"]:
        raise LimitExceeded(f"At most {LIMITS['campaign']} campaigns; delete unused ones.")
    record = {
        "name": req["name"],
        "campaignArn": arn,
        "solutionVersionArn": req["solutionVersionArn"],
        "minProvisionedTPS": req.get("minProvisionedTPS", 1),
        "campaignConfig": config,
        "status": "CREATE PENDING",
    }
    engine.store.create("campaign", arn, record)
    engine.jobs.submit(deploy, engine, arn)
    return {"campaignArn": arn}


@operation("personalize")
def UpdateCampaign(engine, req):
    campaign = engine.store.get("campaign", req["campaignArn"])
    if campaign["status"] != "ACTIVE":
        raise InUse(f"The campaign is {campaign['status']}; it can be updated once ACTIVE.")
    if (campaign.get("latestCampaignUpdate") or {}).get("status") in UPDATING:
        raise InUse(
            "An update of this campaign is in progress; wait until latestCampaignUpdate.status is ACTIVE."
        )
    target = req.get("solutionVersionArn", campaign["solutionVersionArn"])
    _active_version(engine, target)
    now = time.time()
    update = {
        "solutionVersionArn": target,
        "minProvisionedTPS": req.get("minProvisionedTPS", campaign["minProvisionedTPS"]),
        "campaignConfig": _check_config(req["campaignConfig"])
        if "campaignConfig" in req
        else campaign["campaignConfig"],
        "status": "CREATE PENDING",
        "creationDateTime": now,
        "lastUpdatedDateTime": now,
    }
    engine.store.update("campaign", campaign["campaignArn"], latestCampaignUpdate=update)
    engine.jobs.submit(deploy, engine, campaign["campaignArn"])
    return {"campaignArn": campaign["campaignArn"]}


def deploy(engine, arn: str) -> None:
    """Load the model a campaign (or its pending update) serves, then make it ACTIVE."""
    store = engine.store
    time.sleep(PENDING_SECONDS)
    campaign = store.get("campaign", arn)
    update = campaign.get("latestCampaignUpdate") or {}
    if campaign["status"] in RUNNING:
        store.update("campaign", arn, status="CREATE IN_PROGRESS")
        target = campaign["solutionVersionArn"]
    elif update.get("status") in UPDATING:
        update = {**update, "status": "CREATE IN_PROGRESS", "lastUpdatedDateTime": time.time()}
        store.update("campaign", arn, latestCampaignUpdate=update)
        target = update["solutionVersionArn"]
    else:
        return
    try:
        engine.models.get(target)
    except Exception as exc:
        if store.closed:
            raise
        reason = f"Could not load the model of {target}: {exc}"
        if update:
            store.update(
                "campaign",
                arn,
                latestCampaignUpdate={**update, "status": "CREATE FAILED", "failureReason": reason},
            )
        else:
            store.update("campaign", arn, status="CREATE FAILED", failureReason=reason)
        return
    if update:
        previous = campaign["solutionVersionArn"]
        done = {**update, "status": "ACTIVE", "lastUpdatedDateTime": time.time()}
        store.update(
            "campaign",
            arn,
            solutionVersionArn=target,
            minProvisionedTPS=update["minProvisionedTPS"],
            campaignConfig=update["campaignConfig"],
            latestCampaignUpdate=done,
        )
        _release(engine, previous, arn)
    else:
        store.update("campaign", arn, status="ACTIVE")


@before_delete("campaign")
def _undeploy(engine, campaign: dict) -> None:
    if campaign["status"] == "DELETE PENDING":
        raise InUse("The campaign is already being deleted.")
    _release(engine, campaign["solutionVersionArn"], campaign["campaignArn"])


def _release(engine, version_arn: str, campaign_arn: str) -> None:
    """Free a model's memory once no other campaign serves it (or is being updated to it)."""
    for other in engine.store.all("campaign"):
        pending = (other.get("latestCampaignUpdate") or {}).get("solutionVersionArn")
        if other["campaignArn"] != campaign_arn and version_arn in (other["solutionVersionArn"], pending):
            return
    engine.models.evict(version_arn)
