"""Several API processes answer alike after an event: the event bus shares it."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import AUTH, copy_shop, running_server


@pytest.mark.parametrize("bus", ["embedded", "redis"])
def test_two_workers_answer_consistently_after_an_event(
    bus: str, shop_db: Path, als_artifact: Path, tmp_path: Path, redis_url: str
) -> None:
    db, model = copy_shop(shop_db, als_artifact, tmp_path)
    env = {
        "EVENT_BUS": bus, "REDIS_URL": redis_url, "BUS_TOPIC": f"events-{uuid.uuid4().hex}",
        "INBOX_DRAIN_INTERVAL": "0", "MODEL_WATCH_INTERVAL": "0",
    }  # fmt: skip
    with running_server(model, db, tmp_path, env, workers=2) as url:
        pids = set()
        before = None
        for _ in range(40):  # new connections spread over both processes
            with httpx.Client(base_url=url) as client:
                body = client.get("/recommend", params={"user_id": "U00011", "k": 5}).json()
                pids.add(client.get("/live").headers.get("x-process-id"))
            before = body
        assert before is not None and len(pids) == 2, "both workers should have answered"
        bought = before["recommendations"][0]["item_id"]
        posted = httpx.post(
            f"{url}/events", json={"user_id": "U00011", "item_id": bought}, headers=AUTH
        )
        assert posted.status_code == 200
        time.sleep(1.0)  # the promise: within a second, every replica knows
        answers = set()
        for _ in range(40):
            with httpx.Client(base_url=url) as client:
                body = client.get("/recommend", params={"user_id": "U00011", "k": 5}).json()
            answers.add(tuple(r["item_id"] for r in body["recommendations"]))
        assert len(answers) == 1, answers
        assert bought not in next(iter(answers))
