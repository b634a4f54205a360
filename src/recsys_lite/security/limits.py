"""Token-bucket rate limits with a bounded number of tracked clients.

Each client (an IP, a key name, a shopper id) has a bucket of ``burst`` tokens refilled at
``rate`` per second; a request takes one token or is refused with the seconds until one is
back (``Retry-After``). Buckets live in an LRU of at most ``max_clients`` entries, so a flood
of distinct clients costs bounded memory: an evicted client comes back with a full bucket,
which errs towards letting a rare client through rather than towards unbounded growth.
Limits are per process; with several API processes each enforces its own.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: float,
        max_clients: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, client: str, cost: float = 1.0) -> float:
        """0.0 when the request may go ahead, else the seconds until it could."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        tokens, last = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait: float) -> str:
    """The ``Retry-After`` header value: whole seconds, at least one."""
    return str(max(1, math.ceil(wait)))
