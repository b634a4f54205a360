"""The API's spooled batches reach the store in few transactions, and a bad one alone is
rejected."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from recsys_lite.data.store import Store
from recsys_lite.data.validation import validate_events
from recsys_lite.online import inbox as inbox_module
from recsys_lite.online.inbox import REJECTED, Inbox, drain


def batch(n: int, qty: str = "1") -> pa.Table:
    raw = pa.table(
        {
            "user_id": [f"drain-{n}"] * 2,
            "item_id": ["I00001", "I00002"],
            "ts": ["1700000000", "1700000001"],
            "qty": [qty] * 2,
        }
    )
    return validate_events(raw) if qty == "1" else raw


def stored(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM events WHERE user_id LIKE 'drain-%'").fetchone()
    return int(row[0]) if row else 0


@pytest.fixture
def spool(shop_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    db = tmp_path / "shop.db"
    shutil.copy(shop_db, db)
    transactions: list[int] = []
    ingest = inbox_module.ingest

    def counted(store: Store, events: Any = None, items: Any = None, **kwargs: Any) -> Any:
        transactions.append(len(events) if isinstance(events, list) else 1)
        return ingest(store, events, items, **kwargs)

    monkeypatch.setattr(inbox_module, "ingest", counted)
    return db, Inbox(tmp_path / "inbox"), transactions


def test_many_spooled_batches_go_in_one_transaction(spool: Any) -> None:
    db, inbox, transactions = spool
    for n in range(30):
        inbox.write(batch(n))
    report = drain(Store(db), inbox)
    assert len(report.files) == 30 and report.events_added == 60
    assert transactions == [30]
    assert stored(db) == 60
    assert drain(Store(db), inbox).files == []  # exactly once


def test_a_bad_spooled_file_is_rejected_alone(spool: Any) -> None:
    db, inbox, transactions = spool
    for n in range(5):
        inbox.write(batch(n))
    bad = inbox.write(batch(99, qty="-3"))
    for n in range(5, 10):
        inbox.write(batch(n))
    report = drain(Store(db), inbox)
    assert report.rejected == [bad.name]
    assert len(report.files) == 10 and stored(db) == 20
    assert transactions[0] == 11 and len(transactions) == 12  # the batch, then one by one
    assert (inbox.folder / REJECTED / bad.name).is_file()
