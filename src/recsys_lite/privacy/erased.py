"""What an API process knows about erased shoppers: their keyed hashes and when each was
erased, so that events from before the erasure (a late bus message, a retried request) never
bring one back. Events after it are a returning shopper's new history and are kept."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from recsys_lite.data.store import Store
from recsys_lite.data.subjects import load_key, subject_hash


class ErasedShoppers:
    def __init__(self, db_path: Path, erased: dict[str, int] | None = None) -> None:
        self.db_path = db_path
        self._erased = dict(erased or {})
        self._key: str | None = None

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
