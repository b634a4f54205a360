"""One bad row never stops learning: hostile ids are refused at the door, and a retrain that
fails anyway (a row written around the checks) leaves the worker running, reported, retrying."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pyarrow.compute as pc
import pyarrow.parquet as pq

from conftest import running_server, wait_until
from recsys_lite.data.ingest import ingest
from recsys_lite.data.store import Store
from recsys_lite.training import train

HOSTILE_IDS = ["U1\x00", "U1\n", "\tU1", "U1\u200b", " ", "x" * 257]


def worker_status(folder: Path) -> dict[str, object]:
    try:
        status: dict[str, object] = json.loads((folder / "worker-status.json").read_text())
    except (OSError, ValueError):
        return {}
    return status


def execute_with_retry(db: Path, sql: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with duckdb.connect(str(db)) as con:
                con.execute(sql)
            return
        except duckdb.IOException:  # the worker or the server holds the file for a moment
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_hostile_ids_are_refused_and_a_failing_retrain_keeps_the_worker_alive(
    shop_files: tuple[Path, Path], tmp_path: Path
) -> None:
    events = pq.read_table(shop_files[0])
    cut = int(sorted(events.column("ts").to_numpy())[int(events.num_rows * 0.8)])
    pq.write_table(events.filter(pc.less(events.column("ts"), cut)), tmp_path / "old.parquet")
    db, model = tmp_path / "shop.db", tmp_path / "model"
    store = Store(db)
    ingest(store, tmp_path / "old.parquet", shop_files[1], show_progress=False)
    train(store, "als", model, params={"iterations": 4}, test_size=0, show_progress=False)

    env = {"INBOX_DRAIN_INTERVAL": "0.5", "MODEL_WATCH_INTERVAL": "0.5", "ADMIN_API_KEY": "s3cret"}
    admin = {"Authorization": "Bearer s3cret"}
    with running_server(model, db, tmp_path, env) as url, httpx.Client(base_url=url) as client:
        for hostile in HOSTILE_IDS:
            for event in ({"user_id": hostile, "item_id": "I00001"},
                          {"user_id": "U00001", "item_id": hostile}):  # fmt: skip
                assert client.post("/events", json=event, headers=admin).status_code == 422, event
            refused = client.post("/items", json={"item_id": hostile}, headers=admin)
            assert refused.status_code == 422
        now = int(time.time())
        fresh = [{"user_id": f"U{n % 50:05d}", "item_id": f"I{n % 40:05d}", "ts": now - n,
                  "event_type": "purchase"} for n in range(300)]  # fmt: skip
        assert client.post("/events", json={"events": fresh}, headers=admin).status_code == 200

        # a store written around the checks (an old version, a hand-made INSERT)
        execute_with_retry(
            db,
            "INSERT INTO events (user_id, item_id, ts, qty, event_type)"
            f" VALUES ('U1' || chr(0), 'I00001', {now}, 1, 'view')",
        )
        worker = subprocess.Popen(
            [sys.executable, "-m", "recsys_lite.cli", "worker", "--model-dir", str(model),
             "--db", str(db), "--interval", "0.3", "--min-new-events", "50"],
            stdout=(tmp_path / "worker.log").open("w"), stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "INFO"},
        )  # fmt: skip
        try:
            wait_until(lambda: int(worker_status(tmp_path).get("failures_total", 0)) >= 2)
            status = worker_status(tmp_path)
            assert worker.poll() is None, "the worker is still running"
            assert "not a valid id" in str(status["last_error"])
            # backoff: the wait doubles after each failure in a row
            assert float(str(status["next_retry_in"])) >= 0.6
            assert client.get("/status").status_code == 401
            wrong = {"Authorization": "Bearer guess"}
            assert client.get("/status", headers=wrong).status_code == 401
            status_answer = client.get("/status", headers=admin).json()
            assert status_answer["worker"]["failures_total"] >= 2
            assert status_answer["model"]["type"] == "als" and status_answer["store"]["events"]
            ready = client.get("/ready").json()
            assert ready["ready"] is True
            assert ready["details"]["worker"]["consecutive_failures"] >= 2
            metrics = client.get("/metrics").text
            failures = re.search(r"^recsys_worker_retrain_failures_total (\S+)$", metrics, re.M)
            assert failures and float(failures.group(1)) >= 2

            execute_with_retry(db, "DELETE FROM events WHERE user_id = 'U1' || chr(0)")
            wait_until(lambda: worker_status(tmp_path).get("consecutive_failures") == 0, 120)
            assert worker.poll() is None
            assert worker_status(tmp_path)["last_decision"] in ("swapped", "kept")
            assert client.get("/ready").json()["details"]["worker"]["consecutive_failures"] == 0
        finally:
            worker.terminate()
            worker.wait(timeout=30)
