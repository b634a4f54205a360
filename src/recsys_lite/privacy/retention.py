"""Keeping events no longer than ``EVENT_RETENTION_DAYS`` (off by default).

A retention run deletes older events from the store (and rebuilds its file, as an erasure
does), deletes event files older than the cutoff from the inbox's and the watched folder's
processed/ and rejected/ folders, and records itself in the audit trail. The models forget
those events with the next full retrain, which the worker runs right after a retention run
that deleted anything.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from recsys_lite.config import Settings
from recsys_lite.data.audit import AuditLog, audit_path
from recsys_lite.data.store import Store
from recsys_lite.online.inbox import PROCESSED, REJECTED

SECONDS_PER_DAY = 86_400


def apply_retention(
    settings: Settings, days: float, *, actor: str, now: float | None = None
) -> dict[str, Any]:
    cutoff = int((now if now is not None else time.time()) - days * SECONDS_PER_DAY)
    store = Store(settings.db_path)
    with store.connect() as con:
        (count,) = con.execute("SELECT count(*) FROM events WHERE ts < ?", [cutoff]).fetchone() or (
            0,
        )
        if count:
            con.execute("DELETE FROM events WHERE ts < ?", [cutoff])
    if count:
        store.rebuild()
    folders = [settings.inbox / PROCESSED, settings.inbox / REJECTED]
    if settings.watch_dir is not None:
        folders += [settings.watch_dir / PROCESSED, settings.watch_dir / REJECTED]
    files = _delete_files_before(folders, cutoff)
    report = {
        "days": days,
        "cutoff_ts": cutoff,
        "events_deleted": int(count),
        "files_deleted": files,
    }
    if count or files:  # the worker runs this every cycle: only runs that deleted are recorded
        AuditLog(audit_path(settings.db_path)).append("retention", actor=actor, details=report)
    return report


def _delete_files_before(folders: list[Path], cutoff: int) -> int:
    deleted = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    deleted += 1
            except FileNotFoundError:
                continue
    return deleted
