"""The wire contract, taken from botocore's service models (the authority): every request body is
checked against its operation's input shape (required members, types, lengths, ranges, enums,
patterns) before a handler sees it, so handlers get well-typed values and bad input always becomes
an InvalidInputException that names the member."""

from __future__ import annotations

import datetime as dt
import functools
import re

import botocore.session

from local.personalize.errors import InvalidInput


@functools.cache
def service_model(name: str):
    return botocore.session.get_session().get_service_model(name)


@functools.cache
def rest_routes(name: str) -> dict[str, str]:
    """`/path` -> operation name of a rest-json service (every route is POST)."""
    model = service_model(name)
    return {model.operation_model(op).http["requestUri"]: op for op in model.operation_names}


@functools.cache
def error_status(service: str, code: str) -> int:
    try:
        shape = service_model(service).shape_for(code)
    except Exception:
        return 400
    return int(shape.metadata.get("error", {}).get("httpStatusCode", 400))


@functools.cache
def _pattern(text: str):
    try:
        return re.compile(text)
    except re.error:  # Java-only syntax (\p{ASCII}...): not checked
        return None


def validate_input(service: str, operation: str, body) -> dict:
    """A checked copy of the request (timestamps as epoch seconds)."""
    shape = service_model(service).operation_model(operation).input_shape
    if shape is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.")
    return _check(shape, body, "")


def _check(shape, value, path: str):
    name = path or "request"
    kind = shape.type_name
    checker = _CHECKERS.get(kind)
    if checker is None:
        return value
    return checker(shape, value, name)


def _structure(shape, value, name):
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be an object.")
    missing = [m for m in shape.required_members if value.get(m) is None]
    if missing:
        raise InvalidInput(f"Missing required member(s) {', '.join(missing)} in {name}.")
    out = {}
    for key, item in value.items():
        member = shape.members.get(key)
        if member is None or item is None:
            continue  # unknown members are ignored, like the service
        out[key] = _check(member, item, f"{name}.{key}" if name != "request" else key)
    return out


def _list(shape, value, name):
    if not isinstance(value, list):
        raise InvalidInput(f"{name} must be a list.")
    _bounds(shape, len(value), name, "items")
    return [_check(shape.member, v, f"{name}[{i}]") for i, v in enumerate(value)]


def _map(shape, value, name):
    if not isinstance(value, dict):
        raise InvalidInput(f"{name} must be an object (a map).")
    _bounds(shape, len(value), name, "entries")
    return {
        _check(shape.key, k, f"{name} key"): _check(shape.value, v, f"{name}.{k}") for k, v in value.items()
    }


def _string(shape, value, name):
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string.")
    _bounds(shape, len(value), name, "characters")
    enum = shape.metadata.get("enum")
    if enum and value not in enum:
        raise InvalidInput(f"{name} must be one of {enum}, not {value!r}.")
    pattern = _pattern(shape.metadata["pattern"]) if "pattern" in shape.metadata else None
    if pattern is not None and value and not pattern.fullmatch(value):
        raise InvalidInput(f"{name} {value!r} does not match the pattern {shape.metadata['pattern']}.")
    return value


def _integer(shape, value, name):
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer.")
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"at least {low}"
            if high is None
            else f"at most {high}"
            if low is None
            else f"between {low} and {high}"
        )
        raise InvalidInput(f"{name} must be {bounds}, got {value}.")
    return value


def _number(shape, value, name):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{name} must be a number.")
    return float(value)


def _boolean(shape, value, name):
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false.")
    return value


def _timestamp(shape, value, name):
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise InvalidInput(f"{name} must be a timestamp (epoch seconds or ISO 8601).")


def _bounds(shape, size, name, unit):
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        raise InvalidInput(f"{name} must have at least {low} {unit}.")
    if high is not None and size > high:
        raise InvalidInput(f"{name} must have at most {high} {unit}.")


_CHECKERS = {
    "structure": _structure,
    "list": _list,
    "map": _map,
    "string": _string,
    "integer": _integer,
    "long": _integer,
    "float": _number,
    "double": _number,
    "boolean": _boolean,
    "timestamp": _timestamp,
}
