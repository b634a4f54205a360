"""Logs: plain text by default, one JSON object a line with ``LOG_FORMAT=json``.

In JSON mode every request gets an id (the client's ``X-Request-ID`` when it is a plain token,
otherwise a new one), answered in the ``X-Request-ID`` header and carried by every line logged
while the request runs, so a line can be matched with what a client or a proxy saw. There is
still no access log: request lines are written only for slow requests, and name the route
template (``/users/{user_id}/profile``), never the path, the query string or a header's value,
since those hold shoppers' ids and keys.
"""

from __future__ import annotations

import logging
import os
import re
import time
from contextvars import ContextVar
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys_lite.config import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
HEADER = b"x-request-id"
# what a client may choose as its id: enough for UUIDs and trace ids, nothing that could carry
# a line break or much data into the logs
_ACCEPTED_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
# attributes of the request line (``extra=``) copied into the JSON object
_FIELDS = ("method", "route", "status", "duration_ms")

log = logging.getLogger("recsys_lite.requests")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(settings: Settings, text_format: str | None = None) -> None:
    """The root logger at ``LOG_LEVEL``, in the chosen format. Replaces handlers set before, so
    calling it again (one app per process, several in tests) never doubles lines."""
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    elif text_format:
        handler.setFormatter(logging.Formatter(text_format))
    else:
        handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    root = logging.getLogger()
    if settings.log_format == "json" or not root.handlers:
        root.handlers = [handler]
    root.setLevel(settings.log_level.upper())


def uvicorn_log_config(settings: Settings) -> dict[str, Any] | None:
    """uvicorn's own logging setup, or none in JSON mode: its loggers then reach the root
    handler that ``configure_logging`` gave the JSON formatter."""
    if settings.log_format == "json":
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG


def new_request_id() -> str:
    return os.urandom(8).hex()


class RequestContextMiddleware:
    """Request ids and slow-request lines; installed only with ``LOG_FORMAT=json`` (or
    tracing), so the default hot path does not pay for them."""

    def __init__(self, app: ASGIApp, slow_seconds: float) -> None:
        self.app = app
        self.slow_seconds = slow_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == HEADER:
                if _ACCEPTED_ID.fullmatch(value):
                    request_id = value.decode()
                break
        request_id = request_id or new_request_id()
        # not reset afterwards: the server's error handler, outside this middleware, logs in
        # the same task, and each request runs in a task (and context) of its own
        REQUEST_ID.set(request_id)
        header = (HEADER, request_id.encode())
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            if elapsed >= self.slow_seconds:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                log.warning(
                    "slow request", extra={
                        "method": scope["method"], "route": route, "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )  # fmt: skip
