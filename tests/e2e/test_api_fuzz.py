"""A fuzzing pass over docs/openapi.yaml against the local stack, over real HTTP.

Requests are generated from the documented request schemas (valid ones, and invalid ones: wrong
types, missing and unknown fields, oversize values and bodies, junk bodies, unknown routes, wrong
methods). Every answer must be documented: never a 5xx, always JSON that validates against the
schema of that route and status; a 4xx names the problem; a rejected request writes nothing.
Requests run authenticated as each route requires on the session's stack (ApiAuthorization=NONE):
the experiments routes, always IAM, are signed with the stack's credentials (SigV4); the refusals
themselves are tested in test_api_auth.py.

The generator covers the JSON Schema subset the document uses (object, array, string, integer,
number, boolean, enum, oneOf, $ref). Constraints that a schema cannot state are taken from the
document's own descriptions: the stack's event types, timestamps not in the future.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from urllib.parse import quote, urlencode

import jsonschema
import pytest
import requests
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
EVENT_TYPES = ["view", "click", "purchase"]  # template parameter EventTypes (default)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


# --- the document -----------------------------------------------------------------------------


def deref(node: dict) -> dict:
    while "$ref" in node:
        target = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def schema(name: str) -> dict:
    return DOC["components"]["schemas"][name]


def response_schema(path: str, method: str, status: int) -> dict | None:
    """The documented JSON schema of this answer; None when the status is not documented."""
    responses = DOC["paths"][path][method.lower()]["responses"]
    if str(status) not in responses:
        return None
    return deref(responses[str(status)])["content"]["application/json"]["schema"]


def validate(body, sch: dict) -> None:
    # the whole document as the root, so "#/components/..." references resolve
    jsonschema.validate(body, {**sch, "components": DOC["components"]})


# --- schema -> strategy -----------------------------------------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_KEY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


def _string(s: dict) -> st.SearchStrategy:
    if "enum" in s:
        return st.sampled_from(s["enum"])
    if s.get("format") == "date-time":
        return st.integers(0, 30 * 86400).map(
            lambda ago: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - ago))
        )
    low, high = s.get("minLength", 0), min(s.get("maxLength", 40), 40)
    strategy = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=low, max_size=high)
    if "pattern" in s:
        strategy = strategy.filter(lambda v, p=re.compile(s["pattern"]): p.search(v) is not None)
    return strategy


def from_schema(s: dict, overrides: dict | None = None) -> st.SearchStrategy:
    """Values valid under schema `s`; overrides map property name -> strategy (for the constraints
    the document states in words)."""
    overrides = overrides or {}
    s = deref(s)
    if "oneOf" in s:
        return st.one_of([from_schema(x, overrides) for x in s["oneOf"]])
    kind = s.get("type")
    if kind == "object":
        props = s.get("properties", {})
        required = set(s.get("required", []))
        fields = {k: overrides[k] if k in overrides else from_schema(v, overrides) for k, v in props.items()}
        if not props:  # a free-form or map object
            values = from_schema(s["additionalProperties"]) if isinstance(
                s.get("additionalProperties"), dict) else _TEXT  # fmt: skip
            keys = _string({"type": "string", **s.get("propertyNames", {"minLength": 1})})
            return st.dictionaries(keys, values, max_size=min(s.get("maxProperties", 4), 4))
        return st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in required},
            optional={k: v for k, v in fields.items() if k not in required},
        )
    if kind == "array":
        return st.lists(
            from_schema(s["items"], overrides),
            min_size=s.get("minItems", 0),
            max_size=min(s.get("maxItems", 5), 5),
        )
    if kind == "string":
        return _string(s)
    if kind == "integer":
        return st.integers(s.get("minimum", -(2**31)), s.get("maximum", 2**31))
    if kind == "number":
        if "exclusiveMinimum" in s or "exclusiveMaximum" in s:
            low, high = s.get("exclusiveMinimum", -1e9), s.get("exclusiveMaximum", 1e9)
            return st.floats(low, high, exclude_min=True, exclude_max=True, allow_nan=False)
        low, high = s.get("minimum", -1e9), s.get("maximum", 1e9)
        return st.one_of(st.integers(int(low), int(high)), st.floats(low, high, allow_nan=False))
    if kind == "boolean":
        return st.booleans()
    raise NotImplementedError(f"schema not covered by the fuzzer: {s}")


def _unique(prefix: str) -> st.SearchStrategy:
    """Unique per example, so that what a request wrote can be told apart."""
    return st.builds(lambda: f"{prefix}-{uuid.uuid4().hex[:12]}")


_RECENT = st.floats(time.time() - 30 * 86400, time.time() - 1, allow_nan=False)
EVENT_OVERRIDES = {
    "event_type": st.sampled_from(EVENT_TYPES),
    "event_id": _unique("fz"),
    "user_id": _unique("fz-user"),
    "timestamp": st.one_of(
        _RECENT, _RECENT.map(lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)))
    ),
    "value": st.one_of(st.integers(-1000, 1000), st.floats(1e-6, 1e9), st.floats(-1e9, -1e-6)),
    "properties": st.dictionaries(st.text("abc", min_size=1, max_size=5), st.integers(0, 9), max_size=3),
}
# `filter` must name a filter of the experiment record: the --no-train stack has none (400, below).
REC_OVERRIDES = {"user_id": _unique("fz-user"), "filter": st.nothing()}


def valid_event() -> st.SearchStrategy:
    return from_schema(schema("Event"), EVENT_OVERRIDES)


def valid_recommendation_request() -> st.SearchStrategy:
    return from_schema(schema("RecommendationRequest"), REC_OVERRIDES).map(
        lambda b: {k: v for k, v in b.items() if k != "filter"}
    )


# --- invalid variants ----------------------------------------------------------------------------

_WRONG_TYPES = {
    "string": st.one_of(st.integers(), st.booleans(), st.none(), st.lists(st.integers(), max_size=2)),
    "integer": st.one_of(_TEXT, st.floats(0.5, 3.5).filter(lambda x: not x.is_integer()), st.booleans()),
    "number": st.one_of(_TEXT, st.booleans(), st.lists(st.integers(), max_size=2)),
    "object": st.one_of(_TEXT, st.integers(), st.lists(st.integers(), max_size=2)),
}


def _broken_value(s: dict) -> st.SearchStrategy:
    """A value that breaks schema `s`: another JSON type, oversize, or out of range."""
    s = deref(s)
    kind = s.get("type") if "oneOf" not in s else "number"  # timestamp: number or date-time string
    options = []
    if kind in _WRONG_TYPES:
        wrong = _WRONG_TYPES[kind]
        if "oneOf" in s:  # neither a number nor a date-time string
            wrong = st.one_of(st.booleans(), st.lists(st.integers(), max_size=2), st.just("yesterday"))
        elif kind == "string" and s.get("pattern") == "\\S":
            wrong = st.one_of(wrong, st.sampled_from(["", " ", "\t\n"]))
        options.append(wrong.filter(lambda v: v is not None or kind != "string"))
    if "maxLength" in s:
        options.append(st.integers(s["maxLength"] + 1, s["maxLength"] + 50).map(lambda n: "x" * n))
    if "maximum" in s:
        options.append(st.sampled_from([s["maximum"] + 1, s["maximum"] * 1000 + 1]))
    if "minimum" in s:
        options.append(st.just(s["minimum"] - 1))
    return st.one_of(options)


@st.composite
def broken_object(draw, sch: dict, valid: st.SearchStrategy, breakable: list[str]):
    """(body, field named in the error): a valid body with one field missing, unknown or broken."""
    body = draw(valid)
    sch = deref(sch)
    how = draw(st.sampled_from(["missing", "unknown", "broken"]))
    if how == "missing":
        field = draw(st.sampled_from(sch["required"]))
        body.pop(field, None)
    elif how == "unknown":
        field = draw(st.sampled_from(["userid", "extra", "numResults", "itemId", "__proto__"]))
        body[field] = draw(_TEXT)
    else:
        field = draw(st.sampled_from(breakable))
        body[field] = draw(_broken_value(sch["properties"][field]))
    return body, field


JUNK_BODIES = st.one_of(
    st.binary(max_size=40).filter(lambda b: _not_json(b)),
    st.sampled_from(
        [b"", b"{", b"[1,2", b"null", b"[]", b"42", b'"text"', b"NaN", b'{"a": NaN}', b"\xff\xfe"]
    ),
)


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
        return False
    except ValueError:
        return True


# --- HTTP and checks ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(local_stack):
    session = requests.Session()
    tables = local_stack.outputs
    ddb = local_stack.client("dynamodb")

    def call(method: str, path: str, *, body=None, raw: bytes | None = None, query=None):
        url = local_stack.api_url + path + (f"?{urlencode(query)}" if query else "")
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"content-type": "application/json"}
        if path.startswith("/experiments"):  # IAM routes: signed with the stack's credentials
            headers = local_stack.signed_headers(method, url, data, headers)
        resp = session.request(method, url, data=data, headers=headers, timeout=30)
        assert resp.status_code < 500, (method, path, data and data[:300], resp.status_code, resp.text)
        assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
        return resp.status_code, resp.json()

    def events_stored(ids: list[str]) -> set[str]:
        keys = [{"event_id": {"S": i}} for i in dict.fromkeys(ids)]
        got = ddb.batch_get_item(RequestItems={tables["EventsTableName"]: {"Keys": keys}})
        return {i["event_id"]["S"] for i in got["Responses"][tables["EventsTableName"]]}

    def assigned(user_id: str) -> bool:
        resp = ddb.query(
            TableName=tables["AssignmentsTableName"],
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": user_id}},
        )
        return resp["Count"] > 0

    call.events_stored, call.assigned = events_stored, assigned
    return call


def check(path: str, method: str, status: int, body) -> None:
    sch = response_schema(path, method, status)
    assert sch is not None, f"{method} {path} answered {status}, which the document does not list: {body}"
    validate(body, sch)


def names(body: dict, field: str) -> bool:
    """The error names `field` (in its message or in a detail's field)."""
    error = body["error"]
    return field in error["message"] or any(field in d["field"] for d in error.get("details") or [])


# --- POST /recommendations ---------------------------------------------------------------------


@FUZZ
@given(body=valid_recommendation_request())
def test_valid_recommendation_requests_are_answered_as_documented(api, body):
    status, answer = api("POST", "/recommendations", body=body)
    assert status == 200, answer
    check("/recommendations", "post", status, answer)
    assert len(answer["items"]) <= body.get("num_results", 25)


@FUZZ
@given(
    case=broken_object(
        schema("RecommendationRequest"),
        valid_recommendation_request(),
        ["user_id", "num_results", "filter_values", "context"],
    )
)
def test_invalid_recommendation_requests_are_400s_that_name_the_field_and_write_nothing(api, case):
    body, field = case
    status, answer = api("POST", "/recommendations", body=body)
    assert status == 400, (body, answer)
    check("/recommendations", "post", status, answer)
    assert names(answer, field), (field, answer)
    if isinstance(body.get("user_id"), str) and body["user_id"].strip():
        assert not api.assigned(body["user_id"])  # no assignment, no exposure for a rejected request


def test_unknown_filter_is_a_400_naming_it(api):
    status, answer = api("POST", "/recommendations", body={"user_id": "fz-filter", "filter": "nope"})
    assert status == 400 and names(answer, "filter")
    check("/recommendations", "post", status, answer)


@FUZZ
@given(raw=JUNK_BODIES, path=st.sampled_from(["/recommendations", "/events"]))
def test_junk_bodies_are_400s(api, raw, path):
    status, answer = api("POST", path, raw=raw)
    assert status == 400, (raw, answer)
    check(path, "post", status, answer)
    assert answer["error"]["code"] in ("invalid_json", "missing_body", "invalid_body", "validation_error")


@pytest.mark.parametrize(("path", "size"), [("/recommendations", 64 * 1024 + 1), ("/events", 256 * 1024 + 1)])
def test_oversize_bodies_are_413s(api, path, size):
    body = json.dumps({"user_id": "fz-big", "pad": "x" * size}).encode()
    status, answer = api("POST", path, raw=body)
    assert status == 413 and answer["error"]["code"] == "body_too_large"
    check(path, "post", status, answer)


# --- GET routes with path and query parameters ---------------------------------------------------

_PATH_ID_OK = st.text(
    st.sampled_from("abcXYZ0189-._~()'!*:@,;=+&$%<>[]{}|^ é"), min_size=1, max_size=30
).filter(lambda v: v.strip())
_PATH_ID_ANY = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
_QUERY_INT = st.one_of(st.integers(-5, 600).map(str), _TEXT, st.sampled_from(["1_0", "1e2", "٣", " 7 ", ""]))


@FUZZ
@given(
    which=st.sampled_from(["user", "similar"]),
    pid=st.one_of(_PATH_ID_OK, _PATH_ID_ANY, st.integers(257, 300).map(lambda n: "y" * n)),
    num=st.one_of(st.none(), _QUERY_INT),
    filter_values=st.one_of(st.none(), _TEXT, st.dictionaries(_KEY, _TEXT, max_size=2).map(json.dumps)),
)
def test_get_routes_answer_every_path_and_query_as_documented(api, which, pid, num, filter_values):
    assume(pid not in (".", ".."))  # HTTP clients normalise dot segments away
    template = "/users/{userId}/recommendations" if which == "user" else "/items/{itemId}/similar"
    path = template.replace("{userId}", quote(pid, safe="")).replace("{itemId}", quote(pid, safe=""))
    query = {k: v for k, v in {"num_results": num, "filter_values": filter_values}.items() if v is not None}
    if which == "similar":
        query.pop("filter_values", None)
    status, answer = api("GET", path, query=query)
    check(template, "get", status, answer)
    pattern = re.compile(deref(DOC["components"]["schemas"]["PathId"])["pattern"])
    id_ok = pattern.search(pid) is not None and len(pid) <= 256
    num_ok = num is None or (re.fullmatch(r"\s*[+-]?[0-9]+\s*", num) is not None and 1 <= int(num) <= 500)
    fv_ok = filter_values is None or which == "similar" or _is_string_map(filter_values)
    if id_ok and num_ok and fv_ok:
        assert status == 200, (pid, query, answer)
        if which == "similar":
            assert answer["item_id"] == pid  # the function saw the decoded id
    else:
        assert status in (400, 404), (pid, query, answer)
        if status == 400 and not id_ok:
            assert names(answer, "userId" if which == "user" else "itemId"), answer
        elif status == 400 and id_ok:
            assert names(answer, "num_results" if not num_ok else "filter_values"), answer
        else:
            assert not id_ok  # 404 only for an id outside the documented pattern


def _is_string_map(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and all(
        isinstance(v, str) and 1 <= len(k) <= 150 and len(v) <= 1000 for k, v in value.items()
    )


# --- POST /events ------------------------------------------------------------------------------


@FUZZ
@given(events=st.lists(valid_event(), min_size=1, max_size=8), single=st.booleans())
def test_valid_events_are_all_stored(api, events, single):
    body = events[0] if single else {"events": events}
    sent = events[:1] if single else events
    status, answer = api("POST", "/events", body=body)
    assert status == 200, (body, answer)
    check("/events", "post", status, answer)
    assert len(answer["event_ids"]) == len(sent)
    assert answer["accepted"] + answer["duplicates"] == len(sent)
    assert api.events_stored(answer["event_ids"]) == set(answer["event_ids"])


@FUZZ
@given(
    events=st.lists(valid_event(), min_size=1, max_size=6),
    bad=broken_object(
        schema("Event"),
        valid_event(),
        [
            "user_id",
            "item_id",
            "event_type",
            "event_id",
            "session_id",
            "timestamp",
            "value",
            "recommendation_id",
            "properties",
        ],
    ),
    at=st.integers(0, 6),
)
def test_one_invalid_event_rejects_the_batch_and_nothing_is_written(api, events, bad, at):
    bad_event, field = bad
    events = [{**e, "event_id": e.get("event_id") or f"fz-{uuid.uuid4().hex}"} for e in events]  # to look up
    if field == "event_type" and isinstance(bad_event.get("event_type"), str):
        assume(bad_event["event_type"] not in EVENT_TYPES)
    batch = [*events[:at], bad_event, *events[at:]]
    index = batch.index(bad_event)
    status, answer = api("POST", "/events", body={"events": batch})
    assert status == 400, (batch, answer)
    check("/events", "post", status, answer)
    assert names(
        answer, f"events[{index}].{field}" if field in deref(schema("Event"))["properties"] else field
    )
    assert api.events_stored([e["event_id"] for e in events]) == set()  # all or nothing


def test_unknown_event_type_and_future_timestamp_are_named(api):
    for event, field in (
        ({"user_id": "fz-u", "item_id": "i", "event_type": "like"}, "event_type"),
        (
            {"user_id": "fz-u", "item_id": "i", "event_type": "view", "timestamp": time.time() + 3600},
            "timestamp",
        ),
        (
            {"user_id": "fz-u", "item_id": "i", "event_type": "view", "timestamp": time.time() * 1000},
            "timestamp",
        ),
        ({"user_id": "fz-u", "item_id": "i", "event_type": "view", "event_id": "rec#x"}, "event_id"),
        (
            {"user_id": "fz-u", "item_id": "i", "event_type": "view", "properties": {"k": "v" * 2000}},
            "properties",
        ),
    ):
        status, answer = api("POST", "/events", body=event)
        assert status == 400 and names(answer, field), (event, answer)
        check("/events", "post", status, answer)


def test_batch_limits(api):
    one = {"user_id": "fz-u", "item_id": "i", "event_type": "view"}
    for events in ([], [one] * 101):
        status, answer = api("POST", "/events", body={"events": events})
        assert status == 400 and names(answer, "events"), answer
        check("/events", "post", status, answer)


# --- routes and methods that do not exist ------------------------------------------------------


_SEGMENT = st.text(st.sampled_from("abcxyz019-_."), min_size=1, max_size=10)


@FUZZ
@given(
    method=st.sampled_from(METHODS),
    segments=st.lists(_SEGMENT, min_size=1, max_size=4),
)
def test_unknown_routes_and_methods_are_gateway_404s(api, method, segments):
    path = "/" + "/".join(segments)
    documented = any(_matches(p, path) and method.lower() in ops for p, ops in DOC["paths"].items())
    assume(not documented)
    status, answer = api(method, path)
    assert status == 404 and answer == {"message": "Not Found"}, (method, path, answer)
    validate(answer, schema("Error"))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/recommendations"),
        ("DELETE", "/events"),
        ("POST", "/health"),
        ("PUT", "/users/u/recommendations"),
        ("POST", "/items/i/similar"),
        ("DELETE", "/experiments/recs-ab"),
    ],
)
def test_documented_paths_with_other_methods_are_gateway_404s(api, method, path):
    status, answer = api(method, path)
    assert status == 404 and answer == {"message": "Not Found"}
    validate(answer, schema("Error"))


def _matches(template: str, path: str) -> bool:
    return re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", template), path) is not None


# --- GET /experiments/{experimentId}/results: the analysis options --------------------------

RESULTS = "/experiments/{experimentId}/results"
RESULT_PARAMS = {
    p["name"]: p["schema"]
    for p in map(deref, DOC["paths"][RESULTS]["get"]["parameters"])
    if p["in"] == "query"
}
# `metric` is a string whose values the document names in its description
METRICS = ["purchase_rate", "click_rate", "value_per_user", "click_per_view"]
FEW = settings(FUZZ, max_examples=25)  # each answer is a full analysis


@st.composite
def result_queries(draw, valid: bool):
    names = draw(st.lists(st.sampled_from(sorted(RESULT_PARAMS)), unique=True, max_size=4))
    query = {
        n: str(draw(st.sampled_from(METRICS) if n == "metric" else from_schema(RESULT_PARAMS[n])))
        for n in names
    }
    if valid:
        return query, None
    bad = draw(st.sampled_from(sorted(RESULT_PARAMS)))
    sch = RESULT_PARAMS[bad]
    if "enum" in sch or bad == "metric":
        query[bad] = draw(_TEXT.filter(lambda v: v not in sch.get("enum", METRICS)))
    else:
        low, high = sch["exclusiveMinimum"], sch["exclusiveMaximum"]
        query[bad] = draw(
            st.one_of(st.sampled_from([str(low), str(high), str(high * 2), "-1", "nan", "inf", "x"]), _TEXT)
        )
        assume(not _in_open_range(query[bad], low, high))
    return query, bad


def _in_open_range(text: str, low: float, high: float) -> bool:
    try:
        return low < float(text) < high
    except ValueError:
        return False


@FEW
@given(case=result_queries(valid=True))
def test_valid_analysis_options_are_answered_as_documented(api, case):
    query, _ = case
    status, answer = api("GET", "/experiments/recs-ab/results", query=query)
    assert status == 200, (query, answer)
    check(RESULTS, "get", status, answer)


@FEW
@given(case=result_queries(valid=False))
def test_invalid_analysis_options_are_400s_naming_the_parameter(api, case):
    query, bad = case
    status, answer = api("GET", "/experiments/recs-ab/results", query=query)
    assert status == 400 and names(answer, bad), (query, answer)
    check(RESULTS, "get", status, answer)


def test_health_and_experiment_answer_as_documented(api):
    status, answer = api("GET", "/health")
    check("/health", "get", status, answer)
    status, answer = api("GET", "/experiments/recs-ab")
    check("/experiments/{experimentId}", "get", status, answer)
    for experiment_id in ("no-such-experiment", "z" * 257):
        status, answer = api("GET", f"/experiments/{experiment_id}")
        assert status in (400, 404)
        check("/experiments/{experimentId}", "get", status, answer)
