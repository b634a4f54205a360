"""Training from the admin API: a job in its own process, one at a time, with progress, and
its model served only after the not-worse gate."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from conftest import copy_shop, serving_client


def test_a_training_job_runs_apart_reports_progress_and_is_swapped_in(
    shop_db: Path, als_artifact: Path, tmp_path: Path
) -> None:
    db, model = copy_shop(shop_db, als_artifact, tmp_path)
    env = {"MODEL_WATCH_INTERVAL": "0.3", "INBOX_DRAIN_INTERVAL": "0"}
    with serving_client(model, db, tmp_path, env, timeout=30) as client:
        without_key = httpx.post(client.base_url.join("/training"), json={"model": "als"})
        assert without_key.status_code == 401
        refused = client.post("/training", json={"model": "alss"})
        assert refused.status_code == 400 and "did you mean 'als'" in refused.json()["message"]

        started = client.post("/training", json={"model": "als", "params": {"iterations": 5}})
        assert started.status_code == 202, started.text
        job = started.json()["id"]
        second = client.post("/training", json={"model": "popular"})
        assert second.status_code == 409 and second.json()["error"] == "conflict"
        assert client.get("/recommend", params={"user_id": "U00001"}).is_success  # still serving

        stages, deadline = set(), time.monotonic() + 240
        while True:
            status = client.get(f"/training/{job}").json()
            stages.add(status["stage"])
            if status["state"] not in ("queued", "running"):
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status["state"] == "succeeded", status
        assert status["percent"] == 100 and status["metrics"]
        assert status["gate"]["not_worse"] is True and status["gate"]["users"] > 0
        assert len(stages) >= 2  # progress was reported along the way
        deadline = time.monotonic() + 30
        while client.get("/status").json()["online"]["swaps"] < 1:
            assert time.monotonic() < deadline, "the trained model was never swapped in"
            time.sleep(0.2)
        assert client.get("/status").json()["model"]["params"]["iterations"] == 5
        assert client.get("/training/nosuchjob").status_code == 404


def test_a_job_runs_below_the_apis_priority_and_a_killed_one_does_not_block_the_next(
    shop_db: Path, als_artifact: Path, tmp_path: Path
) -> None:
    db, model = copy_shop(shop_db, als_artifact, tmp_path)
    with serving_client(model, db, tmp_path, timeout=30) as client:
        # tuning keeps the job busy for far longer than the test looks at it
        started = client.post("/training", json={"model": "als", "tune_trials": 200})
        assert started.status_code == 202, started.text
        pid = started.json()["pid"]
        deadline = time.monotonic() + 20
        while b"recsys_lite.jobs.training" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
        assert os.getpriority(os.PRIO_PROCESS, pid) == 10  # TRAINING_JOB_NICE's default
        assert os.getpriority(os.PRIO_PROCESS, 0) == 0  # the test, like the API, is not niced

        os.kill(pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
        deadline = time.monotonic() + 20
        while (again := client.post("/training", json={"model": "popular"})).status_code == 409:
            assert time.monotonic() < deadline, "a dead job still blocks training"
            time.sleep(0.2)
        assert again.status_code == 202, again.text
        killed = client.get(f"/training/{started.json()['id']}").json()
        assert killed["state"] == "failed" and "ended unexpectedly" in killed["error"]
