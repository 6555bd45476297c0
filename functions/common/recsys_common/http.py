"""HTTP plumbing shared by the HTTP functions: the one error shape, body parsing, route misses.

Every error answers `{"error": {"code": "...", "message": "...", "details": [...]}}` with a 4xx
that names the problem (docs/openapi.yaml, schema ApiError).
"""

from __future__ import annotations

import json
import re

from aws_lambda_powertools.event_handler import Response, content_types

MAX_BODY_BYTES = 256 * 1024
PATH_PARAM_SYMBOLS = "-._~()'!*:@,;=+&$%<>[]{}|^"  # what powertools' route parameters match, besides \w


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[dict] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def bad_request(message: str, details: list[dict] | None = None, code: str = "validation_error") -> ApiError:
    return ApiError(400, code, message, details)


def error_response(status: int, code: str, message: str, details: list[dict] | None = None) -> Response:
    error = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response(status, content_types.APPLICATION_JSON, json.dumps({"error": error}))


def json_response(body: dict, headers: dict | None = None, status: int = 200) -> Response:
    return Response(status, content_types.APPLICATION_JSON, json.dumps(body), headers=headers)


def json_body(app, max_bytes: int = MAX_BODY_BYTES):
    """The request body parsed as JSON, or ApiError naming what is wrong with it."""
    event = app.current_event
    raw = event.body
    if raw is None or raw == "":
        raise bad_request("request body is required (JSON)", code="missing_body")
    if len(raw) > max_bytes * (4 / 3 if event.is_base64_encoded else 1):
        raise ApiError(413, "body_too_large", f"request body exceeds {max_bytes} bytes")
    try:
        text = event.decoded_body
        if isinstance(text, bytes):
            text = text.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise bad_request("request body is not valid UTF-8", code="invalid_json") from None
    if len(text.encode("utf-8")) > max_bytes:
        raise ApiError(413, "body_too_large", f"request body exceeds {max_bytes} bytes")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}", code="invalid_json") from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def install(app, routes: list[tuple[str, str]]) -> None:
    """Register the error handlers: ApiError -> its status; unknown route -> 404, wrong method -> 405."""
    patterns = [(m, re.compile("^" + re.sub(r"<\w+>", "[^/]+", p) + "$")) for m, p in routes]

    @app.exception_handler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.not_found
    def _not_found(_exc):
        method, path = app.current_event.http_method, app.current_event.path
        allowed = sorted({m for m, rx in patterns if rx.match(path)})
        if method in allowed:  # the resolver's parameter pattern refused a character of the path
            return error_response(
                404,
                "not_found",
                f"no route for {method} {path}: a path parameter holds a character routes do not accept "
                f"(allowed: letters, digits, white space and {PATH_PARAM_SYMBOLS})",
            )
        if allowed:
            resp = error_response(
                405, "method_not_allowed", f"{method} {path} is not supported; use {', '.join(allowed)}"
            )
            resp.headers["Allow"] = ", ".join(allowed)
            return resp
        return error_response(404, "not_found", f"no route for {method} {path}")
