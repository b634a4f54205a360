"""The operator's routes (admin key): what the service holds, the experiment, a profile."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request

from recsys_lite.config import Settings
from recsys_lite.errors import NotFoundError
from recsys_lite.experiments.report import ab_status, read_events
from recsys_lite.security.keys import KeyRing
from recsys_lite.serving.auth import require
from recsys_lite.serving.errors import KEYED_RESPONSES, Json
from recsys_lite.serving.live_experiment import LiveExperiment
from recsys_lite.serving.params import PathId, path_id
from recsys_lite.serving.profile import user_profile
from recsys_lite.serving.runtime import Runtime
from recsys_lite.serving.status import status_document


def admin_router(
    settings: Settings, runtime: Runtime, keys: KeyRing, experiment: LiveExperiment | None
) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/ab/status", responses=KEYED_RESPONSES,
        summary="Admin: the experiment's variants (users, impressions, CTR, conversion, revenue"
        " per impression, lift with 95% intervals), sample-ratio check, interleaving preference",
    )  # fmt: skip
    async def ab_status_route(request: Request) -> Json:
        require(keys, request, "admin")
        if experiment is None:
            raise NotFoundError("no experiment is running (EXPERIMENT_FILE is not set)")
        per_user, clicks = await asyncio.to_thread(read_events, runtime.store)
        return Json(ab_status(experiment.experiment, per_user, clicks, experiment.report()))

    @router.get(
        "/users/{user_id}/profile",
        summary="What the shop knows about a shopper (admin key): totals, recent items, top"
        " categories and brands, and whether the served model personalises them",
        responses=KEYED_RESPONSES,
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

    @router.get(
        "/status", summary="Admin: the store, the served model, online state and the worker",
        responses=KEYED_RESPONSES,
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

    return router
