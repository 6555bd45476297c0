"""The template's HTTP API on loopback: routes from HttpApi events, API Gateway payload 2.0.

Requests become the same event API Gateway sends a Lambda (payload format 2.0), and the
handler's result is mapped back as API Gateway does: a dict with statusCode is taken as
is; anything else is a 200 with the value as JSON. Unknown routes are 404, handler crashes
500 with API Gateway's bodies, so clients see what they would see in AWS.

A request passes a list of stages (`HttpApi.stages`): route -> throttle -> integration; each
either answers or hands on, so another stage (an authorizer) slots in between route and
integration. API Gateway's answers where the API itself refuses or fails:
- throttled by the stage's route settings: 429 {"message":"Too Many Requests"}
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html);
- the Lambda invocation is throttled or fails: 500 {"message":"Internal Server Error"}
  (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-troubleshooting-lambda.html,
  and the knowledge-center article api-gateway-internal-server-error: a throttled backend gives
  the internal server error);
- no answer within the integration timeout (the route's TimeoutInMillis, 30 s at most for HTTP
  APIs, https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html):
  503 {"message":"Service Unavailable"}, what HTTP APIs answer when the integration cannot give
  a response (re:Post "status codes http api gateway proxy"; the developer guide does not say).
One access-log line per request, in the template's AccessLogSettings.Format.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.sam.lambda_runner import LambdaRunner, NoAnswerInTime, Throttled
from local.sam.throttle import RouteThrottle
from local.wsgi_server import WsgiServer

MAX_BODY_BYTES = 10 * 1024 * 1024  # HTTP API's payload limit
MAX_INTEGRATION_TIMEOUT_MS = 30_000  # HTTP API's integration timeout quota (see the docstring)
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


@dataclass
class Route:
    method: str  # "GET", ..., or "ANY"
    path: str  # "/users/{userId}/recommendations", "/{proxy+}", or "$default"
    function: str
    pattern: re.Pattern
    specificity: tuple
    timeout_ms: int = MAX_INTEGRATION_TIMEOUT_MS

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


def make_route(method: str, path: str, function: str) -> Route:
    if path == "$default":
        return Route("ANY", path, function, re.compile(".*"), (-1, 0, 0))
    parts, regex = path.strip("/").split("/"), []
    for part in parts:
        if part.startswith("{") and part.endswith("+}"):
            regex.append(f"(?P<{part[1:-2]}>.+)")
        elif part.startswith("{") and part.endswith("}"):
            regex.append(f"(?P<{part[1:-1]}>[^/]+)")
        else:
            regex.append(re.escape(part))
    static = sum(1 for p in parts if not p.startswith("{"))
    greedy = any(p.endswith("+}") for p in parts)
    method = method.upper()
    # API Gateway picks the most specific route: no greedy, more literal segments, exact method.
    rank = (0 if greedy else 1, static, 0 if method == "ANY" else 1)
    return Route(method, path, function, re.compile("^/" + "/".join(regex) + "/?$"), rank)


def routes_from_specs(runner: LambdaRunner) -> list[Route]:
    routes = []
    for spec in runner.specs.values():
        for props in spec.http_routes:
            method = props.get("Method", "ANY")
            method = "ANY" if method.lower() in ("any", "x-amazon-apigateway-any-method") else method
            route = make_route(method, props.get("Path", "$default"), spec.name)
            route.timeout_ms = min(
                int(props.get("TimeoutInMillis") or MAX_INTEGRATION_TIMEOUT_MS), MAX_INTEGRATION_TIMEOUT_MS
            )
            routes.append(route)
    return sorted(routes, key=lambda r: r.specificity, reverse=True)


def match(routes: list[Route], method: str, path: str) -> tuple[Route, dict] | None:
    for route in routes:
        if route.method not in ("ANY", method.upper()):
            continue
        found = route.pattern.match(path)
        if found:
            return route, found.groupdict()
    return None


def build_event(
    route: Route,
    params: dict,
    method: str,
    raw_path: str,
    query: str,
    headers,
    body: bytes,
    api_id: str,
    source_ip: str,
) -> dict:
    """An API Gateway HTTP API payload 2.0 event."""
    joined: dict[str, str] = {}
    for key, value in headers.items():
        key = key.lower()
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    cookies = [c.strip() for c in joined.pop("cookie", "").split(";") if c.strip()]
    qs: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        qs[key] = f"{qs[key]},{value}" if key in qs else value
    content_type = joined.get("content-type", "application/json")
    is_text = not body or any(content_type.startswith(t) for t in _TEXT_TYPES)
    if is_text:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            is_text = False
    now = time.time()
    event = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": api_id,
            "domainName": joined.get("host", "127.0.0.1"),
            "domainPrefix": joined.get("host", "127.0.0.1").split(".")[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route.route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if cookies:
        event["cookies"] = cookies
    if qs:
        event["queryStringParameters"] = qs
    if params:
        event["pathParameters"] = params
    if body:
        event["body"] = text if is_text else base64.b64encode(body).decode()
    return event


def to_http_response(result: Any) -> tuple[int, dict[str, str], list[str], bytes]:
    """(status, headers, cookies, body) from a handler's result, as payload 2.0 defines it."""
    if not (isinstance(result, dict) and "statusCode" in result):
        return 200, {"content-type": "application/json"}, [], json.dumps(result).encode()
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers[key] = ",".join(str(v) for v in values)
    return int(result["statusCode"]), headers, list(result.get("cookies") or []), data


Response = tuple[int, dict[str, str], list[str], bytes]
_JSON = {"content-type": "application/json"}


def _message(status: int, message: str) -> Response:
    return status, dict(_JSON), [], json.dumps({"message": message}, separators=(",", ":")).encode()


@dataclass
class Request:
    """One request on its way through the stages; stages add what they learn (route, context)."""

    method: str
    target: str
    headers: Any
    body: bytes
    source_ip: str = "127.0.0.1"
    path: str = ""
    route: Route | None = None
    params: dict = field(default_factory=dict)
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.time)
    context: dict[str, Any] = field(default_factory=dict)  # access-log variables: integrationLatency...
    authorizer: dict | None = None  # what the route's authorizer hands the function (jwt / iam)


Stage = Callable[[Request], Response | None]


class HttpApi:
    def __init__(
        self,
        runner: LambdaRunner,
        api_id: str = "localapi",
        cors: dict | None = None,
        stage: str | None = None,
        authorizer=None,  # local.sam.api_auth.ApiAuthorizer: the routes' IAM / JWT authorizers
        throttling: dict | None = None,
        route_throttling: dict[str, dict] | None = None,
        access_log: tuple[Path, str] | None = None,
    ):
        self.runner = runner
        self.authorizer = authorizer
        self.stage = None if stage in (None, "", "$default") else stage
        self.routes = routes_from_specs(runner)
        self.api_id = api_id
        self.cors = cors
        self.throttle = RouteThrottle(throttling, route_throttling)
        self.access_log = AccessLog(*access_log) if access_log else None
        # Each stage answers (a response) or hands on (None); the last one always answers.
        self.stages: list[Stage] = [
            self.route_stage,
            self.auth_stage,
            self.throttle_stage,
            self.integration_stage,
        ]
        self._server: WsgiServer | None = None

    def handle(
        self, method: str, target: str, headers, body: bytes, source_ip: str = "127.0.0.1"
    ) -> Response:
        request = Request(method, target, headers, body, source_ip)
        try:
            response = self.run(request)
        except Exception:  # a defect of the stack itself: still a JSON answer, logged
            traceback.print_exc()
            response = _message(500, "Internal Server Error")
        if self.access_log is not None:
            self.access_log.write(request, response[0])
        return response

    def run(self, request: Request) -> Response:
        for stage in self.stages:
            response = stage(request)
            if response is not None:
                return response
        raise RuntimeError("no stage answered")  # the integration stage always answers

    # -- stages ------------------------------------------------------------------------------
    def route_stage(self, request: Request) -> Response | None:
        path = urlsplit(request.target).path
        if self.stage and (path == f"/{self.stage}" or path.startswith(f"/{self.stage}/")):
            path = path[len(self.stage) + 1 :] or "/"  # a named stage prefixes every route
        request.path = path
        found = match(self.routes, request.method, path)
        if found is None:
            if request.method == "OPTIONS" and self.cors:
                return 204, self._cors_headers(), [], b""
            if request.method == "GET" and path == "/health":  # the template declares none: the stack answers
                return 200, dict(_JSON), [], b'{"status": "ok", "source": "local-stack"}'
            return _message(404, "Not Found")
        request.route, params = found
        if len(request.body) > MAX_BODY_BYTES:
            return _message(413, "Request Entity Too Large")
        # An HTTP API hands the function the path and its parameters percent-decoded ("%20" -> " ");
        # routes match on the encoded path, so "%2F" stays inside one parameter.
        request.params = {k: unquote(v) for k, v in params.items()}
        return None

    def auth_stage(self, request: Request) -> Response | None:
        """The route's authorizer, after routing and before throttling and the integration."""
        if self.authorizer is None:
            return None
        decision = self.authorizer.check(
            request.route, request.method, request.target, request.headers, request.body
        )
        if isinstance(decision, tuple):
            return decision  # refused with API Gateway's answer
        request.authorizer = decision or None
        return None

    def throttle_stage(self, request: Request) -> Response | None:
        if self.throttle.allow(request.route.route_key):
            return None
        return _message(429, "Too Many Requests")

    def integration_stage(self, request: Request) -> Response:
        route, parts = request.route, urlsplit(request.target)
        event = build_event(
            route, request.params, request.method, unquote(parts.path), parts.query, request.headers,
            request.body, self.api_id, request.source_ip,
        )  # fmt: skip
        event["requestContext"]["requestId"] = request.request_id
        if request.authorizer:
            event["requestContext"]["authorizer"] = request.authorizer
        began = time.monotonic()
        try:
            ok, result = self.runner.invoke(route.function, event, wait=route.timeout_ms / 1000)
        except Throttled as exc:
            request.context["integrationErrorMessage"] = f"Lambda throttled: {exc.reason}"
            return _message(500, "Internal Server Error")
        except NoAnswerInTime:
            request.context["integrationErrorMessage"] = f"no answer within {route.timeout_ms} ms"
            return _message(503, "Service Unavailable")
        finally:
            request.context["integrationLatency"] = round((time.monotonic() - began) * 1000)
        if not ok:  # API Gateway hides the function's error from the client
            request.context["integrationErrorMessage"] = str(result.get("errorType", "error"))
            return _message(500, "Internal Server Error")
        try:
            status, out_headers, cookies, data = to_http_response(result)
        except (ValueError, TypeError):
            return _message(500, "Internal Server Error")
        if self.cors:
            out_headers = {**self._cors_headers(), **out_headers}
        return status, out_headers, cookies, data

    def _cors_headers(self) -> dict[str, str]:
        c = self.cors or {}
        headers = {"access-control-allow-origin": ",".join(c.get("AllowOrigins") or ["*"])}
        if c.get("AllowMethods"):
            headers["access-control-allow-methods"] = ",".join(c["AllowMethods"])
        if c.get("AllowHeaders"):
            headers["access-control-allow-headers"] = ",".join(c["AllowHeaders"])
        return headers

    # -- HTTP ----------------------------------------------------------------------------------
    def wsgi(self, environ: dict, start_response: Any) -> list[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:
            status, headers, cookies, data = _message(400, "Bad Request")
        elif length > MAX_BODY_BYTES:
            status, headers, cookies, data = _message(413, "Request Entity Too Large")
        else:
            body = environ["wsgi.input"].read(length) if length else b""
            target = environ.get("REQUEST_URI") or _target(environ)  # as sent: routes match encoded
            status, headers, cookies, data = self.handle(
                environ["REQUEST_METHOD"], target, _headers(environ), body, environ.get("REMOTE_ADDR", "")
            )
        out = [(k, v) for k, v in headers.items() if k.lower() not in _HOP_BY_HOP]
        out += [("Set-Cookie", c) for c in cookies]
        out.append(("Content-Length", str(len(data))))
        start_response(f"{status} {_REASONS.get(status, 'Status')}", out)
        return [data]

    def serve(self, host: str = "127.0.0.1", port: int = 3000, threads: int = 48) -> str:
        # More threads than the account's Lambda concurrency, so that invocations past it reach
        # the runner and are throttled as in AWS instead of queueing in the server.
        self._server = WsgiServer(
            self.wsgi, host, port, threads=threads, connection_limit=256, idle_timeout=10, name="http-api"
        ).start()
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=0.5)
        if self.access_log is not None:
            self.access_log.close()


_HOP_BY_HOP = ("content-length", "connection", "transfer-encoding")
_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 413: "Request Entity Too Large", 422: "Unprocessable Entity",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}  # fmt: skip


def _target(environ: dict) -> str:
    from urllib.parse import quote

    path = quote(
        environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace"), safe="/%:@!$&'()*+,;="
    )
    query = environ.get("QUERY_STRING")
    return f"{path}?{query}" if query else path


def _headers(environ: dict) -> _HeaderList:
    headers = _HeaderList(
        (k[5:].replace("_", "-").lower(), v) for k, v in environ.items() if k.startswith("HTTP_")
    )
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers.append((key.replace("_", "-").lower(), environ[key]))
    return headers


class _HeaderList(list):
    def items(self):
        return iter(self)


class AccessLog:
    """The stage's access log: one line per request, the template's Format with $context variables."""

    def __init__(self, path: Path, fmt: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._format = " ".join(fmt.split())
        self._lock = threading.Lock()

    def write(self, request: Request, status: int) -> None:
        values = {
            "requestId": request.request_id,
            "identity.sourceIp": request.source_ip,
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(request.started)),
            "routeKey": request.route.route_key if request.route else "-",
            "status": str(status),
            "responseLatency": str(round((time.time() - request.started) * 1000)),
            "httpMethod": request.method,
            "path": request.path,
            **{k: str(v) for k, v in request.context.items()},
        }
        line = re.sub(
            r"\$context\.([A-Za-z.]+)", lambda m: _log_text(values.get(m.group(1), "-")), self._format
        )
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _log_text(value: str) -> str:
    return json.dumps(value)[1:-1]  # inside the format's quotes: JSON-escaped
