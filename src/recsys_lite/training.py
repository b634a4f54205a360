"""Training runs: read the store, evaluate the recipe on a time-aware holdout, fit, save."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from recsys_lite.config import Settings, get_settings
from recsys_lite.data.store import Store
from recsys_lite.errors import EmptyDataError, VectorStoreError
from recsys_lite.evaluation.evaluate import evaluate_model
from recsys_lite.evaluation.split import SplitMethod, forward_split, make_split
from recsys_lite.models import Recommender, create_model
from recsys_lite.models.artifact import load_artifact, save_artifact
from recsys_lite.search import build as search_build

logger = logging.getLogger(__name__)

# How a model is built for a fit: create_model (the embedded engine) or another engine's
# factory (engines/spark.py), which fits the same model elsewhere.
ModelFactory = Callable[[str, dict[str, Any] | None], Recommender]


@dataclass
class TrainResult:
    path: Path
    model: Recommender
    metrics: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def _fit(
    name: str,
    params: dict[str, Any] | None,
    events: pa.Table,
    items: pa.Table | None,
    settings: Settings,
    progress: bool,
    model_factory: ModelFactory = create_model,
) -> Recommender:
    model = model_factory(name, params)
    model.threads = settings.threads
    return model.fit(events, items, show_progress=progress)


def holdout_metrics(
    name: str,
    params: dict[str, Any] | None,
    events: pa.Table,
    items: pa.Table | None = None,
    *,
    split_method: SplitMethod = "temporal",
    test_size: float = 0.2,
    last_n: int = 1,
    settings: Settings | None = None,
    show_progress: bool = False,
    model_factory: ModelFactory = create_model,
) -> dict[str, Any]:
    """Fit a fresh model on the training part of a split and evaluate it on the test part.

    Items first seen in the test part are out of both: the fit gets the catalog without them,
    and their test events are not targets (the split's description counts them).
    """
    settings = settings or get_settings()
    split = make_split(events, split_method, test_size, last_n)
    started = time.perf_counter()
    model = _fit(
        name, params, split.train, split.catalog(items), settings, show_progress, model_factory
    )
    fit_seconds = time.perf_counter() - started
    metrics = evaluate_model(
        model, split.test, show_progress=show_progress, threads=settings.threads
    )
    metrics["split"] = split.description
    metrics["train_seconds"] = round(fit_seconds, 3)
    return metrics


def train(
    store: Store,
    name: str,
    output: Path,
    *,
    params: dict[str, Any] | None = None,
    test_size: float = 0.2,
    split_method: SplitMethod = "temporal",
    last_n: int = 1,
    settings: Settings | None = None,
    show_progress: bool = True,
    extra_files: Mapping[str, str | bytes] | None = None,
    model_factory: ModelFactory = create_model,
    events: pa.Table | None = None,
) -> TrainResult:
    """Evaluate the recipe on a holdout (unless test_size is 0), then fit on all events and save.

    The served model sees every event, including the test period; its metrics.json describes
    the same recipe trained without that period. ``events`` replaces the store's events (an
    event archive); the catalog still comes from the store.
    """
    settings = settings or get_settings()
    create_model(name, params)  # refuse bad params before reading or fitting anything
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    # When the store was read: erasures before it are in this model (a full retrain without
    # them), later ones only forgotten in place until the next (jobs/worker.py).
    events_read_at = time.time()
    events = store.read_events() if events is None else events
    items = store.read_items()
    fingerprint = store.fingerprint()
    timings["read"] = time.perf_counter() - clock
    search_wanted = search_build.wanted(settings, items)  # SEARCH_INDEX=on without the extra
    # fails here, before minutes of fitting
    if events.num_rows == 0:
        raise EmptyDataError(f"{store.path}: the store holds no events; ingest some first")

    metrics: dict[str, Any] = {}
    if test_size > 0:
        clock = time.perf_counter()
        metrics = holdout_metrics(
            name,
            params,
            events,
            items,
            split_method=split_method,
            test_size=test_size,
            last_n=last_n,
            settings=settings,
            show_progress=show_progress,
            model_factory=model_factory,
        )
        timings["holdout"] = time.perf_counter() - clock

    clock = time.perf_counter()
    model = _fit(name, params, events, items, settings, show_progress, model_factory)
    timings["fit"] = time.perf_counter() - clock
    clock = time.perf_counter()
    model.build_indexes(settings.faiss_index, settings)
    timings["index"] = time.perf_counter() - clock
    search: dict[str, Any] | None = None
    if search_wanted:
        clock = time.perf_counter()
        data, search = search_build.build_index_bytes(
            items, previous=output, threads=settings.threads
        )
        extra_files = {**(extra_files or {}), search_build.SEARCH_FILE: data}
        timings["search_index"] = time.perf_counter() - clock
    clock = time.perf_counter()
    trained_until = pc.max(events.column("ts")).as_py()
    save_artifact(
        model,
        output,
        metrics=metrics,
        extra={
            "data_fingerprint": fingerprint,
            "training_events": events.num_rows,
            "trained_until_ts": trained_until,
            "events_read_at": round(events_read_at, 3),
            "evaluation": metrics.get("split"),
            **({"search_index": search} if search else {}),
        },
        extra_files=extra_files,
    )
    timings["save"] = time.perf_counter() - clock
    if settings.vector_store == "qdrant" and settings.qdrant_url:
        clock = time.perf_counter()
        _upload_vectors(output, settings)
        timings["vector_store"] = time.perf_counter() - clock
    return TrainResult(output, model, metrics, {k: round(v, 3) for k, v in timings.items()})


def _upload_vectors(output: Path, settings: Settings) -> None:
    """The artifact's collections on the Qdrant server now, so the API processes that load it
    open them instead of uploading at start-up."""
    try:
        load_artifact(output, settings)
    except VectorStoreError as exc:  # the artifact is saved; the first process to load it uploads
        logger.warning("vector store not filled at training: %s", exc.message)


def evaluate_artifact(
    model_dir: Path, store: Store, settings: Settings | None = None, show_progress: bool = True
) -> dict[str, Any]:
    """Evaluate a served artifact against a store.

    Events newer than the artifact's training data are a true forward holdout for the served
    model itself (except those of items first seen after it, which it could not know). Without
    such events the recipe (model type and params) is re-evaluated on the
    holdout recorded in the artifact, since scoring the served model on data it was trained on
    would flatter it.
    """
    settings = settings or get_settings()
    artifact = load_artifact(model_dir, settings)
    events = store.read_events()
    items = store.read_items()
    trained_until = artifact.manifest.get("trained_until_ts")
    if trained_until is not None:
        forward = forward_split(events, trained_until)
        if forward.test.num_rows:
            result = evaluate_model(artifact.model, forward.test, show_progress=show_progress)
            result["split"] = forward.description
            return result
    split = artifact.manifest.get("evaluation") or {"method": "temporal", "test_size": 0.2}
    return holdout_metrics(
        artifact.manifest["model_type"],
        artifact.manifest.get("params"),
        events,
        items,
        split_method=split.get("method", "temporal"),
        test_size=split.get("test_size", 0.2),
        last_n=split.get("n", 1),
        settings=settings,
        show_progress=show_progress,
    )
