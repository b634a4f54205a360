"""Keyed hashes of shopper ids: how erasure records and audit entries name a shopper without
holding the id itself.

The key is a random secret kept beside the store (``privacy.key``, readable by the owner only)
and never leaves the machine, so a hash cannot be reversed by hashing guessed ids. The hash is
SHA-256 over the key followed by the id, computed alike in Python and in DuckDB's SQL
(``sha256``), so ingestion can drop a tombstoned shopper's rows without a round trip through
Python. Destroying the key makes every recorded hash meaningless.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

KEY_FILE = "privacy.key"


def key_path(db_path: Path) -> Path:
    return db_path.parent / KEY_FILE


def load_key(db_path: Path) -> str:
    """The store's privacy key, created on first use."""
    path = key_path(db_path)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    try:
        os.link(temporary, path)  # fails if another process created it first: use theirs
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return path.read_text().strip()


def subject_hash(key: str, user_id: str) -> str:
    return hashlib.sha256((key + user_id).encode()).hexdigest()


def subject_hash_sql(key: str, column: str) -> str:
    """The same hash as SQL over a text column (the key is hex, so it quotes safely)."""
    assert all(c in "0123456789abcdef" for c in key)
    return f"sha256('{key}' || {column})"
