"""One bounded loopback HTTP server for every local endpoint (HTTP API, Lambda Invoke API, moto,
the Personalize engine): a WSGI app on waitress.

Why waitress and not http.server's ThreadingHTTPServer: that server starts a thread per
connection and keeps it while the connection lives, so a burst of short connections grew the
stack to thousands of threads and descriptors. waitress reads requests with one event loop
(poll(), not select(), so no 1024-descriptor ceiling) and runs the app on a fixed pool of
threads; connections beyond `connection_limit` wait in the listen backlog, and idle keep-alive
connections close after `idle_timeout` seconds. TCP_NODELAY is on (waitress' default socket
options), so a response is never held back by Nagle's algorithm waiting for a delayed ACK.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]
# waitress warns on every connection-limit crossing and queue build-up; a local stack under a load
# test would print thousands of lines. The limits are stated in docs/local-stack.md instead.
logging.getLogger("waitress").setLevel(logging.ERROR)


class WsgiServer:
    """`app` on host:port (0: any free port) with `threads` workers and at most
    `connection_limit` open connections. `start()` returns once it accepts connections."""

    def __init__(
        self,
        app: WsgiApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        threads: int = 8,
        connection_limit: int = 100,
        idle_timeout: int = 10,
        lookahead: int = 0,
        name: str = "wsgi",
    ):
        self.name = name
        self._server = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            connection_limit=connection_limit,
            channel_timeout=idle_timeout,
            cleanup_interval=max(1, idle_timeout // 2),
            asyncore_use_poll=True,
            ident=name,
            clear_untrusted_proxy_headers=False,  # keep X-Forwarded-* as the app sent them
            expose_tracebacks=False,
            # > 0: keep reading while the app runs, so environ["waitress.client_disconnected"]
            # tells the app that its client left (moto drops such requests)
            channel_request_lookahead=lookahead,
        )
        self.host = host
        self.port = int(self._server.effective_port)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> WsgiServer:
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-loop", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        # Short polls, so that stop() is seen within ~0.2 s; the loop owns every channel, so it
        # also closes them (waitress' dispatchers are not safe to close from another thread).
        socket_map = self._server._map
        while not self._stopping.is_set() and socket_map:
            wasyncore.loop(timeout=0.2, map=socket_map, use_poll=True, count=1)
        wasyncore.close_all(socket_map)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop accepting, close every connection, give running requests `timeout` seconds."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        else:  # never started: only the listening socket to close
            wasyncore.close_all(self._server._map)
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)

    def stats(self) -> dict[str, Any]:
        """Open connections and pool size (for the load benchmark and tests)."""
        return {
            "connections": max(0, len(self._server._map) - 2),  # minus the listener and the trigger
            "threads": len(self._server.task_dispatcher.threads),
        }


def request_headers(environ: dict) -> dict[str, str]:
    """A WSGI request's headers by lower-case name (CGI's HTTP_X_AMZ_DATE -> x-amz-date)."""
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers
