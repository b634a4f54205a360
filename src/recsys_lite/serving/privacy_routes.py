"""Privacy routes (privacy key): a shopper's data exported, or erased everywhere."""

from __future__ import annotations

import asyncio
import contextvars
import time

from fastapi import APIRouter, Request

from recsys_lite.config import Settings
from recsys_lite.privacy.erase import Eraser
from recsys_lite.privacy.export import export_user
from recsys_lite.security.keys import KeyRing
from recsys_lite.serving.auth import require
from recsys_lite.serving.errors import KEYED_RESPONSES, Json
from recsys_lite.serving.params import PathId, path_id
from recsys_lite.serving.runtime import Runtime


def privacy_router(settings: Settings, runtime: Runtime, keys: KeyRing) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/admin/users/{user_id}/export",
        summary="Privacy: everything held about one shopper, as one JSON document",
        responses=KEYED_RESPONSES,
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

    @router.delete(
        "/admin/users/{user_id}",
        summary="Privacy: erase one shopper everywhere (store, files, models, every API process)",
        responses=KEYED_RESPONSES,
    )  # fmt: skip
    async def erase_shopper(
        request: Request,
        user_id: PathId,
    ) -> Json:
        actor = require(keys, request, "privacy")
        eraser = Eraser(settings)
        subject = eraser.subject(path_id(user_id, "user_id"))
        # the erasure (its announcement to the other processes first) starts before this
        # process forgets, which holds the event loop for a while, rather than after it
        erasing = asyncio.get_running_loop().run_in_executor(
            None, contextvars.copy_context().run, eraser.erase, user_id, actor
        )
        runtime.forget([subject], int(time.time()))  # unknown here at once
        erasure = await erasing
        return Json({"erased": True, "subject": erasure.subject, "steps": erasure.done})

    return router
