"""The engine's request checking (botocore's input shapes) and its persistent store."""

from __future__ import annotations

import pytest

from local.personalize.errors import AlreadyExists, InvalidInput, NotFound
from local.personalize.protocol import error_status, rest_routes, validate_input
from local.personalize.store import Store, StoreClosed


def test_requests_are_checked_against_the_input_shape():
    ok = validate_input(
        "personalize-events",
        "PutEvents",
        {
            "trackingId": "t",
            "sessionId": "s",
            "eventList": [{"eventType": "view", "sentAt": "2026-11-20T10:00:00Z"}],
            "extra": 1,
        },
    )
    assert ok["eventList"][0]["sentAt"] == 1795168800.0 and "extra" not in ok  # ISO → epoch, unknown ignored
    with pytest.raises(InvalidInput, match="numResults must be an integer"):
        validate_input("personalize-runtime", "GetRecommendations", {"numResults": True})
    with pytest.raises(InvalidInput, match="trainingMode must be one of"):
        validate_input(
            "personalize",
            "CreateSolutionVersion",
            {"solutionArn": "arn:aws:personalize:r:a:solution/s", "trainingMode": "HALF"},
        )
    with pytest.raises(InvalidInput, match="eventList must have at most 10 items"):
        validate_input(
            "personalize-events",
            "PutEvents",
            {"trackingId": "t", "sessionId": "s", "eventList": [{"eventType": "v", "sentAt": 1}] * 11},
        )
    # Java-only regex syntax in the model (\p{ASCII}) is skipped, not a crash.
    assert validate_input("personalize", "ListSchemas", {"nextToken": "abc"}) == {"nextToken": "abc"}


def test_error_statuses_and_routes_come_from_the_service_models():
    assert error_status("personalize-runtime", "ResourceNotFoundException") == 404
    assert error_status("personalize-events", "ResourceInUseException") == 409
    assert rest_routes("personalize-runtime")["/recommendations"] == "GetRecommendations"
    assert rest_routes("personalize-events")["/events"] == "PutEvents"


def test_store_transitions_persist_and_refuse_writes_once_closed(tmp_path):
    store = Store(tmp_path)
    store.create("dataset-group", "arn:g", {"name": "g"}, pending=0.0)
    assert store.get("dataset-group", "arn:g")["status"] == "ACTIVE"  # due transition applied on read
    with pytest.raises(AlreadyExists):
        store.create("dataset-group", "arn:g", {"name": "g"})
    store.create("schema", "arn:s", {"name": "s"})
    store.schedule_delete("schema", "arn:s", after=60)
    assert Store(tmp_path).get("schema", "arn:s")["status"] == "DELETE PENDING"  # survives a restart
    store.schedule_delete("schema", "arn:s", after=0)
    with pytest.raises(NotFound):
        store.get("schema", "arn:s")
    assert not Store(tmp_path).exists("schema", "arn:s")
    store.close()
    with pytest.raises(StoreClosed):
        store.update("dataset-group", "arn:g", status="X")
