"""The worker's report of its own health, written after every cycle and read by the API."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class WorkerHealth:
    """What the worker reports after each cycle (``Settings.worker_status_file``): the API shows
    it in /ready and /metrics, so a failing retrain is visible while the old model serves."""

    path: Path
    cycles: int = 0
    failures_total: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_failure_at: float | None = None
    last_success_at: float | None = None
    last_decision: str | None = None
    next_retry_in: float | None = None
    decisions: dict[str, int] = field(default_factory=dict)  # cycles by outcome, for /metrics
    last_retrain_seconds: float | None = None

    def succeeded(self, decision: str, seconds: float | None = None) -> None:
        self.cycles += 1
        self.consecutive_failures = 0
        self.last_success_at = time.time()
        self.last_decision = decision
        self.decisions[decision] = self.decisions.get(decision, 0) + 1
        if decision != "waiting" and seconds is not None:
            self.last_retrain_seconds = seconds
        self.next_retry_in = None
        self._write()

    def failed(self, error: BaseException, retry_in: float) -> None:
        self.cycles += 1
        self.failures_total += 1
        self.consecutive_failures += 1
        self.last_error = f"{type(error).__name__}: {error}"[:500]
        self.last_failure_at = time.time()
        self.next_retry_in = retry_in
        self._write()

    def _write(self) -> None:
        report = {k: v for k, v in vars(self).items() if k != "path"}
        report["pid"] = os.getpid()
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps(report))
        os.replace(temporary, self.path)


def read_worker_health(path: Path) -> dict[str, Any] | None:
    try:
        report: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report
