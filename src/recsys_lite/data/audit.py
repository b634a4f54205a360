"""An append-only, hash-chained log of privacy and admin actions, kept beside the store.

It is written by erasure, export and retention (``privacy/``), by training jobs, the worker and
experiment promotion, so it sits in the data layer that all of them build on.

Each line is one JSON entry: its number, time, action, who (the API key's name, or ``cli``),
the subject as a keyed hash (never a raw id), the outcome and a few counts, plus the hash of
the previous entry and its own hash over all of that. Editing, removing, inserting or
reordering an entry breaks the chain at that point, which ``verify`` reports; the head (the last
hash) printed by ``recsys-lite gdpr verify-audit`` can be recorded elsewhere, so that even
rewriting the whole file from the edit onwards is caught. No event data is ever written here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.jsonl"
GENESIS = "0" * 64


def audit_path(db_path: Path) -> Path:
    return db_path.parent / AUDIT_FILE


def _entry_hash(entry: dict[str, Any]) -> str:
    body = {key: value for key, value in entry.items() if key != "hash"}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    head: str
    problem: str | None = None


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(
        self,
        action: str,
        *,
        actor: str,
        subject: str | None = None,
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add one entry, durably, under an exclusive lock (several processes may write)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                handle.seek(0)
                last = None
                for line in handle:
                    if line.strip():
                        last = line
                previous = json.loads(last) if last else None
                entry: dict[str, Any] = {
                    "seq": previous["seq"] + 1 if previous else 1,
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "action": action,
                    "actor": actor,
                    "subject": subject,
                    "outcome": outcome,
                    "details": details or {},
                    "prev": previous["hash"] if previous else GENESIS,
                }
                entry["hash"] = _entry_hash(entry)
                handle.write(json.dumps(entry, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def about(self, subject: str) -> list[dict[str, Any]]:
        return [entry for entry in self.entries() if entry.get("subject") == subject]

    def verify(self) -> Verification:
        previous_hash, expected_seq = GENESIS, 1
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
            except ValueError:
                return Verification(False, number - 1, previous_hash, f"line {number}: not JSON")
            if entry.get("seq") != expected_seq:
                return Verification(
                    False, number - 1, previous_hash,
                    f"line {number}: entry {entry.get('seq')} where {expected_seq} was expected"
                    " (an entry was removed, inserted or moved)",
                )  # fmt: skip
            if entry.get("prev") != previous_hash:
                return Verification(
                    False, number - 1, previous_hash,
                    f"line {number}: does not follow the entry before it",
                )  # fmt: skip
            if entry.get("hash") != _entry_hash(entry):
                return Verification(
                    False, number - 1, previous_hash, f"line {number}: edited after it was written"
                )
            previous_hash, expected_seq = entry["hash"], expected_seq + 1
        return Verification(True, len(lines), previous_hash)
