"""kill -9 of an API process while it accepts events: every acknowledged event is in the store
exactly once after the next start, and nothing unacknowledged appears twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import httpx

from conftest import AUTH, free_port, running_server


def serve_process(model: Path, db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "recsys_lite.cli", "serve", "--model-dir", str(model),
         "--db", str(db), "--port", str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "LOG_LEVEL": "WARNING", "ADMIN_API_KEY": AUTH["Authorization"][7:],
             "RATE_LIMIT_PER_IP": "0", "INBOX_DRAIN_INTERVAL": "0.2",
             "MODEL_WATCH_INTERVAL": "0"},
    )  # fmt: skip


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, "the server exited"
        time.sleep(0.1)
    raise AssertionError("the server did not start")


def stored_counts(db: Path, user_prefix: str) -> dict[tuple[str, int], int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT user_id, ts, count(*) FROM events WHERE user_id LIKE ? GROUP BY ALL",
            [f"{user_prefix}%"],
        ).fetchall()
    finally:
        con.close()
    return {(user, ts): count for user, ts, count in rows}


def test_kill_9_while_accepting_events_loses_and_duplicates_nothing_acknowledged(
    shop_db: Path, als_artifact: Path, tmp_path: Path
) -> None:
    shutil.copy(shop_db, tmp_path / "shop.db")
    db, model = tmp_path / "shop.db", als_artifact
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = serve_process(model, db, port, tmp_path / "first.log")
    wait_healthy(url, server)
    acknowledged: list[tuple[str, int]] = []
    stop = threading.Event()
    base_ts = int(time.time()) - 10_000

    def post_batches(writer: int) -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=5) as client:
            n = 0
            while not stop.is_set():
                batch = [
                    {"user_id": f"crash-{writer}-{n}-{j}", "item_id": "I00001",
                     "ts": base_ts + n, "event_type": "purchase"}
                    for j in range(5)
                ]  # fmt: skip
                try:
                    if client.post("/events", json={"events": batch}).status_code == 200:
                        acknowledged.extend((e["user_id"], e["ts"]) for e in batch)
                except httpx.TransportError:
                    return  # the server is gone
                n += 1

    writers = [threading.Thread(target=post_batches, args=(w,)) for w in range(3)]
    for thread in writers:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(server.pid, signal.SIGKILL)  # in the middle of writes and drains
    server.wait()
    stop.set()
    for thread in writers:
        thread.join()
    assert len(acknowledged) >= 300

    # the next start folds what the dead process had spooled into the store
    with running_server(model, db, tmp_path, {"INBOX_DRAIN_INTERVAL": "0.2"}) as _:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                counts = stored_counts(db, "crash-")
            except duckdb.IOException:
                counts = {}
            if all(key in counts for key in acknowledged):
                break
            time.sleep(0.2)
    counts = stored_counts(db, "crash-")
    missing = [key for key in acknowledged if key not in counts]
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
    assert max(counts.values()) == 1, "an event was stored twice"


def test_kill_9_of_the_worker_mid_retrain_or_mid_swap_leaves_a_complete_model(
    shop_files: tuple[Path, Path], tmp_path: Path
) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from recsys_lite.data.ingest import ingest
    from recsys_lite.data.store import Store
    from recsys_lite.models.artifact import load_artifact
    from recsys_lite.training import train

    events = pq.read_table(shop_files[0])
    cut = int(sorted(events.column("ts").to_numpy())[int(events.num_rows * 0.7)])
    pq.write_table(events.filter(pc.less(events.column("ts"), cut)), tmp_path / "old.parquet")
    pq.write_table(
        events.filter(pc.greater_equal(events.column("ts"), cut)), tmp_path / "new.parquet"
    )
    db, model = tmp_path / "shop.db", tmp_path / "model"
    store = Store(db)
    ingest(store, tmp_path / "old.parquet", shop_files[1], show_progress=False)
    train(store, "als", model, params={"iterations": 6}, test_size=0, show_progress=False)
    ingest(store, tmp_path / "new.parquet", show_progress=False)

    # killed at spread-out moments of a cycle: loading, training, writing, switching
    killed_at = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0]
    for delay in killed_at:
        worker = subprocess.Popen(
            [sys.executable, "-m", "recsys_lite.cli", "worker", "--model-dir", str(model),
             "--db", str(db), "--once", "--min-new-events", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(delay)
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        artifact = load_artifact(model)  # raises if the served path is missing or half-written
        assert artifact.model.fitted
    # a worker that is not interrupted still completes a cycle afterwards
    finished = subprocess.run(
        [sys.executable, "-m", "recsys_lite.cli", "worker", "--model-dir", str(model),
         "--db", str(db), "--once", "--min-new-events", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert load_artifact(model).model.fitted
