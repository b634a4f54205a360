"""Every error the API answers, from any route or middleware, as ``{error, message, details}``.

The product's own errors (``errors.RecsysError``) carry their status; FastAPI's validation
errors, Starlette's routing errors (unknown route, wrong method) and anything unexpected are
mapped here, in one place, so a client parses one shape whatever went wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from recsys_lite.errors import HTTP_ERROR_CODES, RateLimitedError, RecsysError, error_body
from recsys_lite.security.limits import retry_after
from recsys_lite.serving.schemas import ErrorResponse

log = logging.getLogger(__name__)

# Documented on every operation of the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": code.replace("_", " ")}
    for status, code in HTTP_ERROR_CODES.items()
    if status != 403  # added where a key is required
}
# Documented on the operations that take a key (401 and 429 apply everywhere).
KEYED_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorResponse, "description": "forbidden"}
}


class Json(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Json:  # fmt: skip
    return Json(error_body(code, message, details), status_code=status, headers=headers)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    details = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        if error.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        details.append({"location": location, "message": message})
    return details


def install_error_handlers(app: FastAPI, count_error: Callable[[Request, str], None]) -> None:
    """Map every exception to the one error body; ``count_error`` feeds the metrics."""

    @app.exception_handler(RecsysError)
    async def product_error(request: Request, exc: RecsysError) -> Json:
        count_error(request, exc.code)
        headers = None
        if isinstance(exc, RateLimitedError):
            headers = {"Retry-After": retry_after(exc.retry_after)}
        return Json(exc.to_dict(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Json:
        count_error(request, "invalid_input")
        details = _validation_details(exc)
        message = "; ".join(f"{d['location']}: {d['message']}" for d in details)
        return error_response(422, "invalid_input", message, details)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Json:
        code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
        count_error(request, code)
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            allowed = next((v for k, v in (exc.headers or {}).items() if k.lower() == "allow"), "")
            message = f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})"
        else:
            message = str(exc.detail)
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Json:
        log.exception("unhandled error on %s", request.url.path)
        count_error(request, "internal")
        return error_response(500, "internal_error", "internal error")
