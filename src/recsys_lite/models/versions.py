"""Versions of a served artifact: each one its own directory, the served path a symlink.

For a served path ``artifacts/current``::

    artifacts/current.versions/20261207T110519.123456Z-1a2b/   one complete artifact
    artifacts/current -> current.versions/20261207T110519.123456Z-1a2b

Switching versions renames a new symlink over the old one, so the served path always names a
complete artifact; renaming one directory over another cannot be done in one step, and left
a moment when the path named nothing. The newest ``KEEP_VERSIONS`` are kept to roll back to.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path

from recsys_lite.errors import ArtifactError
from recsys_lite.files import fsync_directory

KEEP_VERSIONS = 3
VERSIONS_SUFFIX = ".versions"


def versions_folder(served: Path) -> Path:
    return served.parent / f"{served.name}{VERSIONS_SUFFIX}"


def new_version_id() -> str:
    """Sorts by creation time (to the microsecond), so the name order is the history."""
    now = time.time_ns()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000))
    return f"{stamp}.{now // 1000 % 1_000_000:06d}Z-{secrets.token_hex(2)}"


def served_version(served: Path) -> str | None:
    """The version the served path points at (None for a plain, pre-versions directory)."""
    if not served.is_symlink():
        return None
    return Path(os.readlink(served)).name


def list_versions(served: Path) -> list[str]:
    """Complete versions, oldest first."""
    folder = versions_folder(served)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def publish_version(staging: Path, served: Path, version: str) -> Path:
    """Move a complete artifact directory in as ``version`` and serve it."""
    folder = versions_folder(served)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / version
    os.replace(staging, final)
    fsync_directory(folder)
    switch_to(served, version)
    prune(served)
    return final


def switch_to(served: Path, version: str) -> None:
    """Point the served path at ``version`` in one rename."""
    link = served.parent / f".{served.name}.link-{secrets.token_hex(4)}"
    os.symlink(Path(versions_folder(served).name) / version, link)
    try:
        if served.is_dir() and not served.is_symlink():
            _keep_plain_directory(served)
        os.replace(link, served)
    except BaseException:
        link.unlink(missing_ok=True)
        raise
    fsync_directory(served.parent)


def _keep_plain_directory(served: Path) -> None:
    """An artifact written before versions existed becomes the oldest version (so it can be
    rolled back to). A directory cannot be replaced by a symlink in one rename: this once, the
    path is missing between two renames."""
    try:
        created = json.loads((served / "manifest.json").read_text())["created_at"]
        stamp = str(created).replace("-", "").replace(":", "").rstrip("Z")
    except (OSError, ValueError, KeyError):
        stamp = "00000000T000000"
    folder = versions_folder(served)
    folder.mkdir(parents=True, exist_ok=True)
    os.replace(served, folder / f"{stamp}.000000Z-{secrets.token_hex(2)}")


def prune(served: Path, keep: int = KEEP_VERSIONS) -> None:
    """Delete all but the newest ``keep`` versions, never the one served."""
    current = served_version(served)
    versions = list_versions(served)
    for version in versions[:-keep] if keep else versions:
        if version != current:
            shutil.rmtree(versions_folder(served) / version, ignore_errors=True)


def rollback(served: Path) -> tuple[str, str]:
    """Serve the version before the one served now; returns (from, to)."""
    current, previous = previous_version(served)
    switch_to(served, previous)
    return current, previous


def previous_version(served: Path) -> tuple[str, str]:
    """The version served now and the newest kept one before it."""
    current = served_version(served)
    if current is None:
        raise ArtifactError(
            f"{served}: not a versioned artifact (no {versions_folder(served).name}); nothing"
            " to roll back to"
        )
    earlier = [v for v in list_versions(served) if v < current]
    if not earlier:
        raise ArtifactError(f"{served}: no earlier version than {current} is kept")
    return current, earlier[-1]
