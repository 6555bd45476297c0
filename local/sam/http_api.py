"""The template's HTTP API on loopback: routes from HttpApi events, API Gateway payload 2.0.

Requests become the same event API Gateway sends a Lambda (payload format 2.0), and the
handler's result is mapped back as API Gateway does: a dict with statusCode is taken as
is; anything else is a 200 with the value as JSON. Unknown routes are 404, handler crashes
500 with API Gateway's bodies, so clients see what they would see in AWS.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.sam.lambda_runner import LambdaRunner

MAX_BODY_BYTES = 10 * 1024 * 1024  # HTTP API's payload limit
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


@dataclass
class Route:
    method: str  # "GET", ..., or "ANY"
    path: str  # "/users/{userId}/recommendations", "/{proxy+}", or "$default"
    function: str
    pattern: re.Pattern
    specificity: tuple

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
            routes.append(make_route(method, props.get("Path", "$default"), spec.name))
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


class HttpApi:
    def __init__(
        self,
        runner: LambdaRunner,
        api_id: str = "localapi",
        cors: dict | None = None,
        stage: str | None = None,
        authorizer=None,  # local.sam.api_auth.ApiAuthorizer: the routes' IAM / JWT authorizers
    ):
        self.runner = runner
        self.authorizer = authorizer
        self.stage = None if stage in (None, "", "$default") else stage
        self.routes = routes_from_specs(runner)
        self.api_id = api_id
        self.cors = cors
        self._server: ThreadingHTTPServer | None = None

    def handle(self, method: str, target: str, headers, body: bytes, source_ip: str = "127.0.0.1"):
        parts = urlsplit(target)
        path = parts.path
        if self.stage and (path == f"/{self.stage}" or path.startswith(f"/{self.stage}/")):
            path = path[len(self.stage) + 1 :] or "/"  # a named stage prefixes every route
        found = match(self.routes, method, path)
        if found is None:
            if method == "OPTIONS" and self.cors:
                return 204, self._cors_headers(), [], b""
            if method == "GET" and path == "/health":  # the template declares none: the stack answers
                return (
                    200,
                    {"content-type": "application/json"},
                    [],
                    b'{"status": "ok", "source": "local-stack"}',
                )
            return 404, {"content-type": "application/json"}, [], b'{"message":"Not Found"}'
        route, params = found
        if len(body) > MAX_BODY_BYTES:
            return 413, {"content-type": "application/json"}, [], b'{"message":"Request Entity Too Large"}'
        # An HTTP API hands the function the path and its parameters percent-decoded ("%20" -> " ");
        # routes match on the encoded path, so "%2F" stays inside one parameter.
        params = {k: unquote(v) for k, v in params.items()}
        # Authorization runs after routing and before the integration, as in API Gateway.
        decision = self.authorizer.check(route, method, target, headers, body) if self.authorizer else None
        if isinstance(decision, tuple):
            return decision  # refused with API Gateway's answer
        event = build_event(
            route, params, method, unquote(parts.path), parts.query, headers, body, self.api_id, source_ip
        )
        if decision:
            event["requestContext"]["authorizer"] = decision
        ok, result = self.runner.invoke(route.function, event)
        if not ok:  # API Gateway hides the function's error from the client
            return 500, {"content-type": "application/json"}, [], b'{"message":"Internal Server Error"}'
        try:
            status, out_headers, cookies, data = to_http_response(result)
        except (ValueError, TypeError):
            return 500, {"content-type": "application/json"}, [], b'{"message":"Internal Server Error"}'
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

    def serve(self, host: str = "127.0.0.1", port: int = 3000) -> str:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle holds the body until
                # the client's delayed ACK (~40 ms on every response)
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0:
                    status, headers, cookies, data = 400, {}, [], b'{"message":"Bad Request"}'
                    self.close_connection = True
                elif length > MAX_BODY_BYTES:
                    status, headers, cookies, data = 413, {}, [], b'{"message":"Request Entity Too Large"}'
                    self.close_connection = True
                else:
                    body = self.rfile.read(length)
                    try:
                        status, headers, cookies, data = api.handle(
                            self.command, self.path, self.headers, body, self.client_address[0]
                        )
                    except Exception:  # a defect of the stack itself: still a JSON answer, logged
                        traceback.print_exc()
                        status, headers, cookies = 500, {"content-type": "application/json"}, []
                        data = b'{"message":"Internal Server Error"}'
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                for cookie in cookies:
                    self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _any

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://{host}:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
