"""The Redis client of the shared online state, and how its readers step aside while Redis is
away."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def client_for(url: str) -> Any:
    """One client (one connection pool) per process and server, shared by every state. It fails
    fast: redis-py's default retries would hold a request for seconds while Redis is away."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    with _clients_lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(
                url, socket_connect_timeout=0.5, socket_timeout=1.0, retry=Retry(NoBackoff(), 1)
            )
        return _clients[url]


class Pause:
    """After a failed call, callers skip Redis for a second instead of each waiting for it."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self._until = 0.0

    @property
    def active(self) -> bool:
        return time.monotonic() < self._until

    def failed(self, what: str, exc: Exception) -> None:
        log.warning("%s: Redis failed (%s); skipped for %.0f s", what, exc, self.seconds)
        self._until = time.monotonic() + self.seconds
