"""What orchestrators and monitoring read: health, liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import os
import time

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recsys_lite import __version__
from recsys_lite.config import Settings
from recsys_lite.online.health import read_worker_health
from recsys_lite.serving.errors import Json
from recsys_lite.serving.runtime import Runtime
from recsys_lite.serving.schemas import HealthResponse
from recsys_lite.serving.telemetry import Telemetry


def probe_router(settings: Settings, runtime: Runtime, telemetry: Telemetry) -> APIRouter:
    router = APIRouter()
    started = time.monotonic()

    @router.get("/health", response_model=HealthResponse, summary="Status of the served model")
    async def health() -> Json:
        return Json(
            {
                "status": "ok",
                "version": __version__,
                "model_type": runtime.state.model.name,
                "uptime_seconds": round(time.monotonic() - started, 3),
            }
        )

    @router.get("/live", summary="Liveness probe")
    async def live() -> Json:
        # the process id tells replicas apart behind one port
        return Json({"status": "alive"}, headers={"x-process-id": str(os.getpid())})

    @router.get("/ready", summary="Readiness probe: a model is loaded")
    async def ready() -> Json:
        # a failing worker does not make this process unready (it serves the model it has),
        # but its report is here for whoever watches
        # answers without item metadata until a busy store gives the catalog: not ready
        ok = runtime.state.model.fitted and runtime.catalog_loaded
        worker = read_worker_health(settings.worker_status_file)
        details = {"worker": worker, "store": runtime.store_report()}
        return Json({"ready": ok, "details": details}, status_code=200 if ok else 503)

    @router.get(
        "/metrics", summary="Prometheus metrics",
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )  # fmt: skip
    async def metrics() -> PlainTextResponse:
        state = runtime.state
        telemetry.model_info.clear()
        telemetry.model_info.labels(
            state.model.name, state.artifact.manifest.get("created_at", "")
        ).set(1)
        return PlainTextResponse(
            generate_latest(telemetry.registry).decode(), media_type=CONTENT_TYPE_LATEST
        )

    return router
