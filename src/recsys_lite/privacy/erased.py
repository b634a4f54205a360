"""What an API process knows about erased shoppers: their keyed hashes and when each was
erased, so that events from before the erasure (a late bus message, a retried request) never
bring one back. Events after it are a returning shopper's new history and are kept."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

from recsys_lite.data.store import Store
from recsys_lite.data.subjects import load_key, subject_hash
from recsys_lite.models.base import Recommender

SUBJECT_PREFIX = 16  # hex characters of a shopper's keyed hash kept to find their row


class ErasedShoppers:
    def __init__(self, db_path: Path, erased: dict[str, int] | None = None) -> None:
        self.db_path = db_path
        self._erased = dict(erased or {})
        self._key: str | None = None
        # per model: the prefix of each user's hash -> user id. Kept for every model still
        # alive, so forgetting in the served model while a new one loads (which builds its
        # own) costs neither model its lookup.
        self._lookups: weakref.WeakKeyDictionary[Recommender, dict[str, str]] = (
            weakref.WeakKeyDictionary()
        )
        self._lookups_lock = threading.Lock()  # a swap builds one in a thread

    @classmethod
    def from_store(cls, store: Store) -> ErasedShoppers:
        if not store.path.exists():
            return cls(store.path)
        with store.connect(read_only=True) as con:
            rows = con.execute("SELECT subject, erased_at FROM erased_subjects").fetchall()
        return cls(store.path, {subject: int(at) for subject, at in rows})

    def __len__(self) -> int:
        return len(self._erased)

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = load_key(self.db_path)
        return self._key

    def add(self, subjects: list[str], erased_at: int) -> None:
        for subject in subjects:
            self._erased[subject] = max(erased_at, self._erased.get(subject, 0))

    def subjects(self) -> set[str]:
        return set(self._erased)

    def subject(self, user_id: str) -> str:
        return subject_hash(self.key, user_id)

    def rows_in(self, model: Recommender, subjects: Iterable[str]) -> list[int]:
        """The model's rows of these shoppers, found by hash."""
        lookup = self._lookup(model)
        rows = []
        for subject in subjects:
            user = lookup.get(subject[:SUBJECT_PREFIX])
            if user is not None and self.subject(user) == subject:
                row = model.user_map.get(user)
                if row is not None:
                    rows.append(int(row))
        return rows

    def _lookup(self, model: Recommender) -> dict[str, str]:
        """Hashing every id a model knows takes a while (0.1 s per 50k, several times that on
        a busy machine), so it is done once per model: when the first erasure reaches it, or
        while it loads if this process has seen one. An id another live model's lookup holds
        is not hashed again: each erasure publishes a new version of the model, with all but
        the erased users, that every process loads."""
        with self._lookups_lock:
            lookup = self._lookups.get(model)
            others = list(self._lookups.values())
        if lookup is not None:
            return lookup
        known = {user: prefix for other in others for prefix, user in other.items()}
        lookup = {
            known.get(user) or self.subject(user)[:SUBJECT_PREFIX]: user
            for user in model.user_map.ids.tolist()
        }
        with self._lookups_lock:
            self._lookups[model] = lookup
        return lookup

    def drop_erased(self, events: pa.Table) -> pa.Table:
        """The events, less those of erased shoppers from before their erasure."""
        if not self._erased or not events.num_rows:
            return events
        users = events.column("user_id").to_pylist()
        stamps = events.column("ts").to_pylist()
        keep = [
            (at := self._erased.get(self.subject(str(user)))) is None or ts > at
            for user, ts in zip(users, stamps, strict=True)
        ]
        return events if all(keep) else events.filter(pa.array(keep))
