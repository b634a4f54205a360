"""The event archive: every accepted event, appended to a Delta Lake table partitioned by day.

The store is the working set (erasures, retention and rebuilds rewrite it); the archive is an
append-only record other tools can read without opening DuckDB: Spark (engines/spark.py reads
the table's current Parquet files), a retrain from the archive (``train --source archive``), or
any Delta reader. It is off unless ``EVENT_ARCHIVE`` names a folder.

Appends come in small batches (one per inbox file), so the table collects many small files;
``compact`` rewrites each day's files into a few large ones and removes the replaced files.
An erased shopper's rows are deleted from it too (``scrub_archive``), which rewrites the files
that held them, and the files they were in are vacuumed at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from recsys_lite.data.store import Store
from recsys_lite.data.subjects import subject_hash
from recsys_lite.errors import EmptyDataError, RecsysError

DAY = "day"
COLUMNS = ("user_id", "item_id", "ts", "qty", "event_type", "seq")
SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("ts", pa.int64()),
        ("qty", pa.int32()),
        ("event_type", pa.string()),
        ("seq", pa.int64()),
        (DAY, pa.string()),  # YYYY-MM-DD (UTC) of ts: the partition
    ]
)


class ArchiveUnavailableError(RecsysError):
    """EVENT_ARCHIVE is set but the deltalake package is not installed."""

    code = "archive_unavailable"


def _deltalake() -> Any:
    try:
        import deltalake
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ArchiveUnavailableError(
            "the event archive needs the deltalake package: pip install 'recsys-lite[archive]'"
        ) from exc
    return deltalake


def exists(path: Path) -> bool:
    return (Path(path) / "_delta_log").is_dir()


def _with_day(events: pa.Table) -> pa.Table:
    if "seq" not in events.column_names:
        events = events.append_column("seq", pa.nulls(events.num_rows, pa.int64()))
    events = events.select(list(COLUMNS))
    stamps = pc.cast(pc.multiply(events.column("ts"), 1_000_000), pa.timestamp("us", tz="UTC"))
    day = pc.strftime(stamps, format="%Y-%m-%d")
    return events.append_column(DAY, day).cast(SCHEMA)


def append_events(path: Path, events: pa.Table) -> int:
    """Append events (columns as the store's) to the archive, creating it on first use."""
    if events.num_rows == 0:
        return 0
    deltalake = _deltalake()
    Path(path).mkdir(parents=True, exist_ok=True)
    deltalake.write_deltalake(
        str(path), _with_day(events), partition_by=[DAY], mode="append",
        # the table log records min/max statistics of indexed columns: kept to the times, so
        # no shopper id is ever written into the log, where erasure could not remove it
        configuration={"delta.dataSkippingStatsColumns": f"ts,{DAY}"},
    )  # fmt: skip
    return int(events.num_rows)


def read_events(path: Path) -> pa.Table:
    """Every archived event, in the store's order (time, then arrival)."""
    if not exists(path):
        raise EmptyDataError(f"{path}: the event archive holds no events")
    table = _deltalake().DeltaTable(str(path)).to_pyarrow_table(columns=list(COLUMNS))
    return table.sort_by([("ts", "ascending"), ("seq", "ascending")])


def file_uris(path: Path) -> list[str]:
    """The Parquet files of the table's current version (what a reader without Delta support
    must read: older files may still be on disk until a vacuum)."""
    return list(_deltalake().DeltaTable(str(path)).file_uris())


@dataclass
class CompactReport:
    files_before: int
    files_after: int
    files_removed: int  # by the vacuum


def compact(path: Path, *, target_size: int | None = None) -> CompactReport:
    """Rewrite small files into large ones, day by day, then delete the replaced files.

    The vacuum keeps no history (retention 0): the archive is a record of events, not of
    versions, and a replaced file left on disk would still hold rows an erasure removed.
    """
    deltalake = _deltalake()
    table = deltalake.DeltaTable(str(path))
    before = len(table.file_uris())
    table.optimize.compact(target_size=target_size)
    removed = table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    table = deltalake.DeltaTable(str(path))
    return CompactReport(before, len(table.file_uris()), len(removed))


def scrub_archive(path: Path, key: str, subject: str) -> int:
    """Delete every archived event of the shopper whose keyed hash (data/subjects.py, ``key``
    the store's privacy key) is ``subject``; returns the rows deleted.

    The archive holds raw ids, so the hash is computed over its distinct user ids to find the
    shopper's; the delete rewrites the files that held them and a vacuum removes the old ones at
    once, so no copy of the rows stays on disk. A missing archive has nothing to scrub.
    """
    if not exists(path):
        return 0
    deltalake = _deltalake()
    table = deltalake.DeltaTable(str(path))
    index = table.to_pyarrow_table(columns=["user_id", DAY])
    users = pc.unique(index.column("user_id")).to_pylist()
    matches = pa.array([user for user in users if subject_hash(key, user) == subject], pa.string())
    if not len(matches):
        return 0
    held = pc.is_in(index.column("user_id"), value_set=matches)
    days = pc.unique(index.column(DAY).filter(held)).to_pylist()
    deleted = 0
    # each day that held them is rewritten without them: a DELETE would write its predicate,
    # the raw id, into the table's log
    for day in days:
        rows = table.to_pyarrow_table(filters=[(DAY, "=", day)])
        kept = rows.filter(pc.invert(pc.is_in(rows.column("user_id"), value_set=matches)))
        deleted += rows.num_rows - kept.num_rows
        deltalake.write_deltalake(
            str(path), kept.cast(SCHEMA), partition_by=[DAY], mode="overwrite",
            predicate=f"{DAY} = '{day}'",
        )  # fmt: skip
        table = deltalake.DeltaTable(str(path))
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    return deleted


def last_seq(store: Store) -> int:
    """The store's newest arrival number: events ingested after this call number above it."""
    if not store.path.exists():  # the first ingest creates it
        return 0
    with store.connect(read_only=True) as con:
        row = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    return int(row[0]) if row else 0


def append_since(store: Store, path: Path, seq: int) -> int:
    """Archive the store's events that arrived after ``seq`` (what one ingest accepted) and
    are not archived yet; returns how many were appended.

    Two processes draining at once can both see the other's events arrive after their mark;
    the arrival number is unique in the store, so the ones already archived are skipped (the
    Parquet statistics on seq keep that read to the newest files).
    """
    with store.connect(read_only=True) as con:
        events = con.sql(
            "SELECT user_id, item_id, ts, qty, event_type, seq FROM events"
            f" WHERE seq > {int(seq)} ORDER BY seq"
        ).to_arrow_table()
    if exists(path) and events.num_rows:
        dataset = _deltalake().DeltaTable(str(path)).to_pyarrow_dataset()
        archived = dataset.to_table(columns=["seq"], filter=pc.field("seq") > int(seq))
        events = events.filter(pc.invert(pc.is_in(events.column("seq"), archived.column("seq"))))
    return append_events(path, events)
