"""The FastAPI application: construction, middleware and the shop-facing routes; the
operator's routes are routers of their own (probe_routes, admin_routes, training_routes,
privacy_routes), state and background work live in runtime.py.

Read handlers are ``async def``: scoring takes well under a millisecond, cheaper than a hop to
the thread pool. The two hot GET endpoints read their query with one pydantic model validation
instead of FastAPI's per-parameter machinery (which cost more than the Faiss search), answer
with bytes joined from JSON each catalog item had encoded once (catalog.py), skipping FastAPI's
per-item response validation, and are called without the router (hot_reads.py), as /search
is; the query and response models still document the contract in /docs.
"""

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pyarrow as pa
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.middleware import Middleware

from recsys_lite import __version__
from recsys_lite.config import Settings, get_settings
from recsys_lite.data.store import ITEM_FIELDS
from recsys_lite.data.validation import OPTIONAL_EVENT_COLUMNS, SET_FIELDS
from recsys_lite.errors import NotFoundError
from recsys_lite.observability.logs import configure_logging
from recsys_lite.search import api as search_api
from recsys_lite.search import engine as search_engine
from recsys_lite.security.keys import KeyRing
from recsys_lite.security.limits import RateLimiter
from recsys_lite.serving import lists
from recsys_lite.serving.admin_routes import admin_router
from recsys_lite.serving.auth import require
from recsys_lite.serving.errors import (
    ERROR_RESPONSES,
    KEYED_RESPONSES,
    Json,
    install_error_handlers,
)
from recsys_lite.serving.guards import GuardMiddleware
from recsys_lite.serving.hot_reads import HotReads
from recsys_lite.serving.instrumentation import instrument_app
from recsys_lite.serving.live_experiment import LiveExperiment
from recsys_lite.serving.params import PathId, path_id, query_parameters, read_query
from recsys_lite.serving.privacy_routes import privacy_router
from recsys_lite.serving.probe_routes import probe_router
from recsys_lite.serving.public_events import PublicEventPolicy, is_public
from recsys_lite.serving.runtime import Runtime, ServingState
from recsys_lite.serving.schemas import (
    MAX_BATCH,
    AcceptedResponse,
    EventIn,
    EventsBody,
    ItemIn,
    ItemOut,
    ItemsBody,
    RecommendQuery,
    RecommendResponse,
    SimilarItemsQuery,
    SimilarItemsResponse,
)
from recsys_lite.serving.telemetry import Telemetry, TelemetryMiddleware
from recsys_lite.serving.training_routes import training_router

log = logging.getLogger(__name__)
ENDPOINTS = {
    "/recommend", "/similar-items", "/events", "/items", "/items/{item_id}", "/health", "/live",
    "/ready", "/metrics", "/status", "/search", "/ab/status",
}  # fmt: skip
JSON = "application/json"


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pa.Table:
    """Request rows as text columns: validation (shared with file ingestion) parses them."""
    return pa.table(
        {
            column: pa.array(
                [None if (v := row.get(column)) is None else str(v) for row in rows], pa.string()
            )
            for column in columns
        }
    )


def create_app(settings: Settings | None = None, state: ServingState | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    runtime = Runtime(settings, state)
    experiment = LiveExperiment.from_settings(settings)
    if experiment is not None:
        runtime.variant_states = list(experiment.states.values())
    telemetry = Telemetry(ENDPOINTS, settings.worker_status_file)
    max_k = settings.max_recommendations
    keys = KeyRing.from_settings(settings)
    public_events = PublicEventPolicy(
        settings.public_events_per_user, settings.public_events_per_ip,
        settings.rate_limit_burst_seconds,
    )  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.start()
        if experiment is not None:
            experiment.start()
        yield
        if experiment is not None:
            await experiment.stop()
        await runtime.stop()

    # /docs and /redoc load Swagger UI and ReDoc from an installed package, not a CDN: the
    # machines this runs on are often offline or may not reach third-party hosts
    app = FastAPIOffline(
        title="RecSys-Lite",
        version=__version__,
        description="Recommendations from a model trained on this shop's own data.",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.runtime = runtime
    burst = settings.rate_limit_burst_seconds
    app.add_middleware(
        GuardMiddleware, keys=keys,
        per_ip=RateLimiter(settings.rate_limit_per_ip, settings.rate_limit_per_ip * burst),
        per_key=RateLimiter(settings.rate_limit_per_key, settings.rate_limit_per_key * burst),
        max_body_bytes=settings.max_body_bytes,
    )  # fmt: skip
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"], max_age=600,
        )  # fmt: skip
    # outermost, so refusals by the guards are counted too
    app.add_middleware(TelemetryMiddleware, telemetry=telemetry)
    instrument_app(app, settings, telemetry.registry, runtime)

    def count_error(request: Request, code: str) -> None:
        telemetry.errors.labels(telemetry.endpoint_label(request.url.path), code).inc()

    install_error_handlers(app, count_error)

    def answer(
        endpoint: str, key: str, value: str, state: ServingState, served: lists.Served,
        recommendation_id: str | None = None, variant: str | None = None,
    ) -> Response:  # fmt: skip
        ranked, source = served.ranked, served.source
        telemetry.count_served(endpoint, source, len(ranked.items))
        if served.fallback is not None:
            telemetry.fallbacks.labels(served.fallback).inc()
        if telemetry.diversity_due():
            share, distance = lists.diversity_of(state, ranked.items)
            telemetry.observe_diversity(
                endpoint, {"distinct_categories": share, "pairwise_distance": distance}
            )
        # events cite it (with the item's position) so clicks and purchases can be attributed
        fields = {key: value, "source": source}
        if variant is None:
            fields["recommendation_id"] = os.urandom(8).hex()
        else:  # the id names the variant, so events citing it are attributed from the store
            fields |= {"recommendation_id": recommendation_id or "", "variant": variant}
        head = orjson.dumps(fields)[:-1]
        items = state.catalog.encode(ranked.items, ranked.scores, served.extras)
        return Response(head + b',"recommendations":' + items + b"}", media_type=JSON)

    @app.get(
        "/recommend", response_model=RecommendResponse,
        summary="Top-k items for a user, within the filters; unknown users get popular items",
        openapi_extra=query_parameters(RecommendQuery, max_k),
    )  # fmt: skip
    async def recommend(request: Request) -> Response:
        query = read_query(RecommendQuery, request, max_k)
        state: ServingState = runtime.state
        if experiment is None:
            served = lists.recommend(state, query)
            return answer("/recommend", "user_id", query.user_id, state, served)
        variant, state, served, recommendation_id = experiment.recommend(query, state)
        return answer(
            "/recommend", "user_id", query.user_id, state, served, recommendation_id, variant
        )

    @app.get(
        "/similar-items", response_model=SimilarItemsResponse,
        summary="Items most similar to an item, within the filters",
        openapi_extra=query_parameters(SimilarItemsQuery, max_k),
    )  # fmt: skip
    async def similar_items(request: Request) -> Response:
        query = read_query(SimilarItemsQuery, request, max_k)
        state: ServingState = runtime.state
        served = lists.similar_items(state, query)
        return answer("/similar-items", "item_id", query.item_id, state, served)

    @app.post(
        "/events", response_model=AcceptedResponse,
        summary=f"Record one event or a batch of up to {MAX_BATCH:,}; acknowledged once durable."
        " view, click and impression need no key (rate-limited per shopper, known items only);"
        " other types need a key with the events scope",
        responses=KEYED_RESPONSES,
    )  # fmt: skip
    async def post_events(request: Request, body: EventsBody) -> Json:
        rows = [body] if isinstance(body, EventIn) else body.events
        authorization = request.headers.get("authorization")
        anonymous = authorization is None and is_public([row.event_type for row in rows])
        if not anonymous:
            require(keys, request, "events")
        replay = runtime.idempotent.get(request.headers.get("idempotency-key"))
        if replay is not None:
            return Json(replay, headers={"Idempotent-Replayed": "true"})
        now = int(time.time())
        table = _table(
            [
                row.model_dump()
                | {
                    "ts": now if row.ts is None else row.ts,
                    "qty": 1 if row.qty is None else row.qty,
                }
                for row in rows
            ],
            ("user_id", "item_id", "ts", *OPTIONAL_EVENT_COLUMNS),
        )
        events = await runtime.validate_events(table)
        if anonymous:
            client = request.client
            public_events.check(events, runtime.state, client.host if client else "unknown")
        batch_id = await runtime.accept_events(events)
        answer = {"accepted": events.num_rows, "batch_id": batch_id}
        runtime.idempotent.put(request.headers.get("idempotency-key"), answer)
        return Json(answer)

    @app.post(
        "/items", response_model=AcceptedResponse,
        summary="Add or update catalog items (omitted fields keep their values, null clears);"
        " new ones are recommendable at once. Needs a key with the catalog scope",
        responses=KEYED_RESPONSES,
    )  # fmt: skip
    async def post_items(request: Request, body: ItemsBody) -> Json:
        require(keys, request, "catalog")
        rows = [body] if isinstance(body, ItemIn) else body.items
        table = _table(
            [row.model_dump() for row in rows],
            ("item_id", *ITEM_FIELDS),
        ).append_column(
            SET_FIELDS,
            pa.array([sorted(row.model_fields_set - {"item_id"}) for row in rows],
                     pa.list_(pa.string())),
        )  # fmt: skip
        batch_id, items = await asyncio.to_thread(runtime.accept_items, table)
        # searchable before the answer, and in the text index before the model places new items
        await runtime.search.add(runtime.state.catalog.merge(items).to_pylist())
        added = runtime.state.add_items(items)
        return Json({"accepted": items.num_rows, "batch_id": batch_id, "new": added})

    @app.get(
        "/items/{item_id}", response_model=ItemOut,
        summary="A catalog item as the service now serves it",
    )  # fmt: skip
    async def get_item(
        item_id: PathId,
    ) -> Json:
        item_id = path_id(item_id, "item_id")
        state = runtime.state
        row = state.catalog.item(item_id)
        recommendable = item_id in state.model.item_map
        if row is None and not recommendable:
            raise NotFoundError(f"unknown item {item_id!r}")
        return Json((row or {"item_id": item_id}) | {"recommendable": recommendable})

    @app.get(
        "/search", response_model=search_api.SearchResponse,
        summary="Catalog search: BM25 and sentence embeddings fused by reciprocal rank; with"
        " user_id, leaning to the shopper's taste. 503 until the text index is loaded",
        openapi_extra=query_parameters(search_api.SearchQuery, max_k),
    )  # fmt: skip
    async def search(request: Request) -> Response:
        query = search_api.parse_query(dict(request.query_params), max_k)
        state: ServingState = runtime.state
        taste: tuple[list[str], list[float]] = ([], [])
        if query.user_id is not None:
            taste = search_api.shopper_taste(state.model, state.online, query.user_id)
        request_ = query.request(*taste)
        result = await runtime.search.search(request_)
        body = search_engine.answer(request_, result, state.catalog.item, query.user_id)
        return Response(body, media_type=JSON)

    # innermost, inside the guards and the metrics: the pages' reads skip the router
    app.user_middleware.append(
        Middleware(
            HotReads,
            routes=app.routes,
            paths=("/recommend", "/similar-items", "/search"),
            exception_handlers=app.exception_handlers,
        )
    )
    app.include_router(probe_router(settings, runtime, telemetry))
    app.include_router(admin_router(settings, runtime, keys, experiment))
    app.include_router(training_router(settings, keys))
    app.include_router(privacy_router(settings, runtime, keys))
    if settings.demo_site_dir.is_dir():
        # same origin as the API, so the demo shop's widget needs no CORS_ORIGINS entry
        app.mount("/demo", StaticFiles(directory=settings.demo_site_dir, html=True), name="demo")
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (one app per worker process, settings from env)."""
    return create_app(get_settings())
