"""What every request passes before a route sees it: key check, rate limits, body limit.

One pure ASGI middleware (no per-request task, no buffering), so the cost on the hot read path
is a dictionary lookup and a little arithmetic. Its refusals carry the one error body.

* A request with an ``Authorization`` header must carry a configured key (401 otherwise), on
  every route: an invalid key is never quietly treated as anonymous. Keyed clients are limited
  per key name (``RATE_LIMIT_PER_KEY``), anonymous ones per client address
  (``RATE_LIMIT_PER_IP``): a shop's back end behind one address is not throttled like a
  browser, and a browser cannot borrow a back end's budget.
* A body larger than ``MAX_BODY_BYTES`` is refused with 413 before it is parsed: at once when
  ``Content-Length`` says so, or as soon as a streamed body passes the limit.
"""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys_lite.errors import HTTP_ERROR_CODES, RecsysError, error_body
from recsys_lite.security.keys import KeyRing
from recsys_lite.security.limits import RateLimiter, retry_after

_BODY_METHODS = {b"POST", b"PUT", b"PATCH", b"DELETE"}


async def _refuse(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps(error_body(HTTP_ERROR_CODES[status], message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        keys: KeyRing,
        per_ip: RateLimiter,
        per_key: RateLimiter,
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.keys = keys
        self.per_ip = per_ip
        self.per_key = per_key
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization")
        if authorization is None:
            client = scope.get("client")
            limiter, who = self.per_ip, (client[0] if client else "unknown")
        else:
            try:
                key = self.keys.identify(authorization.decode("latin-1"))
            except RecsysError as exc:
                await _refuse(send, exc.status_code, exc.message)
                return
            assert key is not None
            limiter, who = self.per_key, key.name
        wait = limiter.take(who)
        if wait:
            await _refuse(
                send, 429, f"too many requests: retry in {retry_after(wait)} s",
                [(b"retry-after", retry_after(wait).encode())],
            )  # fmt: skip
            return
        if scope["method"].encode() not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _refuse(send, 413, self._too_large())
            return
        await self._with_counted_body(scope, receive, send)

    def _too_large(self) -> str:
        return f"the body is larger than {self.max_body_bytes:,} bytes (MAX_BODY_BYTES)"

    async def _with_counted_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # an HTTPException passes FastAPI's body parsing untouched and reaches the
                    # one error handler (serving/errors.py)
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, counting_receive, send)
