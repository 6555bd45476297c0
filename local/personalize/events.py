"""personalize-events: PutEvents records interactions durably and folds them into the dataset group's
loaded models at once; PutItems / PutUsers add records to the items / users datasets."""

from __future__ import annotations

import json
import math
import re

from local.personalize.errors import InUse, InvalidInput, NotFound
from local.personalize.importer import parse_schema
from local.personalize.ops import operation


@operation("personalize-events")
def PutEvents(engine, req):
    tracker = _tracker(engine, req["trackingId"])
    user = req.get("userId") or req["sessionId"]  # anonymous sessions are keyed by the session id
    rows = []
    for n, event in enumerate(req["eventList"]):
        value = event.get("eventValue")
        if value is not None and not math.isfinite(value):
            raise InvalidInput(f"eventList[{n}].eventValue must be a finite number.")
        if event.get("properties"):
            _properties(event["properties"], f"eventList[{n}].properties")
        if not event.get("itemId"):
            continue  # nothing to learn about an item: accepted, not an interaction
        rows.append(
            {
                "USER_ID": user,
                "ITEM_ID": event["itemId"],
                "TIMESTAMP": int(event["sentAt"]),
                "EVENT_TYPE": event["eventType"],
                "EVENT_VALUE": value if value is not None else "",
            }
        )
    if rows:
        with engine.models.lock:
            engine.data.append_records(tracker["_group"], "INTERACTIONS", rows)
            engine.models.fold(tracker["_group"], rows)
    return {}


def _tracker(engine, tracking_id: str) -> dict:
    for tracker in engine.store.all("event-tracker", trackingId=tracking_id):
        if tracker["status"] == "DELETE PENDING":
            break
        return tracker
    raise NotFound(
        f"No event tracker has the trackingId {tracking_id}; use the one CreateEventTracker returned."
    )


@operation("personalize-events")
def PutItems(engine, req):
    return _put_records(
        engine,
        req["datasetArn"],
        "ITEMS",
        "ITEM_ID",
        [(i["itemId"], i.get("properties")) for i in req["items"]],
    )


@operation("personalize-events")
def PutUsers(engine, req):
    return _put_records(
        engine,
        req["datasetArn"],
        "USERS",
        "USER_ID",
        [(u["userId"], u.get("properties")) for u in req["users"]],
    )


def _put_records(engine, dataset_arn: str, dataset_type: str, key: str, entries) -> dict:
    dataset = engine.store.get("dataset", dataset_arn)
    if dataset["datasetType"] != dataset_type:
        raise InvalidInput(f"{dataset_arn} is a {dataset['datasetType']} dataset, not {dataset_type}.")
    if dataset["status"] != "ACTIVE":
        raise InUse(f"The dataset is {dataset['status']}; send records once it is ACTIVE.")
    fields = {
        _camel(f["name"]): f["name"].upper()
        for f in parse_schema(engine.store.get("schema", dataset["schemaArn"])["schema"])
    }
    rows = []
    for n, (record_id, properties) in enumerate(entries):
        row = {key: record_id}
        for name, value in _properties(properties or "{}", f"record {n} properties").items():
            if name not in fields or fields[name] == key:
                allowed = sorted(k for k, v in fields.items() if v != key)
                raise InvalidInput(
                    f"record {n}: property {name!r} is not in the dataset's schema; use {allowed}."
                )
            row[fields[name]] = "" if value is None else str(value)
        rows.append(row)
    engine.data.append_records(dataset["_group"], dataset_type, rows)
    return {}


def _properties(text: str, where: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise InvalidInput(
            f'{where} must be a JSON object in a string, like \'{{"numberOfRatings": "12"}}\'.'
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object.")
    return value


def _camel(field: str) -> str:
    """Personalize names properties in camelCase: CREATION_TIMESTAMP -> creationTimestamp."""
    head, *rest = re.split(r"_+", field.lower())
    return head + "".join(w.capitalize() for w in rest)


@operation("personalize-events")
def PutActions(engine, req):
    raise InvalidInput("Actions are not supported by the local engine.")


@operation("personalize-events")
def PutActionInteractions(engine, req):
    raise InvalidInput("Action interactions are not supported by the local engine.")
