"""The API contract: docs/openapi.yaml is what the Lambdas route and validate with (recsys_common.contract).

- the layer's copy (openapi.json) is the document as it is now;
- the template's HttpApi routes, the document's operations and each app's resolver routes agree;
- the compiled validators accept what the document accepts (jsonschema as the reference) and
  their 400s name the field, the limit and what was given.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from recsys_common import contract, events_model, http

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "functions"))
import openapi_json  # noqa: E402

DOC = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())


def test_the_layers_copy_is_the_document():
    assert contract.DOC == DOC, "run: .venv/bin/python functions/openapi_json.py"
    assert openapi_json.LAYER_COPY.read_text(encoding="utf-8") == openapi_json.render()


# --- routes -------------------------------------------------------------------------------------


def _template_routes() -> dict[str, set[tuple[str, str]]]:
    """{function folder: {(METHOD, path)}} of the template's HttpApi events."""
    from local.sam import template

    t = template.load(ROOT / "template.yaml")
    out: dict[str, set] = {}
    for fn in t.of_type("AWS::Serverless::Function"):
        folder = Path(fn.properties["CodeUri"]).name
        for event in (fn.properties.get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                props = t.resolve(event["Properties"])
                out.setdefault(folder, set()).add((props["Method"].upper(), props["Path"]))
    return out


def _app_routes(folder: str, monkeypatch) -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every route registered on the function's resolver."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    spec = importlib.util.spec_from_file_location(f"{folder}_app", ROOT / "functions" / folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    registered = module.app._static_routes + module.app._dynamic_routes
    return {(r.method, r.path.replace("<", "{").replace(">", "}")) for r in registered}


def test_template_document_and_apps_route_the_same_requests(monkeypatch):
    template = _template_routes()
    assert set(template) == {"recommendations", "events", "experiments"}
    for folder, routes in template.items():
        documented = {(m, p.replace("<", "{").replace(">", "}")) for m, p in contract.routes(folder)}
        assert documented == routes, folder  # the function's tag holds exactly its template routes
        assert _app_routes(folder, monkeypatch) == routes, folder


# --- validators ---------------------------------------------------------------------------------


def _every_schema():
    for path, item in DOC["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                yield f"{method} {path} body", op["operationId"]
    yield from ((f"schema {n}", n) for n in ("Event", "EventBatch", "RecommendationRequest"))


@pytest.mark.parametrize(("what", "name"), list(_every_schema()))
def test_every_request_schema_and_parameter_compiles(what, name):
    # a document that fastjsonschema cannot compile fails here, not at a Lambda's cold start
    assert (contract.request_body(name) if " body" in what else contract.schema(name)).validate
    for op in (o for item in DOC["paths"].values() for o in item.values()):
        contract.parameters(op["operationId"])


def _reference(name: str, body) -> bool:
    """jsonschema (Draft 2020-12, what OpenAPI 3.1 uses) on the document: accepted?"""
    body = {k: v for k, v in body.items() if v is not None} if isinstance(body, dict) else body
    sch = {**DOC["components"]["schemas"][name], "components": DOC["components"]}
    return jsonschema.Draft202012Validator(sch).is_valid(body)


REQUESTS = [
    {"user_id": "u"},
    {"user_id": "u", "num_results": 500, "filter": "f", "filter_values": {"G": '"x"'}, "context": {}},
    {"user_id": "u", "num_results": None},
    {"user_id": ""},
    {"user_id": " \t"},
    {"user_id": "x" * 257},
    {"user_id": 7},
    {"num_results": 3},
    {"user_id": "u", "num_results": 501},
    {"user_id": "u", "num_results": 0},
    {"user_id": "u", "num_results": 2.5},
    {"user_id": "u", "num_results": True},
    {"user_id": "u", "colour": "red"},
    {"user_id": "u", "filter_values": {"k": 1}},
    {"user_id": "u", "filter_values": {"": "v"}},
    {"user_id": "u", "filter_values": {"k" * 151: "v"}},
    {"user_id": "u", "filter_values": {str(i): "v" for i in range(26)}},
    {"user_id": "u", "context": {"k": "v" * 1001}},
    {"user_id": "u", "context": "mobile"},
]


@pytest.mark.parametrize("body", REQUESTS)
def test_recommendation_requests_are_judged_as_the_document_says(body):
    validator = contract.request_body("postRecommendations")
    try:
        validator.validate(dict(body))
        accepted = True
    except http.ApiError:
        accepted = False
    assert accepted is _reference("RecommendationRequest", body), body


def _problems(body) -> dict[str, str]:
    with pytest.raises(http.ApiError) as info:
        contract.request_body("postRecommendations").validate(body)
    assert info.value.status == 400 and info.value.code == "validation_error"
    return {d["field"]: d["problem"] for d in info.value.details}


def test_errors_name_every_field_the_limit_and_what_was_given():
    problems = _problems({"num_results": 501, "colour": "red", "context": {str(i): "v" for i in range(151)}})
    assert problems == {
        "user_id": "is required",
        "colour": "unknown field",
        "num_results": "must be between 1 and 500, got 501",
        "context": "must have at most 150 entries, got 151",
    }
    assert _problems({"user_id": "x" * 300}) == {"user_id": "is longer than 256 characters (got 300)"}
    assert _problems({"user_id": 7}) == {"user_id": "must be a non-empty string, got 7"}
    assert _problems({"user_id": "u", "filter_values": {"": "v"}}) == {
        "filter_values": "keys must be 1 to 150 characters, got ''"
    }


def test_nulls_count_as_absent_and_defaults_come_from_the_document():
    default = DOC["components"]["schemas"]["RecommendationRequest"]["properties"]["num_results"]["default"]
    body = contract.request_body("postRecommendations").validate({"user_id": "u", "num_results": None})
    assert body == {"user_id": "u", "num_results": default}


def test_query_parameters_are_parsed_as_their_schema_says():
    params = contract.parameters("getUserRecommendations")
    query = {"num_results": " 7 ", "filter_values": '{"G": "\\"x\\""}'}
    got = params.read({"userId": "u"}, query.get)
    assert got == {
        "userId": "u",
        "num_results": 7,
        "filter": None,
        "filter_values": {"G": '"x"'},
        "context": None,
    }
    for query, words in (
        ({"num_results": "1_0"}, "query parameter 'num_results' must be an integer, got '1_0'"),
        ({"num_results": "501"}, "query parameter 'num_results' must be between 1 and 500, got 501"),
        ({"filter_values": "{oops"}, "query parameter 'filter_values' must be a JSON object"),
        ({"context": '{"k": 1}'}, "context.k"),
    ):
        with pytest.raises(http.ApiError) as info:
            params.read({"userId": "u"}, query.get)
        assert words in info.value.message, info.value.message
    with pytest.raises(http.ApiError, match="path parameter 'userId' must not be only white space"):
        params.read({"userId": "  "}, {}.get)
    results = contract.parameters("getExperimentResults")
    for raw in ("nan", "inf", "0.5", "0"):
        with pytest.raises(http.ApiError, match="alpha"):
            results.read({"experimentId": "e"}, {"alpha": raw}.get)
    assert results.read({"experimentId": "e"}, {}.get)["alpha"] == 0.05  # the document's default


def test_event_problems_and_the_rules_no_schema_states_are_reported_together():
    event = {"user_id": "u", "item_id": "i", "event_type": "like", "value": "1", "event_id": "rec#1"}
    with pytest.raises(events_model.Invalid) as info:
        events_model.validate([event], ["view"], batched=True, now=1.8e9)
    assert {p["field"]: p["problem"] for p in info.value.problems} == {
        "events[0].event_id": "must not start with 'rec#' (reserved) nor be only white space",
        "events[0].value": "must be a finite number, got '1'",
        "events[0].event_type": "must be one of view",
    }


def test_documented_pattern_dollar_signs_survive_fastjsonschema():
    # fastjsonschema turns every unescaped '$' into '\\Z', also inside a character class
    validator = contract.schema("PathId")
    assert validator.validate("a$b") == "a$b"
    with pytest.raises(http.ApiError):
        validator.validate("   ")


def test_the_analysis_choices_are_the_documents():
    import tests.unit.abtest_helpers  # noqa: F401  (puts the experiments function's abtest on sys.path)

    analysis = importlib.import_module("abtest.analysis")
    params = {
        p["name"]: p["schema"]
        for p in DOC["paths"]["/experiments/{experimentId}/results"]["get"]["parameters"]
        if "name" in p
    }
    assert set(params["analysis"]["enum"]) == set(analysis.ANALYSES)
    assert set(params["correction"]["enum"]) == set(analysis.CORRECTIONS)
