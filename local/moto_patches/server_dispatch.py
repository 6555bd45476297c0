"""Find each request's backend once per host in moto's server.

moto's server picks the backend of every request in `DomainDispatcherApplication.get_backend_for_host`,
under one lock shared by all requests: it lists moto's package folder (`list_of_moto_modules`:
a directory listing and ~150 stat calls) and tries every service's URL patterns against the host.
Under a burst that serialised lookup was a tenth of the stack's CPU. The answer depends on the host
alone (the patterns and the folder do not change while the server runs), so it is remembered.
"""

from __future__ import annotations

from typing import Any

from local.moto_patches import require

_backends: dict[str | None, Any] = {}  # host -> backend name (None: none matched)
MAX_HOSTS = 1000  # hosts are few (service endpoints, loopback ports): a bound against the unexpected
_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    require(DomainDispatcherApplication, "get_backend_for_host")
    original = DomainDispatcherApplication.get_backend_for_host

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        if host in _backends:
            return _backends[host]
        backend = original(self, host)
        if len(_backends) < MAX_HOSTS:
            _backends[host] = backend
        return backend

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host
    _installed = True
