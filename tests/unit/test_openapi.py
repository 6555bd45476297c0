"""docs/openapi.yaml: a valid OpenAPI document that describes exactly the template's routes."""

from __future__ import annotations

from pathlib import Path

import yaml
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())


def _template_routes() -> set[tuple[str, str]]:
    from local.sam import template

    t = template.load(ROOT / "template.yaml")
    routes = set()
    for fn in t.of_type("AWS::Serverless::Function"):
        for event in (fn.properties.get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                props = t.resolve(event["Properties"])
                routes.add((props["Method"].lower(), props["Path"]))
    return routes


def test_document_is_valid_openapi():
    validate(DOC)


def test_every_template_route_is_documented_and_nothing_else():
    documented = {
        (m, p)
        for p, ops in DOC["paths"].items()
        for m in ops
        if m in ("get", "post", "put", "delete", "patch")
    }
    assert documented == _template_routes()


def _deref(obj: dict) -> dict:
    if "$ref" not in obj:
        return obj
    node = DOC
    for part in obj["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_every_operation_documents_its_errors_and_a_json_success():
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert "200" in codes, (method, path)
            params = [_deref(p) for p in op.get("parameters", [])]
            # a client can send any path segment or query value: each needs its documented 400
            takes_input = "requestBody" in op or any(p["in"] in ("query", "path") for p in params)
            if takes_input:
                assert "400" in codes, (method, path)


def test_every_function_error_has_one_shape():
    error = DOC["components"]["schemas"]["ApiError"]
    assert error["required"] == ["error"]
    assert set(error["properties"]["error"]["required"]) == {"code", "message"}
    # every 4xx/5xx a route documents is an ApiError; API Gateway's own answers (Error) only beside it
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                if status.startswith("2"):
                    continue
                if response.get("$ref") == "#/components/responses/Unauthorized":
                    continue  # API Gateway's JWT authorizer answers before any function runs
                sch = _deref(response)["content"]["application/json"]["schema"]
                shapes = [s["$ref"] for s in sch.get("oneOf", [sch])]
                assert "#/components/schemas/ApiError" in shapes, (method, path, status)
    assert "statusCode" not in DOC["components"]["schemas"]["Error"]["properties"]


# --- security: the document says what the template enforces, in every mode ---------------------

MODES = {
    "NONE": ({}, {}),
    "JWT": (
        {"ApiAuthorization": "JWT", "JwtIssuer": "https://issuer.example", "JwtAudience": "app"},
        {"bearerJwt": []},
    ),
    "IAM": ({"ApiAuthorization": "IAM"}, {"sigv4": []}),
}
KIND_SCHEME = {"NONE": {}, "JWT": {"bearerJwt": []}, "AWS_IAM": {"sigv4": []}}


def _template_security(overrides: dict) -> dict[tuple[str, str], str]:
    from local.sam.api_auth import routes_from_definition
    from local.stack import load_template

    t = load_template(overrides=overrides)
    found = routes_from_definition(t.resolve(t.resources["HttpApi"].properties["DefinitionBody"]))
    return {(m.lower(), p): r.kind for (m, p), r in found.items()}


def test_security_schemes_are_the_ones_api_gateway_imports():
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert schemes["sigv4"]["name"] == "Authorization" and schemes["sigv4"]["in"] == "header"
    assert (schemes["bearerJwt"]["scheme"], schemes["bearerJwt"]["bearerFormat"]) == ("bearer", "JWT")


def test_every_operation_lists_the_security_the_template_gives_it_in_each_mode():
    ops = {(m, p): op for p, item in DOC["paths"].items() for m, op in item.items()}
    chosen = set()
    for name, (overrides, scheme) in MODES.items():
        security = _template_security(overrides)
        for key, op in ops.items():
            kind = security.get(key, "NONE")
            ways_in = op["security"] or [{}]  # `security: []`: open
            assert KIND_SCHEME[kind] in ways_in, (name, key, kind, op["security"])
            if kind != "NONE":
                assert "403" in op["responses"], key  # API Gateway's refusals are documented
            if kind == "JWT":
                assert "401" in op["responses"], key
            if op.get("x-authorization-parameter") == "ApiAuthorization":
                assert KIND_SCHEME[kind] == scheme, (name, key)
                chosen.add(key)
            else:  # fixed whatever the mode: exactly one way in
                assert ways_in == [KIND_SCHEME[kind]], (name, key)
    assert chosen == {k for k, op in ops.items() if op.get("x-authorization-parameter")} and chosen
