"""A store held by another process for a long time delays the server, never breaks it."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import httpx

from conftest import AUTH, copy_shop, running_server, wait_until
from recsys_lite.data.store import Store
from recsys_lite.models.versions import rollback
from recsys_lite.training import train

LONGER_THAN_A_LOCK_WAIT = 32.0  # a store connection gives up after 30 s


def test_a_long_busy_store_delays_start_up_and_a_swap_but_breaks_neither(
    shop_db: Path, als_artifact: Path, tmp_path: Path
) -> None:
    db, model = copy_shop(shop_db, als_artifact, tmp_path)
    env = {"MODEL_WATCH_INTERVAL": "0.2", "INBOX_DRAIN_INTERVAL": "0"}
    holder = duckdb.connect(str(db))  # another process writing for a long time
    with running_server(model, db, tmp_path, env) as url, httpx.Client(base_url=url) as client:
        # serving from the artifact; the catalog waits for the store, and says so
        assert client.get("/recommend", params={"user_id": "U00001"}).status_code == 200
        waiting = client.get("/ready")
        assert waiting.status_code == 503
        assert waiting.json()["details"]["store"]["catalog"]["attempts"] >= 1
        holder.close()
        wait_until(lambda: client.get("/ready").status_code == 200, 60)
        assert client.get("/ready").json()["details"]["store"]["catalog"] is None
        assert client.get("/items/I00001").json()["title"]

        train(Store(db), "popular", model, test_size=0, show_progress=False)
        wait_until(lambda: client.get("/health").json()["model_type"] == "popular", 30)
        holder = duckdb.connect(str(db))
        rollback(model)  # back to ALS while the store is held
        held_until = time.monotonic() + LONGER_THAN_A_LOCK_WAIT
        while time.monotonic() < held_until:
            assert client.get("/health").json()["model_type"] == "popular"
            time.sleep(0.5)
        status = client.get("/status", headers=AUTH, timeout=30).json()  # counts wait too
        assert status["store_waits"]["swap"]["attempts"] >= 2
        assert client.get("/ready").json()["details"]["store"]["swap"]["attempts"] >= 2
        holder.close()
        wait_until(lambda: client.get("/health").json()["model_type"] == "als", 40)
        assert client.get("/status", headers=AUTH).json()["store_waits"]["swap"] is None
