"""Online state shared in Redis: API processes and a worker on one real redis-server answer a
shopper alike, a replica started later starts warm, one killed loses nothing, every key the
product writes expires, and an erasure leaves nothing of the shopper."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis

from conftest import AUTH, running_server

SHOPPER = "redis-shopper-1"  # unknown to the model: online events are all it knows of them


def recommend(url: str) -> tuple[str, tuple[str, ...]]:
    answer = httpx.get(f"{url}/recommend", params={"user_id": SHOPPER, "k": 10})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["source"], tuple(r["item_id"] for r in body["recommendations"])


def product_keys(client: Any, prefix: str, kind: str = "") -> list[bytes]:
    return list(client.scan_iter(match=f"{prefix}{kind}*", count=1000))


def trending(client: Any, prefix: str, item: str) -> float:
    return sum(client.zscore(key, item) or 0.0 for key in product_keys(client, prefix, "trend:"))


def test_replicas_share_a_shoppers_online_state_through_redis(
    shop_db: Path, als_artifact: Path, tmp_path: Path, redis_url: str
) -> None:
    shutil.copy(shop_db, tmp_path / "shop.db")
    shutil.copytree(als_artifact, tmp_path / "model")
    topic = f"events-{uuid.uuid4().hex}"
    prefix = f"{topic}:online:"
    env = {
        "EVENT_BUS": "redis", "REDIS_URL": redis_url, "BUS_TOPIC": topic,
        "INBOX_DRAIN_INTERVAL": "0", "MODEL_WATCH_INTERVAL": "0",
    }  # fmt: skip
    model, db = tmp_path / "model", tmp_path / "shop.db"
    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "recsys_lite.cli", "worker", "--model-dir", str(model),
            "--db", str(db), "--interval", "1", "--min-new-events", "1000000",
            "--retrain-every", "1000000",
        ],
        stdout=worker_log, stderr=subprocess.STDOUT,
        env={**os.environ, "LOG_LEVEL": "WARNING", **env},
    )  # fmt: skip
    client = redis.Redis.from_url(redis_url)
    try:
        with (
            running_server(model, db, tmp_path, env) as first,
            running_server(model, db, tmp_path, env) as second,
        ):
            source, before = recommend(second)
            assert source == "popular"
            bought = list(before[:2])
            batch = {"events": [
                {"user_id": SHOPPER, "item_id": item, "event_type": "purchase"} for item in bought
            ]}  # fmt: skip
            retried = {**AUTH, "Idempotency-Key": "checkout-1"}
            posted = httpx.post(f"{first}/events", headers=retried, json=batch)
            assert posted.status_code == 200, posted.text
            # the client retries on the other replica: the first answer, no second batch
            again = httpx.post(f"{second}/events", headers=retried, json=batch)
            assert again.json() == posted.json()
            assert again.headers.get("idempotent-replayed") == "true"
            # no wait for the bus: the other replica reads what the first wrote before answering
            source, after = recommend(second)
            assert source != "popular" and not set(bought) & set(after)
            assert recommend(first) == (source, after)

            time.sleep(1.0)  # every process has now read the batch from the stream too
            assert [trending(client, prefix, item) for item in bought] == [1.0, 1.0], (
                "a batch counts once, not once per replica"
            )
            with running_server(model, db, tmp_path, env) as third:
                assert recommend(third) == (source, after), "a new replica starts warm"
                status = httpx.get(f"{third}/status", headers=AUTH, timeout=30).json()
                assert status["online"]["users_held"] == 1  # counted in Redis, not by replica

                pid = int(httpx.get(f"{first}/live").headers["x-process-id"])
                os.kill(pid, signal.SIGKILL)
                assert recommend(second) == (source, after)
                assert recommend(third) == (source, after)

                keys = product_keys(client, prefix)
                kinds = {key.decode()[len(prefix) :].split(":")[0] for key in keys}
                assert kinds == {"recent", "counted", "trend", "active", "batch", "answer", "fresh"}
                assert all(client.ttl(key) > 0 for key in keys), "every key expires"

                erased = httpx.delete(f"{second}/admin/users/{SHOPPER}", headers=AUTH, timeout=60)
                assert erased.status_code == 200, erased.text
                assert product_keys(client, prefix, "recent:") == []
                assert product_keys(client, prefix, "counted:") == []
                assert [trending(client, prefix, item) for item in bought] == [0.0, 0.0]
                assert recommend(third)[0] == "popular"
                assert recommend(second) == ("popular", before)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        worker_log.close()
