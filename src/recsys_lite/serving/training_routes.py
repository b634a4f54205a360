"""Training jobs over HTTP (admin key): the job runs in its own process (jobs/training.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParameter

from recsys_lite.config import Settings
from recsys_lite.jobs.training import read_status, start_job
from recsys_lite.security.keys import KeyRing
from recsys_lite.serving.auth import require
from recsys_lite.serving.errors import KEYED_RESPONSES, Json
from recsys_lite.serving.schemas import ErrorResponse, TrainingRequest


def training_router(settings: Settings, keys: KeyRing) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/training", status_code=202,
        summary="Admin: train (optionally tune) a model in a separate process; served only if"
        " it is not worse than the served one. One job at a time (409 otherwise)",
        responses={**KEYED_RESPONSES, 409: {"model": ErrorResponse, "description": "conflict"}},
    )  # fmt: skip
    async def start_training(request: Request, body: TrainingRequest) -> Json:
        actor = require(keys, request, "admin")
        job = await asyncio.to_thread(
            start_job, settings, body.model, body.params, body.tune_trials, actor
        )
        return Json(job, status_code=202)

    @router.get(
        "/training/{job_id}", summary="Admin: a training job's state, stage, progress, metrics",
        responses=KEYED_RESPONSES,
    )  # fmt: skip
    async def training_status(
        request: Request, job_id: Annotated[str, PathParameter(max_length=64)]
    ) -> Json:
        require(keys, request, "admin")
        return Json(await asyncio.to_thread(read_status, settings, job_id))

    return router
