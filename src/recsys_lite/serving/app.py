"""The FastAPI application.

Handlers are ``async def``: scoring takes a millisecond or two of numpy, cheaper than a hop to
the thread pool. Responses are built as plain dicts from the catalog's prepared payloads and
returned as ``JSONResponse``, which skips FastAPI's per-item pydantic validation; the response
models still document the contract in /docs.
"""

# No `from __future__ import annotations`: FastAPI must resolve the local Annotated aliases.
import logging
import time
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from recsys_lite import __version__
from recsys_lite.config import Settings, get_settings
from recsys_lite.data.store import Store
from recsys_lite.errors import NotFoundError, RecsysError
from recsys_lite.models.artifact import Artifact, load_artifact
from recsys_lite.serving.catalog import Catalog
from recsys_lite.serving.schemas import (
    ErrorResponse,
    HealthResponse,
    RecommendResponse,
    SimilarItemsResponse,
)
from recsys_lite.serving.telemetry import Telemetry, TelemetryMiddleware

log = logging.getLogger(__name__)
ENDPOINTS = {"/recommend", "/similar-items", "/health", "/live", "/ready", "/metrics"}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 422, 503)
}


class ServingState:
    """What a request reads: the artifact and the catalog aligned with its items."""

    def __init__(self, artifact: Artifact, catalog: Catalog) -> None:
        self.artifact = artifact
        self.model = artifact.model
        self.catalog = catalog

    @classmethod
    def load(cls, settings: Settings) -> "ServingState":
        artifact = load_artifact(settings.model_dir, settings)
        catalog = Catalog.from_store(artifact.model.item_map, Store(settings.db_path))
        return cls(artifact, catalog)


def create_app(settings: Settings | None = None, state: ServingState | None = None) -> FastAPI:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level.upper())
    serving = state or ServingState.load(settings)
    telemetry = Telemetry(ENDPOINTS)
    telemetry.model_info.labels(
        serving.model.name, serving.artifact.manifest.get("created_at", "")
    ).set(1)
    started = time.monotonic()
    max_k = settings.max_recommendations

    app = FastAPI(
        title="RecSys-Lite",
        version=__version__,
        description="Recommendations from a model trained on this shop's own data.",
    )
    app.state.serving = serving
    app.add_middleware(TelemetryMiddleware, telemetry=telemetry)

    @app.exception_handler(RecsysError)
    async def recsys_error(request: Request, exc: RecsysError) -> JSONResponse:
        telemetry.errors.labels(telemetry.endpoint_label(request.url.path), exc.code).inc()
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        telemetry.errors.labels(telemetry.endpoint_label(request.url.path), "invalid_input").inc()
        details = [
            {"location": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors()
        ]
        message = "; ".join(f"{d['location']}: {d['message']}" for d in details)
        return JSONResponse(
            {"error": "invalid_input", "message": message, "details": details}, status_code=422
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        telemetry.errors.labels(telemetry.endpoint_label(request.url.path), "internal").inc()
        return JSONResponse(
            {"error": "internal_error", "message": "internal error"}, status_code=500
        )

    UserId = Annotated[str, Query(min_length=1, max_length=256, description="external user id")]
    ItemId = Annotated[str, Query(min_length=1, max_length=256, description="external item id")]
    K = Annotated[int, Query(ge=1, le=max_k, description="number of items")]
    Category = Annotated[str | None, Query(max_length=256, description="only this category")]
    Brand = Annotated[str | None, Query(max_length=256, description="only this brand")]

    @app.get(
        "/recommend",
        response_model=RecommendResponse,
        responses=ERROR_RESPONSES,
        summary="Top-k items for a user; unknown users get popular items",
    )
    async def recommend(
        user_id: UserId,
        k: K = 10,
        use_faiss: bool = True,
        exclude_seen: bool = True,
        category: Category = None,
        brand: Brand = None,
    ) -> JSONResponse:
        state: ServingState = app.state.serving
        mask = state.catalog.mask(category, brand)
        if state.model.knows_user(user_id):
            ranked = state.model.recommend(
                user_id, k, exclude_seen=exclude_seen, item_mask=mask, use_index=use_faiss
            )
            source = state.model.name
        else:
            ranked = state.model.popular(k, item_mask=mask)
            source = "popular"
            telemetry.fallbacks.labels("unknown_user").inc()
        telemetry.served.labels("/recommend", source).inc(len(ranked.items))
        return JSONResponse(
            {
                "user_id": user_id,
                "source": source,
                "recommendations": state.catalog.describe(ranked.items, ranked.scores),
            }
        )

    @app.get(
        "/similar-items",
        response_model=SimilarItemsResponse,
        responses=ERROR_RESPONSES,
        summary="Items most similar to an item",
    )
    async def similar_items(
        item_id: ItemId,
        k: K = 10,
        use_faiss: bool = True,
        category: Category = None,
        brand: Brand = None,
    ) -> JSONResponse:
        state: ServingState = app.state.serving
        if item_id not in state.model.item_map:
            raise NotFoundError(f"unknown item {item_id!r}")
        mask = state.catalog.mask(category, brand)
        ranked = state.model.similar_items(item_id, k, item_mask=mask, use_index=use_faiss)
        source = state.model.name
        if ranked is None:
            item = state.model.item_map.index(item_id)
            not_itself = np.ones(len(state.model.item_map), dtype=bool)
            not_itself[item] = False
            ranked = state.model.popular(
                k, item_mask=not_itself if mask is None else mask & not_itself
            )
            source = "popular"
            telemetry.fallbacks.labels("no_item_vectors").inc()
        telemetry.served.labels("/similar-items", source).inc(len(ranked.items))
        return JSONResponse(
            {
                "item_id": item_id,
                "source": source,
                "recommendations": state.catalog.describe(ranked.items, ranked.scores),
            }
        )

    @app.get("/health", response_model=HealthResponse, summary="Status of the served model")
    async def health() -> JSONResponse:
        state: ServingState = app.state.serving
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "model_type": state.model.name,
                "uptime_seconds": round(time.monotonic() - started, 3),
            }
        )

    @app.get("/live", summary="Liveness probe")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/ready", summary="Readiness probe: a model is loaded")
    async def ready() -> JSONResponse:
        state: ServingState = app.state.serving
        ok = state.model.fitted
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            generate_latest(telemetry.registry).decode(), media_type=CONTENT_TYPE_LATEST
        )

    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (one app per worker process, settings from env)."""
    return create_app(get_settings())
