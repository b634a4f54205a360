"""The event archive: a Delta Lake table of accepted events, partitioned by day."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from recsys_lite.cli import app
from recsys_lite.config import get_settings
from recsys_lite.data import archive
from recsys_lite.data.store import Store
from recsys_lite.data.subjects import subject_hash
from recsys_lite.models.artifact import load_artifact
from recsys_lite.online.inbox import Inbox, drain

pytest.importorskip("deltalake")

DAY = 86_400
MIDNIGHT = 1_700_006_400  # 2023-11-15 00:00:00 UTC


def batch(start: int, rows: int, users: int = 7) -> pa.Table:
    """Events an hour apart from ``start``, so a run of batches spans several days."""
    return pa.table(
        {
            "user_id": [f"u{(start + i) % users}" for i in range(rows)],
            "item_id": [f"i{(start + i) % 11}" for i in range(rows)],
            "ts": pa.array([MIDNIGHT + (start + i) * 3600 for i in range(rows)], pa.int64()),
            "qty": pa.array([1] * rows, pa.int32()),
            "event_type": ["view"] * rows,
            "seq": pa.array(range(start, start + rows), pa.int64()),
        }
    )


def parquet_on_disk(path: Path) -> list[Path]:
    return sorted(path.rglob("*.parquet"))


def test_appends_are_partitioned_by_day_and_read_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "archive"
    for start in range(0, 60, 12):  # five appends over 60 hours: three days
        assert archive.append_events(path, batch(start, 12)) == 12
    days = sorted(p.name for p in path.iterdir() if p.name.startswith("day="))
    assert days == ["day=2023-11-15", "day=2023-11-16", "day=2023-11-17"]
    # every file sits in the folder of its events' day
    for file in parquet_on_disk(path):
        stamps = pq.read_table(file).column("ts").to_pylist()
        day = file.parent.name.removeprefix("day=")
        assert all(
            pa.scalar(ts * 1_000_000, pa.timestamp("us", tz="UTC")).as_py().strftime("%Y-%m-%d")
            == day
            for ts in stamps
        )
    events = archive.read_events(path)
    assert events.num_rows == 60
    assert events.column("seq").to_pylist() == list(range(60))


def test_compaction_leaves_one_file_per_day_and_every_row(tmp_path: Path) -> None:
    path = tmp_path / "archive"
    for start in range(0, 72, 6):  # twelve small appends over three days
        archive.append_events(path, batch(start, 6))
    before = archive.read_events(path)
    files_before = len(archive.file_uris(path))
    assert files_before >= 12

    report = archive.compact(path)

    assert report.files_before == files_before
    assert report.files_after == 3 == len(archive.file_uris(path))
    # the replaced files are gone from disk too, not only from the table's current version
    assert len(parquet_on_disk(path)) == 3
    assert archive.read_events(path).equals(before)


def test_drain_archives_what_it_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "archive"
    monkeypatch.setenv("EVENT_ARCHIVE", str(path))
    get_settings.cache_clear()
    try:
        store, inbox = Store(tmp_path / "shop.db"), Inbox(tmp_path / "drop")
        first = batch(0, 5).drop_columns(["seq"])
        inbox.write(first)
        inbox.write(batch(5, 5).drop_columns(["seq"]))
        assert drain(store, inbox).events_added == 10
        inbox.write(first)  # the same events again: accepted nowhere, archived once
        (inbox.folder / "bad.csv").write_text("user_id,item_id,ts\nu1,i1,yesterday\n")
        assert drain(store, inbox).events_added == 0
    finally:
        get_settings.cache_clear()
    archived = archive.read_events(path)
    assert archived.num_rows == 10
    # a second drainer that saw the same arrivals adds no copies
    assert archive.append_since(store, path, 0) == 0
    stored = store.read_events()
    assert archived.select(["user_id", "item_id", "ts"]).equals(
        stored.select(["user_id", "item_id", "ts"])
    )


def test_scrub_removes_one_shopper_from_every_file_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "archive"
    for start in range(0, 48, 8):
        archive.append_events(path, batch(start, 8))
    key = "ab" * 32
    others = [u for u in archive.read_events(path).column("user_id").to_pylist() if u != "u3"]

    assert archive.scrub_archive(path, key, subject_hash(key, "u3")) == 48 // 7 + 1
    assert archive.scrub_archive(path, key, subject_hash(key, "nobody")) == 0

    assert archive.read_events(path).column("user_id").to_pylist() == others
    for file in parquet_on_disk(path):  # no replaced file still holds the shopper's rows
        assert "u3" not in pq.read_table(file).column("user_id").to_pylist()
    for entry in (path / "_delta_log").iterdir():  # nor the table's log (stats, predicates)
        assert b"'u3'" not in entry.read_bytes() and b'"u3"' not in entry.read_bytes()


@pytest.fixture
def small_archive(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "archive"
    for start in range(0, 40, 4):
        archive.append_events(path, batch(start, 4))
    yield path


def test_compact_command(small_archive: Path) -> None:
    result = CliRunner().invoke(app, ["archive", "compact", "--path", str(small_archive)])
    assert result.exit_code == 0, result.output
    assert "10 files compacted into 2" in " ".join(result.output.split())
    missing = CliRunner().invoke(app, ["archive", "compact", "--path", str(small_archive.parent)])
    assert missing.exit_code == 1


def test_train_from_the_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "shop.db")
    inbox = Inbox(tmp_path / "drop")
    monkeypatch.setenv("EVENT_ARCHIVE", str(tmp_path / "archive"))
    monkeypatch.setenv("DB_PATH", str(store.path))
    get_settings.cache_clear()
    try:
        inbox.write(batch(0, 40).drop_columns(["seq"]))
        drain(store, inbox)
        output = tmp_path / "model"
        args = ["train", "als", "--source", "archive", "--test-size", "0", "--output", str(output)]
        result = CliRunner().invoke(app, [*args, "--params", '{"factors": 4, "iterations": 2}'])
        assert result.exit_code == 0, result.output
        assert load_artifact(output).manifest["training_events"] == 40
        monkeypatch.setenv("EVENT_ARCHIVE", str(tmp_path / "nothing-here"))
        get_settings.cache_clear()
        empty = CliRunner().invoke(app, args)
        assert empty.exit_code == 1 and "holds no events" in empty.output
    finally:
        get_settings.cache_clear()
