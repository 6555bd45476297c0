"""personalize-runtime: GetRecommendations and GetPersonalizedRanking on campaigns, and the cache of
loaded models (each loaded once; events recorded after its training snapshot are replayed into it)."""

from __future__ import annotations

import threading
import uuid

from local.personalize import serving
from local.personalize.errors import InvalidInput, NotFound
from local.personalize.filters import FilterError, compile_filter
from local.personalize.models import load_model
from local.personalize.ops import operation

FOLDING = ("USER_PERSONALIZATION", "PERSONALIZED_RANKING")  # recipes PutEvents changes at once


class ModelCache:
    def __init__(self, engine):
        self.engine = engine
        self.lock = threading.RLock()  # also serialises PutEvents with loading (no event lost or doubled)
        self._models: dict[str, tuple[str, object]] = {}  # solution version ARN -> (dataset group, model)
        self._filters: dict[str, object] = {}

    def get(self, version_arn: str):
        entry = self._models.get(version_arn)
        if entry is not None:
            return entry[1]
        # Lock order: store.lock may be held while taking this lock, never the other way round, so
        # the record is read before taking it.
        version = self.engine.store.get("solution-version", version_arn)
        if version["status"] != "ACTIVE":
            raise InvalidInput(f"The solution version {version_arn} is {version['status']}, not ACTIVE.")
        with self.lock:
            entry = self._models.get(version_arn)
            if entry is None:
                entry = self._models[version_arn] = self._load(version)
            return entry[1]

    def _load(self, version: dict):
        model = load_model(self.engine.model_dir(version["solutionVersionArn"]))
        group = version["_group"]
        if model.recipe_type in FOLDING:
            for row in self.engine.data.records(group, "INTERACTIONS", start=version.get("_events_seen", 0)):
                _fold(model, row)
        return group, model

    def fold(self, group: str, rows: list[dict]) -> None:
        """Apply events just recorded for a dataset group to its loaded models (caller holds the lock)."""
        for model_group, model in self._models.values():
            if model_group == group and model.recipe_type in FOLDING:
                for row in rows:
                    _fold(model, row)

    def evict(self, version_arn: str) -> None:
        with self.lock:
            self._models.pop(version_arn, None)

    def compiled_filter(self, filter_arn: str, group_arn: str):
        record = self.engine.store.get("filter", filter_arn)
        if record["status"] != "ACTIVE":
            raise InvalidInput(f"The filter {filter_arn} is {record['status']}; use it once ACTIVE.")
        if record["datasetGroupArn"] != group_arn:
            raise InvalidInput(f"The filter {filter_arn} belongs to another dataset group than the campaign.")
        with self.lock:
            if filter_arn not in self._filters:
                self._filters[filter_arn] = compile_filter(record["filterExpression"])
            return self._filters[filter_arn]


def _fold(model, row: dict) -> None:
    value = row.get("EVENT_VALUE")
    model.record_event(
        row["USER_ID"],
        row["ITEM_ID"],
        row.get("EVENT_TYPE", ""),
        float(row["TIMESTAMP"]),
        float(value) if value not in (None, "") else None,
    )


def _campaign(engine, req) -> tuple[dict, object, dict]:
    if req.get("recommenderArn"):
        raise InvalidInput(
            "Recommenders (domain dataset groups) are not supported by the local engine; use campaignArn."
        )
    if not req.get("campaignArn"):
        raise InvalidInput("campaignArn is required.")
    campaign = engine.store.get("campaign", req["campaignArn"])
    if campaign["status"] != "ACTIVE":
        raise NotFound(
            f"The campaign {campaign['campaignArn']} is {campaign['status']}; it serves once ACTIVE."
        )
    version = engine.store.get("solution-version", campaign["solutionVersionArn"])
    model = engine.models.get(campaign["solutionVersionArn"])
    compiled = None
    if req.get("filterArn"):
        compiled = engine.models.compiled_filter(req["filterArn"], version["datasetGroupArn"])
    return campaign, model, {"filter": compiled, "filter_values": req.get("filterValues")}


def _metadata(campaign: dict, model, req, items: list[dict]) -> list[dict]:
    columns = (req.get("metadataColumns") or {}).get("ITEMS") or []
    if not req.get("metadataColumns"):
        return items
    if not (campaign.get("campaignConfig") or {}).get("enableMetadataWithRecommendations"):
        raise InvalidInput(
            "metadataColumns needs a campaign with campaignConfig.enableMetadataWithRecommendations true."
        )
    meta = model.catalog.meta
    missing = [c for c in columns if c.upper() not in meta]
    if missing:
        raise InvalidInput(
            f"metadataColumns {missing} are not columns of the items dataset ({sorted(meta)})."
        )
    for entry in items:
        index = model.catalog.index.get(entry["itemId"])
        if index is not None:
            entry["metadata"] = {c: str(meta[c.upper()][index]) for c in columns}
    return items


@operation("personalize-runtime")
def GetRecommendations(engine, req):
    if req.get("promotions"):
        raise InvalidInput("promotions are not supported by the local engine; use a filter instead.")
    campaign, model, filtering = _campaign(engine, req)
    try:
        items = serving.get_recommendations(
            model,
            user_id=req.get("userId"),
            item_id=req.get("itemId"),
            num_results=req.get("numResults", 25),
            context=req.get("context"),
            campaign_config=campaign.get("campaignConfig"),
            **filtering,
        )
    except (serving.RequestError, FilterError) as exc:
        raise InvalidInput(str(exc)) from None
    items = _metadata(campaign, model, req, items)
    return {"itemList": items, "recommendationId": f"RID-{uuid.uuid4()}"}


@operation("personalize-runtime")
def GetPersonalizedRanking(engine, req):
    campaign, model, filtering = _campaign(engine, req)
    try:
        ranked = serving.get_personalized_ranking(
            model, user_id=req["userId"], input_list=req["inputList"], context=req.get("context"), **filtering
        )
    except (serving.RequestError, FilterError) as exc:
        raise InvalidInput(str(exc)) from None
    ranked = _metadata(campaign, model, req, ranked)
    return {"personalizedRanking": ranked, "recommendationId": f"RID-{uuid.uuid4()}"}


@operation("personalize-runtime")
def GetActionRecommendations(engine, req):
    raise InvalidInput("Actions (GetActionRecommendations) are not supported by the local engine.")
