"""An API process applies each batch of events once, even when the embedded bus (which lists
the inbox folder from another thread) delivers the process's own batch before the process has
noted it as its own."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from conftest import copy_shop
from recsys_lite.config import Settings
from recsys_lite.data.validation import validate_events
from recsys_lite.serving.runtime import Runtime


def test_a_batch_the_bus_applied_first_is_not_applied_again(
    shop_db: Path, als_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, model_dir = copy_shop(shop_db, als_artifact, tmp_path)
    runtime = Runtime(Settings(db_path=db, model_dir=model_dir))
    shopper = str(runtime.state.model.user_map.ids[0])
    events = validate_events(
        pa.table(
            {
                "user_id": [shopper] * 3,
                "item_id": ["I00001", "I00002", "I00003"],
                "ts": ["1700000000", "1700000001", "1700000002"],
            }
        )
    )
    write = runtime.inbox.write
    delivered: list[str] = []

    def write_then_poll(table: pa.Table, **options: Any) -> Path:
        path = write(table, **options)
        # the bus's poll lands between the file's rename and the API's own bookkeeping
        for message in runtime.bus.poll(runtime._own_batches.keys()):
            delivered.append(message.batch_id)
            runtime.apply_message(message.batch_id, message.events)
        return path

    monkeypatch.setattr(runtime.inbox, "write", write_then_poll)
    before = runtime.state.online.applied
    batch_id = asyncio.run(runtime.accept_events(events))
    assert delivered == [batch_id]  # the race happened
    assert runtime.state.online.applied - before == 3
    assert len(runtime.state.online.recent(shopper)) == 3

    # the ordinary order: noted as its own first, the bus then leaves it out
    monkeypatch.setattr(runtime.inbox, "write", write)
    asyncio.run(runtime.accept_events(events))
    assert not runtime.bus.poll(runtime._own_batches.keys())
    assert runtime.state.online.applied - before == 6
