"""A failed JSON Schema rule in words: what the schema asks (its limit) and what was given.

Used by recsys_common.contract for the `problem` of each ApiError detail. A schema node may carry
`x-messages: {<rule>: <text>}` where the generic text would not say what is meant (a pattern).
"""

from __future__ import annotations

import json
import math

TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a finite number", "object": "an object",
              "array": "an array", "boolean": "a boolean", "null": "null"}  # fmt: skip


def given(value) -> str:
    """The value, short: strings quoted (cut at 40 characters), containers by kind."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value)
    return "an object" if isinstance(value, dict) else "an array" if isinstance(value, list) else "?"


def describe(rule: str, node: dict, value) -> str:
    """The problem of `value` failing `rule` of schema `node`."""
    custom = (node.get("x-messages") or {}).get(rule)
    if custom:
        return custom
    for words in (_number, _size, _other):
        text = words(rule, node, value)
        if text:
            return text
    return f"does not satisfy '{rule}'"


def _number(rule: str, node: dict, value) -> str | None:
    low, high = node.get("minimum"), node.get("maximum")
    if rule in ("minimum", "maximum") and low is not None and high is not None:
        span = f"within ±{high:g}" if low == -high else f"between {low:g} and {high:g}"
        return f"must be {span}, got {given(value)}"
    if rule in ("minimum", "maximum"):
        return f"must be {'at least' if rule == 'minimum' else 'at most'} {node[rule]:g}, got {given(value)}"
    if rule in ("exclusiveMinimum", "exclusiveMaximum"):
        low, high = node.get("exclusiveMinimum", -math.inf), node.get("exclusiveMaximum", math.inf)
        return f"must be in ({low:g}, {high:g}), got {given(value)}"
    return None


def _size(rule: str, node: dict, value) -> str | None:
    size = len(value) if isinstance(value, str | list | dict) else None
    if rule == "minLength":
        n = node["minLength"]
        return "must be a non-empty string" if n == 1 else f"must be at least {n} characters, got {size}"
    if rule == "maxLength":
        return f"is longer than {node['maxLength']} characters (got {size})"
    if rule in ("minItems", "maxItems") and "minItems" in node and "maxItems" in node:
        return f"must hold {node['minItems']} to {node['maxItems']} items, got {size}"
    if rule in ("minItems", "maxItems"):
        return f"must hold {'at least' if rule == 'minItems' else 'at most'} {node[rule]} items, got {size}"
    if rule in ("minProperties", "maxProperties"):
        return f"must have {'at least' if rule == 'minProperties' else 'at most'} {node[rule]} entries, got {size}"
    if rule == "propertyNames":
        names = node["propertyNames"]
        low, high = names.get("minLength", 0), names.get("maxLength", math.inf)
        bad = next((k for k in value if not low <= len(k) <= high), None) if isinstance(value, dict) else None
        return f"keys must be {low} to {high} characters, got {given(bad)}"
    return None


def _other(rule: str, node: dict, value) -> str | None:
    if rule == "type":
        return f"must be {_kind(node)}, got {given(value)}"
    if rule == "pattern":
        return "must not be only white space" if node["pattern"] == "\\S" else f"must match {node['pattern']}"
    if rule == "enum":
        return f"must be one of {', '.join(map(str, node['enum']))}, got {given(value)}"
    if rule == "oneOf":
        return f"must be {_types(node)}"
    if rule == "format":
        return f"must be a {node['format']}, got {given(value)}"
    return None


def _kind(node: dict) -> str:
    if node.get("type") == "string" and node.get("minLength", 0) >= 1:
        return "a non-empty string"
    return _types(node)


def _types(node: dict) -> str:
    kinds = node.get("type") or [s.get("type") for s in node.get("oneOf", [])]
    kinds = kinds if isinstance(kinds, list) else [kinds]
    return " or ".join(TYPE_NAMES.get(k, str(k)) for k in kinds)
