"""An API process that learns of an erasure while it loads a new artifact (each erasure publishes
one, so erasures in a row meet this every time): the shopper must stay unknown once the new
artifact is served, not only until then."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import recsys_lite.serving.runtime as runtime_module
from recsys_lite.config import Settings
from recsys_lite.data.store import Store
from recsys_lite.data.subjects import load_key, subject_hash
from recsys_lite.models.forgetting import forget_users
from recsys_lite.serving.lists import recommend
from recsys_lite.serving.runtime import Runtime
from recsys_lite.serving.schemas import RecommendQuery
from recsys_lite.training import train


def served(runtime: Runtime, user: str) -> str:
    return recommend(runtime.state, RecommendQuery(user_id=user)).source


def test_a_shopper_erased_while_a_new_artifact_loads_stays_unknown_after_the_swap(
    shop_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, model_dir = tmp_path / "shop.db", tmp_path / "model"
    shutil.copy(shop_db, db)
    train(Store(db), "als", model_dir, params={"iterations": 4}, test_size=0, show_progress=False)
    runtime = Runtime(Settings(db_path=db, model_dir=model_dir))
    earlier, shopper = (str(user) for user in runtime.state.model.user_map.ids[:2])
    assert served(runtime, shopper) == "als"
    key = load_key(db)
    # an earlier erasure, which the loading thread makes the fresh model forget too
    runtime.forget([subject_hash(key, earlier)], int(time.time()))

    # the load holds where it forgets the earlier shopper in the fresh model: past the point
    # where it read which shoppers are erased
    loading, resume = threading.Event(), threading.Event()

    def held(model: Any, users: Any, **options: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            loading.set()
            assert resume.wait(30)
        forget_users(model, users, **options)

    monkeypatch.setattr(runtime_module, "forget_users", held)

    async def erase_during_swap() -> None:
        swap = asyncio.create_task(runtime.swap_in())
        assert await asyncio.to_thread(loading.wait, 30), "the swap never reached forgetting"
        # the erase message arrives (the bus loop runs on the event loop, as here)
        runtime.forget([subject_hash(key, shopper)], int(time.time()))
        assert served(runtime, shopper) == "popular"
        resume.set()
        await swap

    asyncio.run(erase_during_swap())
    assert runtime.swaps == 1
    assert served(runtime, shopper) == "popular"
    assert served(runtime, earlier) == "popular"
