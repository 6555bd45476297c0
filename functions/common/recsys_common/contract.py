"""The HTTP API's contract, docs/openapi.yaml, as the functions' routes and request validators.

The layer ships the document as JSON (openapi.json, made by functions/openapi_json.py). At cold
start each function takes its routes from it (method and path per operationId) and fastjsonschema
compiles the schemas it needs into validators: lengths, ranges, required and unknown fields, map
sizes and defaults are stated once, in the document. What a schema cannot state (the experiment's
filter names, the stack's event types, timestamps relative to now) stays with the handlers.

A failing request is checked again field by field, so that the 400 names every bad field (the
field, the limit, what was given: recsys_common.problem_text), not only the first one
fastjsonschema met.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from functools import cache
from pathlib import Path

import fastjsonschema

from recsys_common import http, problem_text

DOC = json.loads(Path(__file__).with_name("openapi.json").read_text(encoding="utf-8"))
METHODS = ("get", "put", "post", "delete", "patch")
_QUERY_INT = re.compile(r"\s*[+-]?[0-9]{1,9}\s*")  # int() would also take "1_0", "٣" and other digit forms


def _has_zone(text: str) -> bool:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


# date-time as the handlers parse it (events_model): ISO-8601 with a time zone.
FORMATS = {"date-time": _has_zone}


def _inline(node):
    """The node with its local $refs replaced by their targets: each schema compiles on its own."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = DOC
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _inline(target)
        return {k: _inline(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v) for v in node]
    return node


# --- routes -------------------------------------------------------------------------------------


def _operations() -> dict[str, tuple[str, str, dict]]:
    """{operationId: (METHOD, path, operation)}."""
    return {
        op["operationId"]: (method.upper(), path, op)
        for path, item in DOC["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def rule(path: str) -> str:
    """An OpenAPI path in the resolver's syntax: /users/{userId} -> /users/<userId>."""
    return re.sub(r"\{(\w+)\}", r"<\1>", path)


def routes(tag: str) -> list[tuple[str, str]]:
    """(METHOD, resolver rule) of every operation with this tag: the routes of one function."""
    return [(m, rule(p)) for m, p, op in _operations().values() if tag in op.get("tags", [])]


def route(app, operation_id: str):
    """The resolver's route decorator for a documented operation (method and path from the document)."""
    method, path, _ = _operations()[operation_id]
    return app.route(rule(path), method=method)


# --- validators ---------------------------------------------------------------------------------


class Validator:
    """One schema compiled by fastjsonschema; `validate` returns the value with the schema's
    defaults filled in, or raises a 400 naming every problem."""

    def __init__(self, schema: dict, name: str):
        self.schema, self.name = _inline(schema), name
        self._check = fastjsonschema.compile(self.schema, formats=FORMATS)

    def validate(self, value, name: str | None = None):
        value, problems = self.check(value, name)
        if problems:
            raise http.bad_request(_summary(problems), public(problems))
        return value

    def check(self, value, name: str | None = None) -> tuple[object, list[dict]]:
        """(the value with nulls dropped and defaults filled in, every problem)."""
        value = _drop_nulls(value, self.schema)
        try:
            return self._check(value), []
        except fastjsonschema.JsonSchemaValueException:
            return value, self.problems(value, self.name if name is None else name)

    def problems(self, value, name: str) -> list[dict]:
        """Every problem: an object's fields one by one (missing, unknown, each field's own
        problem), an array's items one by one, anything else its first problem."""
        try:
            self._check(value)
            return []
        except fastjsonschema.JsonSchemaValueException as exc:
            first = _problem(exc, name)
        schema = self.schema
        if isinstance(value, dict) and "properties" in schema and first["rule"] != "type":
            return self._object_problems(value, name) or [first]
        if isinstance(value, list) and isinstance(schema.get("items"), dict) and first["rule"] != "type":
            shape = _shape(schema)
            items = _part(schema["items"])
            found = shape.problems(value, name) if shape else []
            for i, item in enumerate(value):
                found += items.problems(item, f"{name}[{i}]")
            return found or [first]
        return [first]

    def _object_problems(self, value: dict, name: str) -> list[dict]:
        prefix = f"{name}." if name else ""
        props = self.schema["properties"]
        found = [
            {"field": prefix + k, "problem": "is required", "rule": "required"}
            for k in self.schema.get("required", [])
            if k not in value
        ]
        if self.schema.get("additionalProperties") is False:
            found += [
                {"field": prefix + k, "problem": "unknown field", "rule": "additionalProperties"}
                for k in sorted(set(value) - set(props))
            ]
        for k in (k for k in props if k in value):
            found += _part(props[k]).problems(value[k], prefix + k)
        return found


@cache
def _compiled(schema_json: str) -> Validator:
    return Validator(json.loads(schema_json), "")


def _part(schema: dict) -> Validator:
    """A sub-schema's validator, compiled on the first request that fails (not at cold start)."""
    return _compiled(json.dumps(schema, sort_keys=True))


def _shape(schema: dict) -> Validator | None:
    """An array schema without its items (minItems, maxItems): checked apart from the items."""
    rest = {k: v for k, v in schema.items() if k != "items"}
    return _part(rest) if len(rest) > 1 else None


def _drop_nulls(value, schema: dict):
    """An optional field sent as JSON null counts as absent (docs/openapi.yaml, info)."""
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return {k: _drop_nulls(v, props.get(k, {})) for k, v in value.items() if v is not None}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_drop_nulls(v, schema["items"]) for v in value]
    return value


def _problem(exc: fastjsonschema.JsonSchemaValueException, name: str) -> dict:
    field = name + exc.name.removeprefix("data")
    field = field.removeprefix(".") or "body"
    return {
        "field": field,
        "problem": problem_text.describe(exc.rule, exc.definition or {}, exc.value),
        "rule": exc.rule,
    }


def _summary(problems: list[dict]) -> str:
    return "; ".join(f"{p['field']}: {p['problem']}" for p in problems)


def public(problems: list[dict]) -> list[dict]:
    """The details of an ApiError: field and problem (the rule is for callers that sort problems)."""
    return [{"field": p["field"], "problem": p["problem"]} for p in problems]


@cache
def schema(name: str) -> Validator:
    """components.schemas[name] compiled; problems are named from the top level (`user_id`)."""
    return Validator(DOC["components"]["schemas"][name], "")


@cache
def shape(name: str) -> Validator:
    """components.schemas[name] without what its arrays hold: the container's own limits (a batch
    whose items are checked one by one elsewhere)."""
    return Validator(_without_items(_inline(DOC["components"]["schemas"][name])), "")


def _without_items(node):
    if not isinstance(node, dict):
        return node
    out = {k: _without_items(v) for k, v in node.items()}
    if node.get("type") == "array":  # (not a property that happens to be called "items")
        out.pop("items", None)
    return out


@cache
def request_body(operation_id: str) -> Validator:
    _, _, op = _operations()[operation_id]
    return Validator(op["requestBody"]["content"]["application/json"]["schema"], "")


# --- parameters ---------------------------------------------------------------------------------


class Parameters:
    """An operation's path and query parameters: converted from text as their schema says, then
    validated; absent ones take the document's default."""

    def __init__(self, operation_id: str):
        _, _, op = _operations()[operation_id]
        self.params = [_inline(p) for p in op.get("parameters", [])]
        self.checks = {p["name"]: Validator(_param_schema(p), p["name"]) for p in self.params}

    def read(self, path: dict[str, str], query) -> dict:
        """`query` looks a query parameter up by name (the resolver's get_query_string_value)."""
        out, problems = {}, []
        for p in self.params:
            name = p["name"]
            raw = path.get(name) if p["in"] == "path" else query(name)
            if raw is None:
                out[name] = _param_schema(p).get("default")
                continue
            try:
                value = _from_text(p, raw)
                found = self.checks[name].problems(value, name)
            except ValueError as exc:
                found = [{"field": name, "problem": str(exc), "rule": "type"}]
            problems += found
            out[name] = value if not found else None
        if problems:
            where = {p["name"]: p["in"] for p in self.params}
            text = "; ".join(f"{where.get(p['field'], 'query')} parameter '{p['field']}' {p['problem']}"
                             for p in problems)  # fmt: skip
            raise http.bad_request(text, public(problems))
        return out


def _param_schema(param: dict) -> dict:
    if "content" in param:  # a JSON-encoded parameter (OpenAPI 3.1, Parameter Object `content`)
        return param["content"]["application/json"]["schema"]
    return param["schema"]


def _from_text(param: dict, raw: str):
    """A parameter's text as the value its schema describes; ValueError says why not."""
    if "content" in param:
        try:
            return json.loads(raw, parse_constant=_no_constant)
        except ValueError:
            raise ValueError(f"must be a JSON object, got {problem_text.given(raw)}") from None
    kind = param["schema"].get("type")
    if kind == "integer":
        if not _QUERY_INT.fullmatch(raw):
            raise ValueError(f"must be an integer, got {problem_text.given(raw)}")
        return int(raw)
    if kind == "number":
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {problem_text.given(raw)}") from None
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number, got {problem_text.given(raw)}")
        return value
    return raw


def _no_constant(name: str):
    raise ValueError(name)


@cache
def parameters(operation_id: str) -> Parameters:
    return Parameters(operation_id)
