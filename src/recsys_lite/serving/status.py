"""The operator's view (``GET /status`` and ``recsys-lite status``), built in one place so the
API and the command line answer alike; the command line has no online state or bus position
(those live in API processes) and says so with nulls."""

from __future__ import annotations

from typing import Any

from recsys_lite.config import Settings
from recsys_lite.data.store import Store
from recsys_lite.errors import RecsysError
from recsys_lite.jobs.training import running_job
from recsys_lite.models import retrieval
from recsys_lite.models.artifact import Artifact
from recsys_lite.models.index import VectorIndex
from recsys_lite.online.health import read_worker_health
from recsys_lite.ranking import diversity, explain


def model_section(artifact: Artifact) -> dict[str, Any]:
    manifest, model = artifact.manifest, artifact.model
    index = model.user_index or model.item_index
    return {
        "type": model.name, "params": manifest.get("params"),
        "created_at": manifest.get("created_at"), "version": manifest.get("version"),
        "trained_until_ts": manifest.get("trained_until_ts"),
        "holdout_metrics": artifact.metrics.get("metrics"),
        "users": len(model.user_map), "items": len(model.item_map),
        "index": index.kind if index is not None else "exact",
        # what HNSW found on sample queries when built, per index (null: not calibrated)
        "index_calibration": {
            role: _calibration(getattr(model, f"{role}_index", None)) for role in ("user", "item")
        },
    }  # fmt: skip


def _calibration(index: object) -> dict[str, Any] | None:
    if isinstance(index, VectorIndex) and index.calibration is not None:
        return index.calibration.as_dict()
    return None


def compiled_kernels() -> dict[str, bool]:
    """Which per-request loops run compiled: an install without a C compiler answers the
    same through numpy, only slower, and an operator should be able to see which it got."""
    return {
        "explanations": explain.kernel is not None,
        "diversity": diversity.kernel is not None,
        "filtered_retrieval": retrieval.kernel is not None,
    }


def status_document(
    settings: Settings,
    store: Store,
    artifact: Artifact,
    *,
    online: dict[str, Any] | None = None,
    bus: dict[str, Any] | None = None,
    store_waits: dict[str, Any] | None = None,
) -> dict[str, Any]:
    try:
        counts: dict[str, int] | None = store.counts()
    except RecsysError:  # busy or empty: the rest of the status still answers
        counts = None
    return {
        "store": counts,
        "model": model_section(artifact),
        "online": online,
        "bus": bus,
        "worker": read_worker_health(settings.worker_status_file),
        "training_job": running_job(settings),
        "store_waits": store_waits,
        "compiled_kernels": compiled_kernels(),
    }
