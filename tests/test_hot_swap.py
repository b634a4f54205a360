"""What a hot swap keeps: everything the service accepted since the new artifact's training."""

from __future__ import annotations

from pathlib import Path

import httpx

from conftest import AUTH, copy_shop, serving_client, wait_until
from recsys_lite.data.store import Store
from recsys_lite.training import train


def swaps(client: httpx.Client) -> int:
    return int(client.get("/status", headers=AUTH).json()["online"]["swaps"])


def test_items_posted_since_training_are_still_served_after_a_swap(
    shop_db: Path, als_artifact: Path, tmp_path: Path
) -> None:
    db, model = copy_shop(shop_db, als_artifact, tmp_path)
    # the store never sees the item before the swap: only the serving process knows it
    env = {"MODEL_WATCH_INTERVAL": "0.2", "INBOX_DRAIN_INTERVAL": "0"}
    with serving_client(model, db, tmp_path, env, headers=None) as client:
        item = {"item_id": "NEW-LAMP", "category": "Kitchen", "title": "Lamp"}
        posted = client.post("/items", json=item, headers=AUTH)
        assert posted.status_code == 200 and posted.json()["new"] == ["NEW-LAMP"]
        assert client.get("/items/NEW-LAMP").json()["recommendable"] is True

        train(
            Store(db), "als", model,
            params={"iterations": 2}, test_size=0, show_progress=False,
        )  # fmt: skip
        wait_until(lambda: swaps(client) == 1)

        served = client.get("/items/NEW-LAMP")
        assert served.status_code == 200, served.text
        assert served.json()["recommendable"] is True
        assert served.json()["title"] == "Lamp" and served.json()["category"] == "Kitchen"
        similar = client.get("/similar-items", params={"item_id": "NEW-LAMP", "k": 5})
        assert similar.status_code == 200 and len(similar.json()["recommendations"]) == 5
