"""HTTP for the three Personalize protocols on one port.

- personalize (json 1.1): `POST /`, `X-Amz-Target: AmazonPersonalize.<Operation>`; errors are
  HTTP 400 with `{"__type": "<Exception>", "message": ...}`.
- personalize-runtime and personalize-events (rest-json): `POST /recommendations`,
  `/personalize-ranking`, `/events`, `/items`, `/users`, ...; errors carry the status the service
  model gives the exception, `x-amzn-ErrorType: <Exception>` and `{"message": ...}`.
Anything unexpected inside becomes a 500 with a message, never a dropped connection. The HTTP
server is the stack's bounded one (local/wsgi_server.py): a fixed pool of threads, whatever the
number of clients.
"""

from __future__ import annotations

import json
import logging
import uuid
from http import HTTPStatus

from local.iam.authorizer import Authorizer, caller_key
from local.personalize import access
from local.personalize.engine import Engine
from local.personalize.errors import ApiError, InvalidInput, UnknownOperation
from local.personalize.protocol import error_status, rest_routes
from local.wsgi_server import WsgiServer, request_headers

log = logging.getLogger("local.personalize")
TARGET_PREFIX = "AmazonPersonalize."
MAX_BODY = 16 * 1024 * 1024
REST_SERVICES = ("personalize-runtime", "personalize-events")


def _route(path: str, target: str | None) -> tuple[str, str]:
    path = path.split("?", 1)[0]
    if path == "/" and target:
        if not target.startswith(TARGET_PREFIX):
            raise UnknownOperation(f"X-Amz-Target {target!r} is not an AmazonPersonalize operation.")
        return "personalize", target[len(TARGET_PREFIX) :]
    for service in REST_SERVICES:
        operation = rest_routes(service).get(path)
        if operation:
            return service, operation
    raise UnknownOperation(
        f"No operation at POST {path}; the engine serves /, /recommendations, /personalize-ranking, /events, /items, /users."
    )


class PersonalizeApp:
    """The three protocols as one WSGI app over an engine."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.authorizer: Authorizer | None = None  # IAM: the stack's roles decide each call

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        if method != "POST":
            return self._error(start_response, "personalize-runtime", "UnknownOperationException",
                               f"No operation at {method} {path}.", 404)  # fmt: skip
        service = "personalize" if path == "/" else "personalize-runtime"
        try:
            body = _body(environ)
            service, operation = _route(path, environ.get("HTTP_X_AMZ_TARGET"))
            access.check(self.authorizer, self.engine, caller_key(request_headers(environ)), operation, body)
            result = self.engine.call(service, operation, body)
            return _send(start_response, 200, service, result)
        except ApiError as exc:
            return self._error(start_response, service, exc.code, exc.message)
        except Exception as exc:  # a bug: say so, keep the connection usable
            log.exception("unhandled error")
            return self._error(
                start_response,
                service,
                "InternalServerError",
                f"Internal error in the local engine: {exc}",
                500,
            )

    @staticmethod
    def _error(
        start_response, service: str, code: str, message: str, status: int | None = None
    ) -> list[bytes]:
        if service == "personalize":
            return _send(start_response, status or 400, service, {"__type": code, "message": message})
        status = status or error_status(service, code)
        return _send(start_response, status, service, {"message": message}, {"x-amzn-ErrorType": code})


def _body(environ: dict):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidInput("Content-Length must be a number.") from None
    if length > MAX_BODY:
        raise InvalidInput(f"The request body is larger than {MAX_BODY} bytes.")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"The request body is not valid JSON: {exc}.") from None


def _send(
    start_response, status: int, service: str, payload: dict, headers: dict | None = None
) -> list[bytes]:
    data = json.dumps(payload).encode()
    ctype = "application/x-amz-json-1.1" if service == "personalize" else "application/json"
    out = [
        ("Content-Type", ctype),
        ("Content-Length", str(len(data))),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]
    out += list((headers or {}).items())
    start_response(f"{status} {HTTPStatus(status).phrase}", out)
    return [data]


class PersonalizeServer:
    """The engine behind one HTTP port. `start()` returns once it accepts connections."""

    def __init__(self, data_dir: str, host: str = "127.0.0.1", port: int = 0, threads: int = 16):
        self.data_dir, self.host, self.port, self.threads = data_dir, host, port, threads
        self.engine: Engine | None = None
        self._httpd: WsgiServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> PersonalizeServer:
        app = PersonalizeApp(None)
        # bind first: a busy port leaves nothing running
        httpd = WsgiServer(app, self.host, self.port, threads=self.threads, name="personalize")
        try:
            self.engine = app.engine = Engine(self.data_dir)
        except BaseException:
            httpd.stop(0)
            raise
        app.authorizer = Authorizer.from_env()  # the stack's roles (LOCAL_IAM_ROLES_FILE), if any
        self._httpd = httpd.start()
        self.port = httpd.port
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.stop(timeout=1.0)  # drops kept-alive connections: no client talks to a stopped engine
            self._httpd = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
