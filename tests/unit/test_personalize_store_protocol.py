"""The engine's request checking (botocore's input shapes) and its persistent store."""

from __future__ import annotations

import pytest

from local.personalize.engine import OPERATIONS
from local.personalize.errors import AlreadyExists, InvalidInput, NotFound
from local.personalize.kinds import KINDS, kind_of
from local.personalize.protocol import error_status, rest_routes, service_model, validate_input
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


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
def test_each_resource_kind_matches_the_service_model(kind):
    """The kinds table against botocore's personalize model: the operations it serves exist, take the
    ARN member it names and the parent it filters on, and Delete* is served exactly where the service
    has one. An engine ARN of the kind maps back to it (TagResource & co. find records by ARN)."""
    model = service_model("personalize")
    describe = model.operation_model(f"Describe{kind.noun}").input_shape
    assert describe.required_members == [kind.arn_member]
    listing = model.operation_model(f"List{kind.noun}s").input_shape
    assert kind.parent is None or kind.parent in listing.members
    assert (f"Delete{kind.noun}" in model.operation_names) == (kind.delete is not None)
    served = {name for service, name in OPERATIONS if service == "personalize"}
    assert {f"Describe{kind.noun}", f"List{kind.noun}s"} <= served
    assert (f"Delete{kind.noun}" in served) == (kind.delete is not None)
    path = "/".join(f"p{n}" for n in range(kind.arn_depth))
    assert kind_of(f"arn:aws:personalize:us-east-1:123456789012:{kind.resource_type}/{path}") is kind
