"""Folder ingestion: each file exactly once, including after a kill -9 in the middle of one."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from recsys_lite.data.store import Store
from recsys_lite.online.inbox import PROCESSED, REJECTED, Inbox, drain

HEADER = "user_id,item_id,ts,qty,event_type\n"


def counts(db: Path) -> tuple[int, int, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT * FROM events)),"
            " (SELECT count(*) FROM ingested_files) FROM events"
        ).fetchone()
    finally:
        con.close()
    assert row is not None
    return row


def big_csv(path: Path, rows: int, offset: int) -> None:
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT 'u' || (range % 5000) AS user_id, 'i' || (range % 3000) AS item_id,"
        f" 1700000000 + range + {offset} AS ts, 1 AS qty, 'view' AS event_type"
        f" FROM range({rows})) TO '{path}' (HEADER)"
    )
    con.close()


def test_files_land_once_and_bad_files_are_set_aside(tmp_path: Path) -> None:
    store, inbox = Store(tmp_path / "shop.db"), Inbox(tmp_path / "drop")
    (inbox.folder / "a.csv").write_text(HEADER + "u1,i1,1700000000,1,view\n")
    (inbox.folder / "b.csv").write_text(HEADER + "u2,i2,1700000001,-5,view\n")
    inbox.write(pa.table({"user_id": ["u3"], "item_id": ["i3"], "ts": [1_700_000_002]}))
    report = drain(store, inbox)
    assert report.events_added == 2 and report.rejected == ["b.csv"]
    error = (inbox.folder / REJECTED / "b.csv.error.txt").read_text()
    assert "row 1, column qty: negative quantity" in error

    # a copy of an ingested file (as after a crash between commit and move) is skipped
    shutil.copy(inbox.folder / PROCESSED / "a.csv", inbox.folder / "a-again.csv")
    again = drain(store, inbox)
    assert again.events_added == 0 and (inbox.folder / PROCESSED / "a-again.csv").exists()
    assert counts(store.path) == (2, 2, 2)


def test_kill_9_in_the_middle_neither_loses_nor_duplicates(tmp_path: Path) -> None:
    folder, db = tmp_path / "drop", tmp_path / "shop.db"
    folder.mkdir()
    sizes = {"1-small.csv": 1_000, "2-big.csv": 1_000_000, "3-small.csv": 2_000}
    offset = 0
    for name, rows in sizes.items():
        big_csv(folder / name, rows, offset)
        offset += rows
    command = [
        sys.executable, "-m", "recsys_lite.cli", "stream-ingest", "--watch", str(folder),
        "--db", str(db), "--settle-seconds", "0", "--interval", "0.1",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # wait until the first file is committed, so the kill lands while the big one is in work
    deadline = time.monotonic() + 60
    while not (folder / PROCESSED / "1-small.csv").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.02)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (folder / PROCESSED / "3-small.csv").exists(), "killed too late to prove anything"

    events, distinct, _ = counts(db)
    assert events == distinct and events in (1_000, 1_000 + 1_000_000)  # whole files only

    subprocess.run([*command, "--once"], check=True, timeout=300)
    assert counts(db) == (sum(sizes.values()), sum(sizes.values()), 3)
    assert sorted(p.name for p in (folder / PROCESSED).iterdir()) == sorted(sizes)
