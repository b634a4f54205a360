"""The background worker: folds new events into the store, retrains, and swaps in a better model.

The gate is a forward test on data neither model has seen. The events that arrived after the
served model's training cutoff are split in time into an older half H1 and a newer half H2.
The served model (trained before H1) and a candidate trained with the same recipe on
everything before H2 are both scored on H2, for the same users against the same targets
(online/gate.py). Only if the candidate is not worse is the recipe refit on all events and
written as a new version of the served artifact; the API notices it and swaps it in between
requests.

An erased shopper is forgotten by the served model at once (models/forgetting.py), exactly for
some models and in part for others; a full retrain from the store, which no longer holds their
events, is due within ``ERASURE_RETRAIN_HOURS``. The worker runs it, without the gate (privacy
comes before a metric), once the oldest erasure the served model predates is half that old, so
erasures close together share one retrain and a failed one has time to be retried; the audit
trail records it. Retention (``EVENT_RETENTION_DAYS``) is applied here too.

It orchestrates online updates and privacy work, so it sits above both, in ``jobs``.
"""

from __future__ import annotations

import calendar
import logging
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from recsys_lite.config import Settings, get_settings
from recsys_lite.data.audit import AuditLog, audit_path
from recsys_lite.data.store import Store
from recsys_lite.errors import RecsysError
from recsys_lite.evaluation.split import forward_split
from recsys_lite.models import create_model
from recsys_lite.models.artifact import Artifact, artifact_version, load_artifact, read_manifest
from recsys_lite.online.bus import EventBus, InboxBus, create_bus
from recsys_lite.online.gate import build_holdout, means, not_worse, score_on_holdout
from recsys_lite.online.health import WorkerHealth
from recsys_lite.online.inbox import Inbox, drain
from recsys_lite.privacy.erase import Eraser
from recsys_lite.privacy.retention import apply_retention
from recsys_lite.training import train

log = logging.getLogger(__name__)
WORKER_GROUP = "store-writer"


ERASURE_RETRAIN_AT = 0.5  # of ERASURE_RETRAIN_HOURS after the oldest erasure not yet retrained


@dataclass
class CycleReport:
    new_events: int = 0
    decision: str = "waiting"  # waiting | swapped | kept | retrained after erasure
    served: dict[str, float] = field(default_factory=dict)
    candidate: dict[str, float] = field(default_factory=dict)
    holdout_users: int = 0  # both models were scored for these users, on the same targets
    seconds: float = 0.0


class ServedArtifact:
    """The served artifact, loaded (every file checksummed) once per version: each cycle reads
    only its manifest, and the model only when a retrain is due."""

    def __init__(self, model_dir: Path, settings: Settings) -> None:
        self.model_dir = model_dir
        self.settings = settings
        self._loaded: Artifact | None = None

    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.model_dir)

    def load(self, manifest: dict[str, Any]) -> Artifact:
        if self._loaded is None or artifact_version(self._loaded.manifest) != artifact_version(
            manifest
        ):
            self._loaded = load_artifact(self.model_dir, self.settings)
        return self._loaded


def fold_bus_into_store(bus: EventBus, inbox: Inbox, store: Store, consumer: str) -> int:
    """Batches from replicas elsewhere reach the store through this worker's inbox; a batch is
    acknowledged only once it is in the store, so a crash replays it (ingestion dedups)."""
    if isinstance(bus, InboxBus):  # embedded: the replicas' inbox is ours already
        drain(store, inbox)
        return 0
    messages = bus.consume(WORKER_GROUP, consumer)
    for message in messages:
        inbox.write(message.events, items=message.batch_id.startswith("items"))
    drain(store, inbox)
    bus.ack(WORKER_GROUP, [m.id for m in messages])
    return len(messages)


def retrain_cycle(
    store: Store,
    model_dir: Path,
    *,
    min_new_events: int,
    metric: str = "ndcg@10",
    tolerance: float = 0.0,
    settings: Settings | None = None,
    served_artifact: ServedArtifact | None = None,
) -> CycleReport:
    settings = settings or get_settings()
    started = time.perf_counter()
    served_artifact = served_artifact or ServedArtifact(model_dir, settings)
    manifest = served_artifact.manifest()
    cutoff = manifest.get("trained_until_ts") or 0
    events, items = store.read_events(), store.read_items()
    new = events.filter(pc.greater(events.column("ts"), cutoff))
    report = CycleReport(new_events=new.num_rows)
    if new.num_rows < max(min_new_events, 2):
        return report
    newest = new.column("ts").to_numpy()
    boundary = int(sorted(newest)[len(newest) // 2])
    window = events.filter(pc.greater(events.column("ts"), boundary))
    if window.num_rows == 0:
        return report
    served = served_artifact.load(manifest)
    name, params = manifest["model_type"], manifest.get("params")
    candidate = create_model(name, params)
    candidate.threads = settings.threads
    # the candidate sees what the served model could have seen: no item first seen in the
    # window, whose events are no target either (neither model could know it)
    split = forward_split(events, boundary)
    before = split.train
    candidate.fit(before, split.catalog(items))
    holdout = build_holdout(before, split.test, [served.model, candidate])
    report.holdout_users = len(holdout.users)
    served_scores = score_on_holdout(served.model, holdout)
    candidate_scores = score_on_holdout(candidate, holdout)
    report.served, report.candidate = means(served_scores), means(candidate_scores)
    if not_worse(served_scores[metric], candidate_scores[metric], tolerance=tolerance):
        train(store, name, model_dir, params=params, settings=settings, show_progress=False)
        report.decision = "swapped"
    else:
        report.decision = "kept"
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def erasures_since_training(store: Store, manifest: dict[str, Any]) -> dict[str, int]:
    """Erased subjects (keyed hashes) and when, for erasures the served model was trained
    before: it only forgot them in place. Artifacts without ``events_read_at`` predate it; one
    the erasure republished (``forgotten_users``) never counts as a full retrain."""
    read_at = manifest.get("events_read_at")
    if read_at is None:
        read_at = 0.0 if "forgotten_users" in manifest else _created_at(manifest)
    with store.connect(read_only=True) as con:
        rows = con.execute(
            "SELECT subject, erased_at FROM erased_subjects WHERE erased_at + 1 > ?", [read_at]
        ).fetchall()
    return {str(subject): int(at) for subject, at in rows}


def _created_at(manifest: dict[str, Any]) -> float:
    created = manifest.get("created_at")
    if created is None:
        return 0.0
    return float(calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")))


def retrain_after_erasures(store: Store, model_dir: Path, settings: Settings) -> CycleReport | None:
    """The full retrain without erased shoppers, when one is due; None when none is. Waits
    while an erasure is still running, so that its events are surely gone from the store."""
    from recsys_lite.privacy.erase import JOURNALS

    manifest = read_manifest(model_dir)
    erased = erasures_since_training(store, manifest)
    if not erased:
        return None
    due_at = min(erased.values()) + settings.erasure_retrain_hours * 3600 * ERASURE_RETRAIN_AT
    running = any((store.path.parent / JOURNALS).glob("*.json"))
    if time.time() < due_at or running:
        return None
    started = time.perf_counter()
    name, params = manifest["model_type"], manifest.get("params")
    train(store, name, model_dir, params=params, settings=settings, show_progress=False)
    report = CycleReport(
        decision="retrained after erasure", seconds=round(time.perf_counter() - started, 3)
    )
    audit_erasure_retrain(store, model_dir, settings, erased, report)
    return report


def audit_erasure_retrain(
    store: Store,
    model_dir: Path,
    settings: Settings,
    erased: dict[str, int],
    report: CycleReport,
) -> None:
    from recsys_lite.data.audit import AuditLog, audit_path

    manifest = read_manifest(model_dir)
    deadline = min(erased.values()) + settings.erasure_retrain_hours * 3600
    AuditLog(audit_path(store.path)).append(
        "retrain.after_erasure", actor="worker",
        details={
            "model": manifest.get("model_type"), "version": artifact_version(manifest),
            "how": report.decision, "erasures": len(erased), "subjects": sorted(erased),
            "training_events": manifest.get("training_events"), "seconds": report.seconds,
            "within_deadline": time.time() <= deadline,
        },
    )  # fmt: skip


def apply_retention_and_retrain(
    store: Store, model_dir: Path, settings: Settings, served_artifact: ServedArtifact
) -> bool:
    """Delete events older than EVENT_RETENTION_DAYS and, when any went, retrain at once so the
    models forget them too (audited); whether a retrain ran."""
    days = settings.event_retention_days
    assert days is not None
    local = settings.model_copy(update={"db_path": store.path})
    deleted = apply_retention(local, days, actor="worker")
    if not deleted["events_deleted"]:
        return False
    manifest = served_artifact.manifest()
    result = train(
        store, manifest["model_type"], model_dir, params=manifest.get("params"),
        settings=settings, show_progress=False,
    )  # fmt: skip
    AuditLog(audit_path(store.path)).append(
        "retrain.after_retention", actor="worker",
        details={"events_deleted": deleted["events_deleted"], "metrics": result.metrics},
    )  # fmt: skip
    return True


def run_worker(
    model_dir: Path,
    store: Store,
    *,
    interval: float = 60.0,
    retrain_every: float = 3600.0,
    min_new_events: int = 1000,
    once: bool = False,
    settings: Settings | None = None,
) -> list[CycleReport]:
    """Fold events every ``interval`` seconds; retrain when ``min_new_events`` have arrived or
    ``retrain_every`` seconds have passed with at least some new events.

    A cycle that fails for any reason (a bad row, a full disk, a bug) never stops the worker:
    the served model stays, the failure is reported, and the cycle is retried after a backoff
    that doubles up to ``retrain_every``.
    """
    settings = settings or get_settings()
    inbox = Inbox(settings.inbox_dir or store.path.parent / "inbox")
    bus = create_bus(settings, inbox)
    consumer = f"{socket.gethostname()}-worker"
    health = WorkerHealth(store.path.parent / settings.worker_status_file.name)
    last_retrain = time.monotonic()
    served_artifact = ServedArtifact(model_dir, settings)
    # a worker runs for months: only the latest cycles are kept (the last one is in health)
    reports: deque[CycleReport] = deque(maxlen=100)
    # erasures a crash interrupted are finished before anything is trained
    try:
        Eraser(
            settings.model_copy(update={"db_path": store.path, "model_dir": model_dir})
        ).resume_pending()
    except Exception:
        log.exception("interrupted erasures not finished yet; the next start retries")
    try:
        while True:
            wait = interval
            try:
                fold_bus_into_store(bus, inbox, store, consumer)
                if settings.event_retention_days and apply_retention_and_retrain(
                    store, model_dir, settings, served_artifact
                ):
                    last_retrain = time.monotonic()
                overdue = time.monotonic() - last_retrain >= retrain_every
                erased = erasures_since_training(store, served_artifact.manifest())
                report = retrain_cycle(
                    store, model_dir, min_new_events=1 if overdue else min_new_events,
                    settings=settings, served_artifact=served_artifact,
                )  # fmt: skip
                if report.decision == "swapped" and erased:
                    # a swap is a full retrain too, from a store without the erased shoppers
                    audit_erasure_retrain(store, model_dir, settings, erased, report)
                else:
                    report = retrain_after_erasures(store, model_dir, settings) or report
                if report.decision != "waiting":
                    last_retrain = time.monotonic()
                    log.info(
                        "%s after %d new events: served %s, candidate %s", report.decision,
                        report.new_events, _short(report.served), _short(report.candidate),
                    )  # fmt: skip
                reports.append(report)
                health.succeeded(report.decision, report.seconds)
            except Exception as exc:
                wait = min(interval * 2**health.consecutive_failures, max(retrain_every, interval))
                log.error("worker cycle failed (retrying in %.0f s): %s", wait, exc,
                          exc_info=not isinstance(exc, RecsysError))  # fmt: skip
                health.failed(exc, wait)
            if once:
                return list(reports)
            time.sleep(wait)
    finally:
        bus.close()


def _short(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.endswith("@10"))
