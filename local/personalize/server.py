"""HTTP for the three Personalize protocols on one port.

- personalize (json 1.1): `POST /`, `X-Amz-Target: AmazonPersonalize.<Operation>`; errors are
  HTTP 400 with `{"__type": "<Exception>", "message": ...}`.
- personalize-runtime and personalize-events (rest-json): `POST /recommendations`,
  `/personalize-ranking`, `/events`, `/items`, `/users`, ...; errors carry the status the service
  model gives the exception, `x-amzn-ErrorType: <Exception>` and `{"message": ...}`.
Anything unexpected inside becomes a 500 with a message, never a dropped connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from local.iam.authorizer import Authorizer, caller_key
from local.personalize import access
from local.personalize.engine import Engine
from local.personalize.errors import ApiError, InvalidInput, UnknownOperation
from local.personalize.protocol import error_status, rest_routes

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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects
    server_version = "LocalPersonalize/1.0"

    def setup(self):
        super().setup()
        # Headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm waits for
        # the client's delayed ACK and every response takes ~40 ms instead of < 1 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        service = "personalize" if self.path.split("?", 1)[0] == "/" else "personalize-runtime"
        try:
            body = self._body()
            service, operation = _route(self.path, self.headers.get("X-Amz-Target"))
            engine = self.server.engine
            access.check(self.server.authorizer, engine, caller_key(self.headers), operation, body)
            result = engine.call(service, operation, body)
            self._send(200, service, result)
        except ApiError as exc:
            self._error(service, exc.code, exc.message)
        except (BrokenPipeError, ConnectionResetError):
            # The caller gave up (serving Lambdas have a time budget): nothing to answer.
            self.close_connection = True
        except Exception as exc:  # a bug: say so, keep the connection usable
            log.exception("unhandled error")
            self._error(service, "InternalServerError", f"Internal error in the local engine: {exc}", 500)

    def do_GET(self):
        self._drain()
        self._error(
            "personalize-runtime", "UnknownOperationException", f"No operation at GET {self.path}.", 404
        )

    do_PUT = do_DELETE = do_PATCH = do_GET

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if 0 < length <= MAX_BODY:
            self.rfile.read(length)

    def _body(self):
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise InvalidInput("Content-Length must be a number.") from None
        if length > MAX_BODY:
            self.close_connection = True
            raise InvalidInput(f"The request body is larger than {MAX_BODY} bytes.")
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"The request body is not valid JSON: {exc}.") from None

    def _send(self, status: int, service: str, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        ctype = "application/x-amz-json-1.1" if service == "personalize" else "application/json"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, service: str, code: str, message: str, status: int | None = None) -> None:
        if service == "personalize":
            self._send(status or 400, service, {"__type": code, "message": message})
        else:
            status = status or error_status(service, code)
            self._send(status, service, {"message": message}, {"x-amzn-ErrorType": code})

    def log_message(self, format, *args):  # quiet: one line per request would drown the stack's output
        log.debug("%s - %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(self, request, client_address):
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Drop kept-alive connections, so no client keeps talking to a stopped engine."""
        with self.connections_lock:
            for connection in list(self.connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class PersonalizeServer:
    """The engine behind one HTTP port. `start()` returns once it accepts connections."""

    def __init__(self, data_dir: str, host: str = "127.0.0.1", port: int = 0):
        self.data_dir, self.host, self.port = data_dir, host, port
        self.engine: Engine | None = None
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> PersonalizeServer:
        httpd = _Server((self.host, self.port), Handler)  # bind first: a busy port leaves nothing running
        try:
            self.engine = Engine(self.data_dir)
        except BaseException:
            httpd.server_close()
            raise
        self._httpd, httpd.engine = httpd, self.engine
        httpd.authorizer = Authorizer.from_env()  # the stack's roles (LOCAL_IAM_ROLES_FILE), if any
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="personalize-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd.close_connections()
            self._httpd = None
        if self.engine is not None:
            self.engine.close()
            self.engine = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
