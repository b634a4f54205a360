"""Two servers that answer fixed bytes, for bench/framework_overhead.py: what uvicorn costs by
itself, and what a FastAPI route adds."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

BODY = b'{"status":"ok"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def bare_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


# the same telemetry settings as the product's app: FastAPI's own defaults
bare_fastapi = FastAPI()


@bare_fastapi.get("/ping")
async def ping() -> Response:
    return Response(BODY, media_type="application/json")
