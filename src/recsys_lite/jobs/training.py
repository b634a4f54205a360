"""Training jobs started from the admin API: one at a time, each in its own process.

``POST /training`` validates the request, writes it into a job folder (``jobs/<id>/`` beside
the store) and starts ``python -m recsys_lite.jobs.training <folder>``, niced
(``TRAINING_JOB_NICE``); the API only reads the job's ``status.json`` afterwards, and its
requests come before the job's fitting threads where the two compete for the cores
(bench/serving_during_training.py measures it). The job reports its stage and progress as it
goes, and its artifact is served only through the not-worse gate: the served recipe and the
requested one are fitted on the same older part of the events and scored on the same newer
part (online/gate.py); the requested recipe is trained on everything and published only if it
is not worse. The API's watcher then swaps it in.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from recsys_lite.config import Settings, get_settings
from recsys_lite.data.audit import AuditLog, audit_path
from recsys_lite.data.store import Store
from recsys_lite.errors import ConflictError, NotFoundError
from recsys_lite.evaluation.split import forward_split
from recsys_lite.models import create_model
from recsys_lite.models.artifact import read_manifest
from recsys_lite.online.gate import build_holdout, means, not_worse, score_on_holdout
from recsys_lite.training import train

JOBS = "jobs"
STATUS = "status.json"
REQUEST = "request.json"
GATE_SHARE = 0.2  # the newest share of events both recipes are judged on
GATE_METRIC = "ndcg@10"
ACTIVE = ("queued", "running")


def jobs_folder(settings: Settings) -> Path:
    return settings.db_path.parent / JOBS


def _write_status(folder: Path, status: dict[str, Any]) -> None:
    temporary = folder / f".{STATUS}.tmp"
    temporary.write_text(json.dumps(status, indent=2))
    os.replace(temporary, folder / STATUS)


def read_status(settings: Settings, job_id: str) -> dict[str, Any]:
    if not job_id.isalnum():
        raise NotFoundError(f"no training job {job_id!r}")
    path = jobs_folder(settings) / job_id / STATUS
    try:
        status: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        raise NotFoundError(f"no training job {job_id!r}") from None
    return status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_job(settings: Settings) -> dict[str, Any] | None:
    """The job that is queued or running, if any (a job whose process died is failed)."""
    folder = jobs_folder(settings)
    if not folder.is_dir():
        return None
    for job in sorted(folder.iterdir(), reverse=True):
        try:
            status = json.loads((job / STATUS).read_text())
        except (OSError, ValueError):
            continue
        if status.get("state") in ACTIVE:
            if status.get("pid") and not _alive(int(status["pid"])):
                status.update(state="failed", error="the job's process ended unexpectedly")
                _write_status(job, status)
                continue
            return dict(status)
    return None


def start_job(
    settings: Settings, model: str, params: dict[str, Any] | None, tune_trials: int, actor: str
) -> dict[str, Any]:
    create_model(model, params)  # refuse a bad request before starting anything
    running = running_job(settings)
    if running is not None:
        raise ConflictError(f"training job {running['id']} is still {running['state']}")
    job_id = time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(3)
    folder = jobs_folder(settings) / job_id
    folder.mkdir(parents=True)
    request = {"model": model, "params": params, "tune_trials": tune_trials, "actor": actor}
    (folder / REQUEST).write_text(json.dumps(request))
    status = {"id": job_id, "state": "queued", "stage": "starting", "percent": 0, **request}
    _write_status(folder, status)
    env = {**os.environ, "DB_PATH": str(settings.db_path), "MODEL_DIR": str(settings.model_dir)}
    command = [sys.executable, "-m", "recsys_lite.jobs.training", str(folder)]
    nice = shutil.which("nice")
    if settings.training_job_nice and nice:
        # niced before the interpreter starts, so every thread the fit spawns (BLAS, OpenMP)
        # inherits it: on a small machine the API's requests come first, the job takes the rest
        command = [nice, "-n", str(settings.training_job_nice), *command]
    process = subprocess.Popen(
        command,
        stdout=(folder / "job.log").open("w"), stderr=subprocess.STDOUT, env=env,
        start_new_session=True,  # the job outlives a restart of the API that started it
    )  # fmt: skip
    # reaped as soon as it ends: a job killed (or out of memory) would otherwise stay a zombie
    # of this process, alive to running_job, and refuse every later job with 409
    threading.Thread(target=process.wait, name=f"job-{job_id}", daemon=True).start()
    status["pid"] = process.pid
    _write_status(folder, status)
    AuditLog(audit_path(settings.db_path)).append(
        "training.started", actor=actor, details={"job": job_id, "model": model}
    )
    return status


def run_job(folder: Path, settings: Settings) -> None:
    request = json.loads((folder / REQUEST).read_text())
    status = json.loads((folder / STATUS).read_text())
    status.update(state="running", pid=os.getpid(), started_at=time.time())

    def stage(name: str, percent: int) -> None:
        status.update(stage=name, percent=percent)
        _write_status(folder, status)

    try:
        store = Store(settings.db_path)
        name, params = request["model"], request.get("params")
        stage("reading the store", 5)
        events, items = store.read_events(), store.read_items()
        if request.get("tune_trials"):
            from recsys_lite.tuning.search import tune

            stage(f"tuning ({request['tune_trials']} trials)", 10)
            outcome = tune(
                name, events, items, trials=int(request["tune_trials"]),
                study_path=folder / "study.jsonl", settings=settings, show_progress=False,
            )  # fmt: skip
            params = outcome.best_params
            status["tuned_params"] = params
        stage("gate: fitting both recipes on the older events", 40)
        decision, metrics = _gate(settings, events, items, name, params)
        status["gate"] = metrics
        if not decision:
            status.update(state="refused", stage="done", percent=100, finished_at=time.time())
            _write_status(folder, status)
            return
        stage("training on every event", 70)
        result = train(store, name, settings.model_dir, params=params, settings=settings,
                       show_progress=False)  # fmt: skip
        status.update(
            state="succeeded", stage="done", percent=100, metrics=result.metrics,
            finished_at=time.time(),
        )  # fmt: skip
    except Exception as exc:
        status.update(state="failed", error=f"{type(exc).__name__}: {exc}", finished_at=time.time())
        (folder / "error.txt").write_text(traceback.format_exc())
    _write_status(folder, status)
    AuditLog(audit_path(settings.db_path)).append(
        "training.finished", actor=str(request.get("actor", "admin")),
        outcome=str(status["state"]), details={"job": status["id"]},
    )  # fmt: skip


def _gate(
    settings: Settings, events: Any, items: Any, name: str, params: dict[str, Any] | None
) -> tuple[bool, dict[str, Any]]:
    """Whether the requested recipe is not worse than the served one on the newest events."""
    try:
        served = read_manifest(settings.model_dir)
    except Exception:
        return True, {"served": None, "note": "nothing served yet"}
    stamps = events.column("ts").to_numpy()
    boundary = int(sorted(stamps)[int(len(stamps) * (1 - GATE_SHARE))])
    split = forward_split(events, boundary)
    catalog = split.catalog(items)  # no item first seen in the judged window
    incumbent = create_model(served["model_type"], served.get("params")).fit(split.train, catalog)
    candidate = create_model(name, params).fit(split.train, catalog)
    holdout = build_holdout(split.train, split.test, [incumbent, candidate])
    incumbent_scores = score_on_holdout(incumbent, holdout)
    candidate_scores = score_on_holdout(candidate, holdout)
    decision = not_worse(incumbent_scores[GATE_METRIC], candidate_scores[GATE_METRIC])
    return decision, {
        "served_recipe": means(incumbent_scores), "requested_recipe": means(candidate_scores),
        "users": len(holdout.users), "not_worse": bool(decision),
    }  # fmt: skip


if __name__ == "__main__":
    run_job(Path(sys.argv[1]), get_settings())
