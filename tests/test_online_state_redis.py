"""Online state shared in Redis: API processes and a worker on one real redis-server answer a
shopper alike, a replica started later starts warm, one killed loses nothing, every key the
product writes expires, and an erasure leaves nothing of the shopper."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import redis

from conftest import AUTH, copy_shop, free_port, running_server
from recsys_lite.models import create_model
from recsys_lite.online.redis_client import client_for
from recsys_lite.online.redis_state import RedisOnlineState

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
    db, model = copy_shop(shop_db, als_artifact, tmp_path)
    topic = f"events-{uuid.uuid4().hex}"
    prefix = f"{topic}:online:"
    env = {
        "EVENT_BUS": "redis", "REDIS_URL": redis_url, "BUS_TOPIC": topic,
        "INBOX_DRAIN_INTERVAL": "0", "MODEL_WATCH_INTERVAL": "0",
    }  # fmt: skip
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


def events_of(user: str, items: list[str], ts: int = 2_000_000_000) -> pa.Table:
    return pa.table(
        {
            "user_id": [user] * len(items),
            "item_id": items,
            "ts": pa.array([ts + n for n in range(len(items))], pa.int64()),
            "qty": pa.array([1] * len(items), pa.int32()),
            "event_type": ["purchase"] * len(items),
        }
    )


def test_a_redis_outage_delays_writes_and_reads_fall_back_to_the_artifact(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = create_model("popular").fit(events_of("u0", ["a", "b", "c"], ts=1_000))
    prefix = f"outage-{uuid.uuid4().hex}:online:"
    state = RedisOnlineState(model, redis.Redis.from_url(redis_url), prefix, 3600, str)
    write = state._apply_script

    def down(*args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("down")

    monkeypatch.setattr(state, "_apply_script", down)
    state.apply(events_of("shopper", ["a"]), "batch-1")  # accepted, not lost
    assert state.recent("shopper") == []
    monkeypatch.setattr(state, "_apply_script", write)
    state.apply(events_of("shopper", ["b"]), "batch-2")  # within the pause: queued, no wait
    assert state.recent("shopper") == []
    time.sleep(1.1)
    state.apply(events_of("shopper", ["c"]), "batch-3")
    assert [event.item_id for event in state.recent("shopper")] == ["a", "b", "c"]

    away = RedisOnlineState(
        model, client_for(f"redis://127.0.0.1:{free_port()}/0"), prefix, 3600, str
    )
    started = time.monotonic()
    for _ in range(20):  # requests are served as the artifact knows the shopper, without a wait
        assert away.recent_history("shopper") is None
        assert away.popular(2).items.tolist() == model.popular(2).items.tolist()
    assert time.monotonic() - started < 1.0
    assert away.users == -1
