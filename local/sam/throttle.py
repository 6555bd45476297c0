"""API Gateway's request throttling: a token bucket per route (rate and burst from the stage).

"API Gateway throttles requests to your API using the token bucket algorithm, where a token
counts for a request"; the burst is the bucket's size and the rate refills it; past both, clients
receive 429 Too Many Requests
(https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`burst` tokens at most, refilled at `rate` per second; `take()` is False when empty."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._clock = float(rate), int(burst), clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False


class RouteThrottle:
    """The stage's default limits for every route, overridden per route key (RouteSettings)."""

    def __init__(self, default: dict | None, per_route: dict[str, dict] | None = None):
        self._default = _limits(default)
        self._per_route = {
            key: _limits({**(default or {}), **value}) for key, value in (per_route or {}).items()
        }
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def allow(self, route_key: str) -> bool:
        limits = self._per_route.get(route_key, self._default)
        if limits is None:
            return True
        with self._lock:
            bucket = self._buckets.get(route_key)
            if bucket is None:
                bucket = self._buckets[route_key] = TokenBucket(*limits)
        return bucket.take()


def _limits(settings: dict | None) -> tuple[float, int] | None:
    """(rate, burst) from ThrottlingRateLimit / ThrottlingBurstLimit; None when neither is set."""
    settings = settings or {}
    rate, burst = settings.get("ThrottlingRateLimit"), settings.get("ThrottlingBurstLimit")
    if rate in (None, "") and burst in (None, ""):
        return None
    rate = float(rate) if rate not in (None, "") else float(burst)
    burst = int(float(burst)) if burst not in (None, "") else max(1, int(rate))
    return rate, burst
