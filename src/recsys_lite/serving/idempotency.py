"""Answers kept by ``Idempotency-Key``, so a client retrying a write after a lost answer gets
the first answer back instead of a second copy of its events.

Bounded in count and age: an attacker sending fresh keys costs at most ``max_entries``
answers, and a key is honoured for ``ttl_seconds`` (long enough for any client's retries).
Kept per process (``IdempotentAnswers``), a retry that lands on another process is still made
harmless by the store, which holds an event once (same user, item, time, quantity and type) when
the client sent the event's time; with the online state in Redis they are kept there
(``RedisIdempotentAnswers``), so any process answers a retry with the first answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
MAX_KEY_LENGTH = 256


class IdempotentAnswers:
    def __init__(
        self,
        max_entries: int = 10_000,
        ttl_seconds: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._answers: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: str | None) -> dict[str, Any] | None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        found = self._answers.get(key)
        if found is None:
            return None
        stored_at, answer = found
        if self._clock() - stored_at > self.ttl_seconds:
            del self._answers[key]
            return None
        return answer

    def put(self, key: str | None, answer: dict[str, Any]) -> None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return
        self._answers[key] = (self._clock(), answer)
        self._answers.move_to_end(key)
        while len(self._answers) > self.max_entries:
            self._answers.popitem(last=False)


class RedisIdempotentAnswers:
    """The same, in Redis under ``prefix``: each answer a key with the TTL (``SET EX``), so
    Redis's own expiry and eviction bound them. A Redis that cannot be reached answers no
    retry from here (the store still holds each event once)."""

    def __init__(self, client: Any, prefix: str, ttl_seconds: int = 24 * 3600) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds

    def get(self, key: str | None) -> dict[str, Any] | None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return None
        try:
            found = self.client.get(f"{self.prefix}answer:{key}")
        except Exception as exc:
            log.warning("idempotent answers unreadable in Redis (%s)", exc)
            return None
        answer: dict[str, Any] | None = None if found is None else json.loads(found)
        return answer

    def put(self, key: str | None, answer: dict[str, Any]) -> None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return
        try:
            self.client.set(f"{self.prefix}answer:{key}", json.dumps(answer), ex=self.ttl_seconds)
        except Exception as exc:
            log.warning("idempotent answer not kept in Redis (%s)", exc)
