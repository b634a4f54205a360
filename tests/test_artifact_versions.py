"""Versioned artifacts: the served path is always there, old versions are kept, and one command
rolls the service back to the previous model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from conftest import copy_shop, running_server
from recsys_lite.data.store import Store
from recsys_lite.errors import ArtifactError
from recsys_lite.models.artifact import load_artifact, read_manifest, save_artifact
from recsys_lite.training import train


def test_the_served_path_never_goes_missing_while_artifacts_are_replaced(
    als_artifact: Path, tmp_path: Path
) -> None:
    model = load_artifact(als_artifact).model
    served = tmp_path / "current"
    save_artifact(model, served)
    missing: list[str] = []
    reads = 0
    stop = threading.Event()

    def read_continuously() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                read_manifest(served)
                reads += 1
            except ArtifactError as exc:
                missing.append(str(exc))

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for _ in range(30):
            save_artifact(model, served)
    finally:
        stop.set()
        reader.join()
    assert missing == [] and reads > 30
    versions = sorted(p.name for p in (tmp_path / "current.versions").iterdir())
    assert len(versions) == 3, "the newest three versions are kept"
    assert served.resolve().name == versions[-1] == read_manifest(served)["version"]


def test_rollback_serves_the_previous_model_again(
    shop_db: Path, als_artifact: Path, tmp_path: Path
) -> None:
    # an artifact written before versions existed: a plain directory
    db, model = copy_shop(shop_db, als_artifact, tmp_path)
    env = {"MODEL_WATCH_INTERVAL": "0.2", "INBOX_DRAIN_INTERVAL": "0"}
    with running_server(model, db, tmp_path, env) as url:

        def served_type() -> str:
            return str(httpx.get(f"{url}/health").json()["model_type"])

        def wait_for(model_type: str) -> None:
            deadline = time.monotonic() + 30
            while served_type() != model_type:
                assert time.monotonic() < deadline, f"{model_type} was never swapped in"
                time.sleep(0.1)

        store = Store(db)
        train(store, "popular", model, test_size=0, show_progress=False)
        wait_for("popular")
        rolled = subprocess.run(
            [sys.executable, "-m", "recsys_lite.cli", "rollback", "--model-dir",
             str(model)],
            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        assert rolled.returncode == 0, rolled.stderr
        wait_for("als")
        assert json.loads((model / "manifest.json").read_text())["model_type"] == "als"

        # nothing older to go back to: refused, and the served model stays
        again = subprocess.run(
            [sys.executable, "-m", "recsys_lite.cli", "rollback", "--model-dir",
             str(model)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert again.returncode == 1 and "no earlier version" in again.stderr
        assert served_type() == "als"


def test_rollback_refuses_a_version_that_no_longer_loads(
    als_artifact: Path, tmp_path: Path
) -> None:
    model = load_artifact(als_artifact).model
    served = tmp_path / "current"
    save_artifact(model, served)
    damaged = served.resolve()
    save_artifact(model, served)
    now_served = served.resolve()
    (damaged / "model.npz").write_bytes(b"not a model")
    refused = subprocess.run(
        [sys.executable, "-m", "recsys_lite.cli", "rollback", "--model-dir", str(served)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode == 1 and "corrupt" in refused.stderr
    assert served.resolve() == now_served
