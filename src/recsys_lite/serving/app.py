"""The FastAPI application: routes only; state and background work live in runtime.py.

Read handlers are ``async def``: scoring takes well under a millisecond, cheaper than a hop to
the thread pool. The two hot GET endpoints read their query with one pydantic model validation
instead of FastAPI's per-parameter machinery (which cost more than the Faiss search), and answer
with bytes joined from JSON each catalog item had encoded once (catalog.py), skipping FastAPI's
per-item response validation; the query and response models still document the contract in
/docs.
"""

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import orjson
import pyarrow as pa
from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParameter
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from recsys_lite import __version__
from recsys_lite.config import Settings, get_settings
from recsys_lite.data.ids import MAX_ID_LENGTH, normalise_id
from recsys_lite.data.store import ITEM_FIELDS
from recsys_lite.data.validation import OPTIONAL_EVENT_COLUMNS, SET_FIELDS, validate_events
from recsys_lite.errors import NotFoundError
from recsys_lite.experiments.live import LiveExperiment
from recsys_lite.experiments.report import ab_status, read_events
from recsys_lite.jobs.training import read_status, start_job
from recsys_lite.observability.api import instrument_app
from recsys_lite.observability.logs import configure_logging
from recsys_lite.online.health import read_worker_health
from recsys_lite.privacy.erase import Eraser
from recsys_lite.privacy.export import export_user
from recsys_lite.search import api as search_api
from recsys_lite.search import engine as search_engine
from recsys_lite.security.keys import KeyRing
from recsys_lite.security.limits import RateLimiter
from recsys_lite.serving import lists
from recsys_lite.serving.auth import require
from recsys_lite.serving.errors import ERROR_RESPONSES, Json, install_error_handlers
from recsys_lite.serving.guards import GuardMiddleware
from recsys_lite.serving.profile import user_profile
from recsys_lite.serving.public_events import PublicEventPolicy, is_public
from recsys_lite.serving.runtime import Runtime, ServingState
from recsys_lite.serving.schemas import (
    MAX_BATCH,
    AcceptedResponse,
    ErrorResponse,
    EventIn,
    EventsBody,
    HealthResponse,
    ItemIn,
    ItemOut,
    ItemsBody,
    ListQuery,
    RecommendQuery,
    RecommendResponse,
    SimilarItemsQuery,
    SimilarItemsResponse,
    TrainingRequest,
)
from recsys_lite.serving.status import status_document
from recsys_lite.serving.telemetry import Telemetry, TelemetryMiddleware

log = logging.getLogger(__name__)
ENDPOINTS = {
    "/recommend", "/similar-items", "/events", "/items", "/items/{item_id}", "/health", "/live",
    "/ready", "/metrics", "/status", "/search", "/ab/status",
}  # fmt: skip
QueryModel = TypeVar("QueryModel", bound=ListQuery)
JSON = "application/json"


def read_query(model: type[QueryModel], request: Request, max_k: int) -> QueryModel:
    try:
        return model.model_validate(dict(request.query_params), context={"max_k": max_k})
    except ValidationError as exc:
        # the same error (and so the same 422 answer) FastAPI gives for its own parameters
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in exc.errors()]
        ) from None


# an id in a path: the same bounds as in a query; path_id applies the rest of the id rule
PathId = Annotated[str, PathParameter(min_length=1, max_length=MAX_ID_LENGTH)]


def path_id(value: str, name: str) -> str:
    """An id from the path, by the one id rule; refused with the same 422 as one in a query."""
    try:
        return normalise_id(value)
    except ValueError as exc:
        raise RequestValidationError(
            [{"loc": ("path", name), "msg": str(exc), "type": "value_error"}]
        ) from None


def query_parameters(model: type[ListQuery], max_k: int) -> dict[str, Any]:
    """OpenAPI parameters of a query model, for routes that validate their query themselves."""
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    parameters = []
    for name, field in schema["properties"].items():
        field = dict(field)
        if name == "k":
            field["maximum"] = max_k
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": field.pop("description", ""),
                "schema": field,
            }
        )
    parameters.sort(key=lambda parameter: not parameter["required"])
    return {"parameters": parameters}


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
    started = time.monotonic()
    max_k = settings.max_recommendations
    keys = KeyRing.from_settings(settings)
    public_events = PublicEventPolicy(
        settings.public_events_per_user, settings.public_events_per_ip,
        settings.rate_limit_burst_seconds,
    )  # fmt: skip
    # documented on the operations that take a key (401 and 429 apply everywhere)
    keyed: dict[int | str, dict[str, Any]] = {
        403: {"model": ErrorResponse, "description": "forbidden"}
    }

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
        "/ab/status", responses=keyed,
        summary="Admin: the experiment's variants (users, impressions, CTR, conversion, revenue"
        " per impression, lift with 95% intervals), sample-ratio check, interleaving preference",
    )  # fmt: skip
    async def ab_status_route(request: Request) -> Json:
        require(keys, request, "admin")
        if experiment is None:
            raise NotFoundError("no experiment is running (EXPERIMENT_FILE is not set)")
        per_user, clicks = await asyncio.to_thread(read_events, runtime.store)
        return Json(ab_status(experiment.experiment, per_user, clicks, experiment.report()))

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
        responses=keyed,
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
        events = await asyncio.to_thread(validate_events, table)
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
        responses=keyed,
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
        "/users/{user_id}/profile",
        summary="What the shop knows about a shopper (admin key): totals, recent items, top"
        " categories and brands, and whether the served model personalises them",
        responses=keyed,
    )  # fmt: skip
    async def profile(
        request: Request,
        user_id: PathId,
        recent_limit: Annotated[int, Query(ge=1, le=100)] = 10,
        top_categories: Annotated[int, Query(ge=1, le=50)] = 5,
    ) -> Json:
        require(keys, request, "admin")
        user_id = path_id(user_id, "user_id")
        state = runtime.state
        answer = await asyncio.to_thread(
            user_profile, runtime.store, state.model, state.catalog, user_id,
            online_events=state.online.events_of(user_id), recent_limit=recent_limit,
            top_categories=top_categories,
        )  # fmt: skip
        return Json(answer)

    @app.get(
        "/admin/users/{user_id}/export",
        summary="Privacy: everything held about one shopper, as one JSON document",
        responses=keyed,
    )  # fmt: skip
    async def export_shopper(
        request: Request,
        user_id: PathId,
    ) -> Json:
        actor = require(keys, request, "privacy")
        user_id = path_id(user_id, "user_id")
        state = runtime.state
        document = await asyncio.to_thread(
            export_user, settings, user_id, actor=actor, model=state.model,
            online_events=state.online.events_of(user_id),
        )  # fmt: skip
        return Json(document)

    @app.delete(
        "/admin/users/{user_id}",
        summary="Privacy: erase one shopper everywhere (store, files, models, every API process)",
        responses=keyed,
    )  # fmt: skip
    async def erase_shopper(
        request: Request,
        user_id: PathId,
    ) -> Json:
        actor = require(keys, request, "privacy")
        eraser = Eraser(settings)
        subject = eraser.subject(path_id(user_id, "user_id"))
        runtime.forget([subject], int(time.time()))  # unknown here at once
        erasure = await asyncio.to_thread(eraser.erase, user_id, actor)
        return Json({"erased": True, "subject": erasure.subject, "steps": erasure.done})

    @app.get(
        "/search", response_model=search_api.SearchResponse,
        summary="Catalog search: BM25 and sentence embeddings fused by reciprocal rank; with"
        " user_id, leaning to the shopper's taste. 503 until the text index is loaded",
        openapi_extra=search_api.openapi_parameters(max_k),
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

    @app.get("/health", response_model=HealthResponse, summary="Status of the served model")
    async def health() -> Json:
        return Json(
            {
                "status": "ok",
                "version": __version__,
                "model_type": runtime.state.model.name,
                "uptime_seconds": round(time.monotonic() - started, 3),
            }
        )

    @app.get("/live", summary="Liveness probe")
    async def live() -> Json:
        # the process id tells replicas apart behind one port
        return Json({"status": "alive"}, headers={"x-process-id": str(os.getpid())})

    @app.get("/ready", summary="Readiness probe: a model is loaded")
    async def ready() -> Json:
        # a failing worker does not make this process unready (it serves the model it has),
        # but its report is here for whoever watches
        # answers without item metadata until a busy store gives the catalog: not ready
        ok = runtime.state.model.fitted and runtime.catalog_loaded
        worker = read_worker_health(settings.worker_status_file)
        details = {"worker": worker, "store": runtime.store_report()}
        return Json({"ready": ok, "details": details}, status_code=200 if ok else 503)

    @app.get(
        "/status", summary="Admin: the store, the served model, online state and the worker",
        responses=keyed,
    )  # fmt: skip
    async def status(request: Request) -> Json:
        require(keys, request, "admin")
        state = runtime.state
        online = {
            "events_applied": state.online.applied, "users_held": state.online.users,
            "swaps": runtime.swaps,
        }  # fmt: skip
        document = await asyncio.to_thread(
            status_document, settings, runtime.store, state.artifact, online=online,
            bus=runtime.bus_report(), store_waits=runtime.store_report(),
        )  # fmt: skip
        return Json(document)

    @app.post(
        "/training", status_code=202,
        summary="Admin: train (optionally tune) a model in a separate process; served only if"
        " it is not worse than the served one. One job at a time (409 otherwise)",
        responses={**keyed, 409: {"model": ErrorResponse, "description": "conflict"}},
    )  # fmt: skip
    async def start_training(request: Request, body: TrainingRequest) -> Json:
        actor = require(keys, request, "admin")
        job = await asyncio.to_thread(
            start_job, settings, body.model, body.params, body.tune_trials, actor
        )
        return Json(job, status_code=202)

    @app.get(
        "/training/{job_id}", summary="Admin: a training job's state, stage, progress, metrics",
        responses=keyed,
    )  # fmt: skip
    async def training_status(
        request: Request, job_id: Annotated[str, PathParameter(max_length=64)]
    ) -> Json:
        require(keys, request, "admin")
        return Json(await asyncio.to_thread(read_status, settings, job_id))

    @app.get(
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

    if settings.demo_site_dir.is_dir():
        # same origin as the API, so the demo shop's widget needs no CORS_ORIGINS entry
        app.mount("/demo", StaticFiles(directory=settings.demo_site_dir, html=True), name="demo")
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory`` (one app per worker process, settings from env)."""
    return create_app(get_settings())
