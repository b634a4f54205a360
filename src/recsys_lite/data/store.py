"""The embedded DuckDB store: schema, connections and the reads every other layer needs."""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from recsys_lite.files import fsync_directory

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS events (
        user_id VARCHAR NOT NULL,
        item_id VARCHAR NOT NULL,
        ts BIGINT NOT NULL,
        qty INTEGER NOT NULL,
        event_type VARCHAR NOT NULL,
        seq BIGINT
    )
    """,
    # Arrival order: events that share a timestamp (a basket, a burst of ratings) are read back
    # in the order their files listed them, so every load of the same files numbers ids alike
    # and sequence models see each basket as it was written. Stores made before it get NULLs.
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS seq BIGINT",
    # Attribution: the answer (/recommend, /similar-items) an event came from, and the place
    # the item had in it; empty for events that did not come from a recommendation.
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS recommendation_id VARCHAR",
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS position INTEGER",
    # Erased shoppers, as keyed hashes (data/subjects.py): their events are dropped whenever
    # they arrive again (an old file re-ingested, a late message from the bus).
    """
    CREATE TABLE IF NOT EXISTS erased_subjects (
        subject VARCHAR PRIMARY KEY,
        erased_at BIGINT NOT NULL
    )
    """,
    # Files already ingested (by content hash), written in the same transaction as their rows:
    # the watcher skips them, so a file is ingested exactly once even across crashes.
    """
    CREATE TABLE IF NOT EXISTS ingested_files (
        sha256 VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        rows BIGINT NOT NULL,
        ingested_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS items (
        item_id VARCHAR PRIMARY KEY,
        category VARCHAR,
        brand VARCHAR,
        price DOUBLE,
        img_url VARCHAR,
        title VARCHAR,
        description VARCHAR
    )
    """,
    # Whether the shop can sell the item now; NULL (rows written before the column, or a
    # cleared cell) means available. Unavailable items are never served.
    "ALTER TABLE items ADD COLUMN IF NOT EXISTS available BOOLEAN",
)

# In the items table's column order (merges insert by position).
ITEM_FIELDS = ("category", "brand", "price", "img_url", "title", "description", "available")

T = TypeVar("T")


class Store:
    """A DuckDB file holding ``events`` and ``items``.

    Connections are opened per unit of work and closed after it: DuckDB lets only one process
    hold a file for writing, so a long-lived connection would lock out the CLI and the worker.
    """

    def __init__(
        self, path: Path | str, *, threads: int | None = None, lock_timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        self.threads = threads
        self.lock_timeout = lock_timeout

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        if read_only and not self.path.exists():
            from recsys_lite.errors import EmptyDataError

            raise EmptyDataError(f"{self.path}: no store here yet; run `recsys-lite ingest` first")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._file_lock(fcntl.LOCK_SH), self._opened(read_only) as con:
            yield con

    @contextmanager
    def _file_lock(self, mode: int) -> Iterator[None]:
        """Shared by every unit of work, exclusive while ``rebuild`` replaces the file, so no
        process writes to a file that is about to be replaced. (DuckDB's own lock cannot do
        this: it ends when the connection closes, before the new file is moved in.)"""
        lock = self.path.with_name(self.path.name + ".lock")
        if not lock.parent.exists():
            yield
            return
        with lock.open("a") as handle:
            fcntl.flock(handle, mode)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def rebuild(self) -> None:
        """Copy every table into a new file and put it in place of the old one.

        Deleted rows can survive in a database file's free blocks until they are reused; a
        rebuilt file holds only live rows, which is what erasing a shopper must guarantee.
        """
        fresh = self.path.with_name(f".{self.path.name}.rebuild")
        fresh.unlink(missing_ok=True)
        with self._file_lock(fcntl.LOCK_EX):
            with self._opened(read_only=False) as con:
                con.execute("CHECKPOINT")
                (catalog,) = con.execute("SELECT current_database()").fetchone() or ("",)
                con.execute(f"ATTACH '{fresh}' AS rebuilt")
                con.execute(f'COPY FROM DATABASE "{catalog}" TO rebuilt')
                con.execute("DETACH rebuilt")
            os.replace(fresh, self.path)
            fsync_directory(self.path.parent)

    @contextmanager
    def _opened(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        con = self._open(read_only)
        try:
            con.execute("SET TimeZone = 'UTC'")
            if self.threads:
                con.execute(f"SET threads = {int(self.threads)}")
            if not read_only:
                for statement in SCHEMA:
                    con.execute(statement)
            yield con
        finally:
            con.close()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """Open the file, waiting while another process (server, worker, CLI) holds it.

        DuckDB lets one process at a time write a file, so every process opens it for one unit
        of work and closes it after; a busy file is retried, not reported as an error.
        """
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.01
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                # another process holds the file ("lock"), or another thread of this one holds
                # it in the other mode ("different configuration"): both end when it closes
                busy = ("lock", "different configuration")
                if not any(word in str(exc).lower() for word in busy) or (
                    time.monotonic() > deadline
                ):
                    from recsys_lite.errors import StoreBusyError

                    raise StoreBusyError(f"{self.path}: {str(exc).splitlines()[0]}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.25)

    def read_events(self) -> pa.Table:
        """All events as an Arrow table, ordered by time and, within a second, by arrival
        (columnar: no per-row Python objects)."""
        with self.connect(read_only=True) as con:
            return con.sql(
                "SELECT user_id, item_id, ts, qty, event_type FROM events"
                " ORDER BY ts, seq, user_id, item_id"
            ).to_arrow_table()

    def read_items(self) -> pa.Table:
        with self.connect(read_only=True) as con:
            # a store last written before the column existed, opened read-only, lacks it
            ((has,),) = con.execute(
                "SELECT count(*) FROM duckdb_columns()"
                " WHERE table_name = 'items' AND column_name = 'available'"
            ).fetchall()
            available = "available" if has else "CAST(NULL AS BOOLEAN) AS available"
            return con.sql(
                "SELECT item_id, category, brand, price, img_url, title, description,"
                f" {available} FROM items"
            ).to_arrow_table()

    def counts(self) -> dict[str, int]:
        with self.connect(read_only=True) as con:
            row = con.execute(
                "SELECT (SELECT count(*) FROM events),"
                " (SELECT count(DISTINCT user_id) FROM events),"
                " (SELECT count(DISTINCT item_id) FROM events), (SELECT count(*) FROM items)"
            ).fetchone()
        assert row is not None
        return dict(
            zip(("events", "users", "items_with_events", "catalog_items"), row, strict=True)
        )

    def fingerprint(self) -> str:
        """A content hash of the events, cheap enough to compute on every training run."""
        with self.connect(read_only=True) as con:
            row = con.execute(
                "SELECT count(*), min(ts), max(ts),"
                " bit_xor(hash(user_id, item_id, ts, qty, event_type)) FROM events"
            ).fetchone()
        return hashlib.sha256(repr(row).encode()).hexdigest()[:16]


def run_with_progress(
    con: duckdb.DuckDBPyConnection,
    work: Callable[[], T],
    description: str,
    *,
    show: bool = True,
) -> T:
    """Run ``work`` (one long DuckDB statement) while a bar follows DuckDB's own progress."""
    if not show:
        return work()
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=100)
        thread.start()
        while thread.is_alive():
            percent = con.query_progress()
            if percent >= 0:
                progress.update(task, completed=percent)
            time.sleep(0.1)
        thread.join()
    if failure:
        raise failure[0]
    return result[0]
