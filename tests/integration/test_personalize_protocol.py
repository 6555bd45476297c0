"""The local Personalize engine's protocol edges: bad requests on the wire (raw HTTP), error codes
through boto3, pagination, deletes of resources in use, limits, recipes, concurrency, and a
restart of the engine in the middle of a training."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.personalize import solutions
from local.personalize.engine import OPERATIONS
from local.personalize.protocol import rest_routes, service_model
from local.personalize.training import RECIPES
from tests.plugins.personalize_engine import CONFIG, Engine, interactions_csv, items_csv

pytest_plugins = ["tests.plugins.personalize_engine"]
pytestmark = pytest.mark.integration


def raw(url: str, path: str, body: bytes, target: str | None = None) -> tuple[int, Any, dict]:
    """(status, headers: looked up case-insensitively as HTTP defines them, JSON body)."""
    headers = {"Content-Type": "application/x-amz-json-1.1" if target else "application/json"}
    if target:
        headers["X-Amz-Target"] = target
    request = urllib.request.Request(url + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def group(engine):
    arns = engine.dataset_group("proto")
    job = engine.import_job(
        "proto-int", arns["interactions"], engine.upload("proto/i.csv", interactions_csv())
    )
    assert job["status"] == "ACTIVE", job.get("failureReason")
    engine.import_job("proto-items", arns["items"], engine.upload("proto/items.csv", items_csv()))
    return arns


@pytest.mark.parametrize(
    ("body", "target", "message"),
    [
        (b"{not json", "AmazonPersonalize.DescribeSchema", "not valid JSON"),
        (b"{}", "AmazonPersonalize.DescribeSchema", "Missing required member(s) schemaArn"),
        (b'{"schemaArn": 5}', "AmazonPersonalize.DescribeSchema", "schemaArn must be a string"),
        (b'{"name": "x", "schema": "{}"}', "AmazonPersonalize.CreateSchema", "Avro record"),
        (
            b'{"name": "-bad name", "schema": "{}"}',
            "AmazonPersonalize.CreateSchema",
            "does not match the pattern",
        ),
        (b'{"maxResults": 0}', "AmazonPersonalize.ListSchemas", "between 1 and 100"),
        (  # TransactionsPerSecond: min 1, no max
            b'{"name": "c", "solutionVersionArn": "arn:aws:personalize:us-east-1:1:solution/s/1", "minProvisionedTPS": 0}',
            "AmazonPersonalize.CreateCampaign",
            "minProvisionedTPS must be at least 1, got 0",
        ),
        (b"[1, 2]", "AmazonPersonalize.ListSchemas", "JSON object"),
    ],
)
def test_bad_control_plane_requests_are_400_invalid_input(engine, body, target, message):
    status, _, payload = raw(engine.server.url, "/", body, target)
    assert status == 400
    assert payload["__type"] == "InvalidInputException"
    assert message in payload["message"]


def test_unknown_operations_and_paths_are_4xx_json(engine):
    status, _, payload = raw(engine.server.url, "/", b"{}", "AmazonPersonalize.MakeCoffee")
    assert (status, payload["__type"]) == (400, "UnknownOperationException")
    status, headers, payload = raw(engine.server.url, "/nowhere", b"{}")
    assert status == 400 and headers["x-amzn-ErrorType"] == "UnknownOperationException" and payload["message"]
    status, _, payload = raw(
        engine.server.url, "/events", b'{"trackingId": "t", "sessionId": "s", "eventList": []}'
    )
    assert status == 400 and "at least 1" in payload["message"]
    events = [{"eventType": "view", "sentAt": 1, "itemId": "i"}] * 11
    body = json.dumps({"trackingId": "t", "sessionId": "s", "eventList": events}).encode()
    status, headers, payload = raw(engine.server.url, "/events", body)
    assert (
        status == 400
        and headers["x-amzn-ErrorType"] == "InvalidInputException"
        and "at most 10" in payload["message"]
    )


def test_error_codes_reach_boto3_with_personalize_names(engine, group):
    p, rt, ev = engine.personalize, engine.runtime, engine.events
    missing = group["group"].replace("dataset-group/proto", "campaign/none")
    with pytest.raises(p.exceptions.ResourceNotFoundException) as err:
        p.describe_campaign(campaignArn=missing)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(rt.exceptions.ResourceNotFoundException) as err:
        rt.get_recommendations(campaignArn=missing, userId="u1")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ev.exceptions.ResourceNotFoundException):
        ev.put_events(
            trackingId="no-such-tracker", sessionId="s", eventList=[{"eventType": "view", "sentAt": 1}]
        )
    with pytest.raises(p.exceptions.ResourceAlreadyExistsException):
        p.create_dataset_group(name="proto")
    with pytest.raises(p.exceptions.InvalidInputException, match="Unknown recipeArn"):
        p.create_solution(
            name="x", datasetGroupArn=group["group"], recipeArn="arn:aws:personalize:::recipe/aws-magic"
        )


def test_pagination_follows_next_tokens_and_rejects_foreign_ones(engine, group):
    p = engine.personalize
    schema = '{"type": "record", "name": "U", "fields": [{"name": "USER_ID", "type": "string"}]}'
    for n in range(3):
        p.create_schema(name=f"page-{n}", schema=schema)
    seen, token = [], None
    while True:
        kwargs = {"maxResults": 2, **({"nextToken": token} if token else {})}
        page = p.list_schemas(**kwargs)
        assert len(page["schemas"]) <= 2
        seen += [s["name"] for s in page["schemas"]]
        token = page.get("nextToken")
        if not token:
            break
    assert {"page-0", "page-1", "page-2"} <= set(seen) and len(seen) == len(set(seen))
    token = p.list_schemas(maxResults=1)["nextToken"]
    with pytest.raises(p.exceptions.InvalidNextTokenException):
        p.list_datasets(nextToken=token)
    with pytest.raises(p.exceptions.InvalidNextTokenException):
        p.list_schemas(nextToken="garbage")


def test_recipes_are_listed_and_described_with_personalize_arns(engine):
    listed = engine.personalize.list_recipes()["recipes"]
    assert {r["recipeArn"] for r in listed} == {f"arn:aws:personalize:::recipe/{r}" for r in RECIPES}
    sims = engine.personalize.describe_recipe(recipeArn="arn:aws:personalize:::recipe/aws-sims")["recipe"]
    assert sims["recipeType"] == "RELATED_ITEMS" and sims["status"] == "ACTIVE"
    with pytest.raises(engine.personalize.exceptions.ResourceNotFoundException):
        engine.personalize.describe_recipe(recipeArn="arn:aws:personalize:::recipe/aws-nothing")


def test_deletes_refuse_resources_in_use_and_go_through_delete_pending(engine, group):
    p = engine.personalize
    with pytest.raises(p.exceptions.ResourceInUseException, match="still has a dataset"):
        p.delete_dataset_group(datasetGroupArn=group["group"])
    schema = p.describe_dataset(datasetArn=group["interactions"])["dataset"]["schemaArn"]
    with pytest.raises(p.exceptions.ResourceInUseException):
        p.delete_schema(schemaArn=schema)

    solution = engine.solution("proto-pop", group["group"], "aws-popularity-count")
    version = engine.train(solution)
    campaign = engine.campaign("proto-pop", version["solutionVersionArn"])["campaignArn"]
    popular = engine.runtime.get_recommendations(campaignArn=campaign, userId="anyone", numResults=5)[
        "itemList"
    ]
    assert len(popular) == 5
    with pytest.raises(p.exceptions.ResourceInUseException, match="delete the campaign first"):
        p.delete_solution(solutionArn=solution)
    p.delete_campaign(campaignArn=campaign)
    assert p.describe_campaign(campaignArn=campaign)["campaign"]["status"] == "DELETE PENDING"
    deadline = time.time() + 10
    while True:
        try:
            p.describe_campaign(campaignArn=campaign)
        except p.exceptions.ResourceNotFoundException:
            break
        assert time.time() < deadline
        time.sleep(0.05)
    p.delete_solution(solutionArn=solution)
    with pytest.raises(p.exceptions.ResourceNotFoundException):
        p.describe_solution_version(solutionVersionArn=version["solutionVersionArn"])


def test_limits_one_event_tracker_per_dataset_group(engine, group):
    p = engine.personalize
    p.create_event_tracker(name="proto-tracker", datasetGroupArn=group["group"])
    with pytest.raises(p.exceptions.ResourceAlreadyExistsException):
        p.create_event_tracker(name="proto-tracker", datasetGroupArn=group["group"])
    with pytest.raises(p.exceptions.LimitExceededException, match="at most 1 event tracker"):
        p.create_event_tracker(name="proto-tracker-2", datasetGroupArn=group["group"])
    trackers = p.list_event_trackers(datasetGroupArn=group["group"], maxResults=1)["eventTrackers"]
    assert trackers[0]["name"] == "proto-tracker"


def test_stop_solution_version_creation(engine, group, monkeypatch):
    p = engine.personalize
    monkeypatch.setattr(solutions, "PENDING_SECONDS", 1.0)  # stays CREATE PENDING long enough to look at
    solution = engine.solution("proto-stop", group["group"], "aws-user-personalization")
    arn = p.create_solution_version(solutionArn=solution)["solutionVersionArn"]
    p.stop_solution_version_creation(solutionVersionArn=arn)
    final = p.describe_solution_version(solutionVersionArn=arn)["solutionVersion"]
    assert final["status"] == "CREATE STOPPED"  # from CREATE PENDING at once (test_personalize_rules.py)
    with pytest.raises(p.exceptions.InvalidInputException, match="can be stopped"):
        p.stop_solution_version_creation(solutionVersionArn=arn)
    with pytest.raises(p.exceptions.ResourceInUseException):
        p.get_solution_metrics(solutionVersionArn=arn)


def test_concurrent_recommendations_and_events(engine, group):
    solution = engine.solution("proto-conc", group["group"], "aws-user-personalization")
    version = engine.train(solution)
    campaign = engine.campaign("proto-conc", version["solutionVersionArn"])["campaignArn"]
    trackers = engine.personalize.list_event_trackers(datasetGroupArn=group["group"])["eventTrackers"]
    tracking_id = engine.personalize.describe_event_tracker(eventTrackerArn=trackers[0]["eventTrackerArn"])[
        "eventTracker"
    ]["trackingId"]
    errors = []

    def worker(n: int) -> None:
        kw = {"endpoint_url": engine.server.url, "region_name": "us-east-1", "config": CONFIG}
        rt, ev = boto3.client("personalize-runtime", **kw), boto3.client("personalize-events", **kw)
        try:
            for k in range(10):
                items = rt.get_recommendations(campaignArn=campaign, userId=f"u{n:04d}", numResults=5)[
                    "itemList"
                ]
                ev.put_events(
                    trackingId=tracking_id,
                    userId=f"u{n:04d}",
                    sessionId=f"s{n}",
                    eventList=[
                        {"eventType": "click", "itemId": items[k % 5]["itemId"], "sentAt": time.time()}
                    ],
                )
        except Exception as exc:  # collected: a failure in a thread must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_concurrent_creates_admit_exactly_one(engine, group, monkeypatch):
    solution = engine.solution("proto-race", group["group"], "aws-popularity-count")
    store = engine.server.engine.store
    listing = store.all

    def slow_all(*args, **kwargs):  # widens the check-then-create window, so a missing lock shows
        found = listing(*args, **kwargs)
        time.sleep(0.02)
        return found

    monkeypatch.setattr(store, "all", slow_all)
    kw = {"endpoint_url": engine.server.url, "region_name": "us-east-1", "config": CONFIG}
    clients = [boto3.client("personalize", **kw) for _ in range(6)]
    barrier, outcomes = threading.Barrier(len(clients)), []

    def create(client) -> None:
        barrier.wait()
        try:
            outcomes.append(client.create_solution_version(solutionArn=solution)["solutionVersionArn"])
        except client.exceptions.ResourceInUseException:
            outcomes.append("in use")

    threads = [threading.Thread(target=create, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.undo()
    started = [o for o in outcomes if o != "in use"]
    assert len(outcomes) == len(clients) and len(started) == 1, outcomes
    assert engine.wait("describe_solution_version", "solutionVersionArn", started[0])["status"] == "ACTIVE"


def test_restart_in_the_middle_of_a_training_resumes_it_and_keeps_folded_events(s3_server, tmp_path):
    first = Engine(tmp_path, s3_server).start()
    arns = first.dataset_group("restart")
    first.import_job("restart-int", arns["interactions"], first.upload("restart/i.csv", interactions_csv()))
    solution = first.solution("restart-up", arns["group"], "aws-user-personalization")
    version = first.train(solution)
    campaign = first.campaign("restart-up", version["solutionVersionArn"])["campaignArn"]
    tracking = first.personalize.create_event_tracker(name="restart-t", datasetGroupArn=arns["group"])[
        "trackingId"
    ]
    top = first.runtime.get_recommendations(campaignArn=campaign, userId="u0002")["itemList"][0]["itemId"]
    first.events.put_events(
        trackingId=tracking,
        userId="u0002",
        sessionId="s",
        eventList=[{"eventType": "purchase", "itemId": top, "sentAt": time.time()}],
    )
    before = first.runtime.get_recommendations(campaignArn=campaign, userId="u0002")["itemList"]
    assert top not in {i["itemId"] for i in before}  # folded in at once
    training = first.personalize.create_solution_version(solutionArn=solution, trainingMode="FULL")[
        "solutionVersionArn"
    ]
    first.stop()  # mid-training: CREATE PENDING / IN_PROGRESS on disk

    second = Engine(tmp_path, s3_server).start()
    try:
        assert second.runtime.get_recommendations(campaignArn=campaign, userId="u0002")["itemList"] == before
        done = second.wait("describe_solution_version", "solutionVersionArn", training)
        assert done["status"] == "ACTIVE", done.get("failureReason")
        second.personalize.update_campaign(campaignArn=campaign, solutionVersionArn=training)
        second.wait("describe_campaign", "campaignArn", campaign, field="latestCampaignUpdate.status")
        items = second.runtime.get_recommendations(campaignArn=campaign, userId="u0002")["itemList"]
        assert len(items) == 25 and top not in {i["itemId"] for i in items}  # the new training saw it
    finally:
        second.stop()


def test_tags_on_create_and_tag_untag_list(engine, group):
    p = engine.personalize
    arn = p.create_filter(
        name="proto-tagged",
        datasetGroupArn=group["group"],
        filterExpression='INCLUDE ItemID WHERE Items.CATEGORY IN ("books")',
        tags=[{"tagKey": "team", "tagValue": "recs"}],
    )["filterArn"]
    p.tag_resource(resourceArn=arn, tags=[{"tagKey": "env", "tagValue": "dev"}])
    p.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert p.list_tags_for_resource(resourceArn=arn)["tags"] == [{"tagKey": "env", "tagValue": "dev"}]
    with pytest.raises(p.exceptions.ResourceNotFoundException):
        p.list_tags_for_resource(resourceArn=arn.replace("proto-tagged", "nothing"))


# --- fuzzing: no request, however wrong, gets a 500 or a dropped connection --------------------------------
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
OPERATIONS_UNDER_TEST = sorted(OPERATIONS)


def _from_shape(shape, pool, corrupt: bool, depth=0, name=""):
    """Well-typed values (so requests reach the handlers) or, with `corrupt`, wrong ones mixed in."""
    kind = shape.type_name
    wrong = (JSON if depth < 3 else st.none()) if corrupt else st.nothing()
    if kind == "structure":
        sub = {m: _from_shape(shape.members[m], pool, corrupt, depth + 1, m) for m in shape.members}
        required = {m: sub[m] for m in shape.required_members}
        optional = {m: v for m, v in sub.items() if m not in required}
        valid = st.fixed_dictionaries(required, optional=optional)
        if not corrupt:
            return valid
        anything = st.fixed_dictionaries({}, optional=sub)
        nulls = st.dictionaries(st.sampled_from(sorted(sub)), st.none(), max_size=1) if sub else st.just({})
        return st.one_of(valid, anything, st.builds(lambda a, b: {**a, **b}, valid, nulls))
    if kind == "list":
        return st.lists(_from_shape(shape.member, pool, corrupt, depth + 1, name), max_size=4) | wrong
    if kind == "map":
        keys = st.sampled_from(
            ["ITEMS", "CATEGORY", "C", "explorationWeight", "explorationItemAgeCutOff", "x"]
        )
        return st.dictionaries(keys, _from_shape(shape.value, pool, corrupt, depth + 1), max_size=2) | wrong
    if kind == "string":
        arns = [v for v in pool if v.startswith("arn:")]
        if name.endswith("Arn") or name == "resourceArn":
            return st.sampled_from([*arns, arns[0] + "-missing"]) | wrong
        if name in ("name", "jobName"):
            return st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True) | st.sampled_from(
                ["proto", "proto-fuzz"]
            )
        return st.sampled_from(pool) | st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True) | wrong
    if kind in ("integer", "long"):
        return st.integers(-3, 600) | wrong
    if kind in ("float", "double"):
        return st.floats(-10, 1e6, allow_nan=False) | wrong
    if kind == "boolean":
        return st.booleans() | wrong
    if kind == "timestamp":
        return st.integers(0, 2_000_000_000) | st.sampled_from(["2026-11-20T10:00:00Z", "nope"]) | wrong
    return wrong


def test_fuzzed_requests_never_get_a_500(engine, group):
    """Last in this module: it may delete or change anything the earlier tests made."""
    p = engine.personalize
    solution = engine.solution("proto-fuzz", group["group"], "aws-user-personalization")
    version = engine.train(solution)["solutionVersionArn"]
    campaign = engine.campaign("proto-fuzz", version)["campaignArn"]
    if not p.list_event_trackers(datasetGroupArn=group["group"])["eventTrackers"]:
        p.create_event_tracker(name="proto-tracker", datasetGroupArn=group["group"])
    trackers = p.list_event_trackers(datasetGroupArn=group["group"])["eventTrackers"]
    tracker = p.describe_event_tracker(eventTrackerArn=trackers[0]["eventTrackerArn"])["eventTracker"]
    pool = [
        *group.values(),
        solution,
        version,
        campaign,
        tracker["eventTrackerArn"],
        tracker["trackingId"],
        "s3://engine-test-data/proto/i.csv",
        "s3://no-bucket/x.csv",
        "FULL",
        "UPDATE",
        "INCREMENTAL",
        "INTERACTIONS",
        "ITEMS",
        "arn:aws:personalize:::recipe/aws-user-personalization",
        "arn:aws:personalize:::recipe/aws-sims",
        "EXCLUDE ItemID WHERE Items.CATEGORY IN ($C)",
        "u0001",
        "i0001",
        (SCHEMA_TEXT := '{"type": "record", "name": "U", "fields": [{"name": "USER_ID", "type": "string"}]}'),
        '{"category": "books"}',
        "{}",
    ]
    assert SCHEMA_TEXT in pool
    url = engine.server.url
    strategies = {
        (key, corrupt): _from_shape(service_model(key[0]).operation_model(key[1]).input_shape, pool, corrupt)
        for key in OPERATIONS_UNDER_TEST
        for corrupt in (False, True)
    }

    @settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def check(data):
        service, operation = data.draw(st.sampled_from(OPERATIONS_UNDER_TEST))
        corrupt = data.draw(st.booleans())
        body = json.dumps(data.draw(strategies[((service, operation), corrupt)])).encode()
        if service == "personalize":
            status, headers, payload = raw(url, "/", body, f"AmazonPersonalize.{operation}")
            code = payload.get("__type")
        else:
            path = next(p for p, op in rest_routes(service).items() if op == operation)
            status, headers, payload = raw(url, path, body)
            code = headers.get("x-amzn-ErrorType")
        assert status < 500, (operation, body, payload)
        if status >= 400:
            assert code and payload.get("message"), (operation, body, payload)

    check()
