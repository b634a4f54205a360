"""Serving steps that need the store, retried while another process holds it.

DuckDB lets one process write a file at a time, and an ingest or a retrain may hold it for
minutes. A step that meets a busy store (reading the catalog at start-up, or for a new
artifact) is tried again after a wait that doubles, and reported in /ready and /status
meanwhile; giving up after one lock wait stopped the server from starting, and left a new
artifact unserved until the next one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

ATTEMPT_SECONDS = 2.0  # how long one attempt waits for the store's lock
FIRST_WAIT = 0.5
MAX_WAIT = 15.0


@dataclass
class StoreWait:
    attempts: int = 0  # failed in a row
    last_error: str | None = None
    waiting_since: float | None = None  # wall-clock time of the first failure
    next_attempt_at: float = 0.0  # monotonic

    @property
    def waiting(self) -> bool:
        return self.attempts > 0

    def due(self) -> bool:
        return time.monotonic() >= self.next_attempt_at

    def failed(self, error: BaseException) -> float:
        """Record a failed attempt; returns the seconds until the next one."""
        self.attempts += 1
        self.last_error = str(error)[:500]
        if self.waiting_since is None:
            self.waiting_since = time.time()
        wait = min(FIRST_WAIT * 2.0 ** (self.attempts - 1), MAX_WAIT)
        self.next_attempt_at = time.monotonic() + wait
        return wait

    def succeeded(self) -> None:
        self.attempts, self.last_error, self.waiting_since = 0, None, None
        self.next_attempt_at = 0.0

    def report(self) -> dict[str, Any] | None:
        """None when nothing is waiting for the store."""
        if not self.waiting:
            return None
        return {
            "attempts": self.attempts,
            "waiting_since": self.waiting_since,
            "next_attempt_in": round(max(0.0, self.next_attempt_at - time.monotonic()), 1),
            "last_error": self.last_error,
        }
