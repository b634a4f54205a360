"""The read endpoints a shop's pages call on every view, answered without the router.

FastAPI's route machinery (route matching, the request-response wrapper, dependency solving,
the exception middleware) costs about 40 µs per request on this kind of machine, more than a
plain ALS answer's own work. The hot GET endpoints (/recommend, /similar-items, /search) are
plain ``async`` functions of a request (they read their query with one model validation and
answer with bytes), so this
innermost middleware calls the registered routes' endpoints directly. It sits inside the guards
and the metrics, so keys, rate limits and counting apply exactly as before, and it sets the
scope's ``route`` as the router would, for the logs' and traces' route names; the routes stay
registered with FastAPI, which documents them in /docs and answers every other method and
path.

Errors go through the app's own exception handlers (serving/errors.py), found by the
exception's class as Starlette finds them, so a refusal here has the one error body.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

ExceptionHandler = Callable[[Request, Exception], Any]


class HotReads:
    def __init__(
        self,
        app: ASGIApp,
        routes: list[BaseRoute],
        paths: Collection[str],
        exception_handlers: Mapping[Any, ExceptionHandler],
    ) -> None:
        """``paths``: GET routes among ``routes`` whose endpoint takes only the request."""
        self.app = app
        self.routes = {
            route.path: route
            for route in routes
            if isinstance(route, APIRoute)
            and route.path in paths
            and "GET" in (route.methods or ())
        }
        missing = set(paths) - set(self.routes)
        if missing:
            raise ValueError(f"no GET route for {sorted(missing)}")
        self.exception_handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self.routes.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "GET"
            else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        scope["path_params"] = {}
        request = Request(scope, receive)
        try:
            response: Response = await route.endpoint(request)
        except Exception as exc:
            response = await self._error(request, exc)
        await response(scope, receive, send)

    async def _error(self, request: Request, exc: Exception) -> Response:
        for cls in type(exc).__mro__:
            if cls is Exception:
                # the catch-all is the outermost error middleware's, as for routed requests: it
                # answers the 500 and re-raises, so traces and the server log see the failure
                break
            handle = self.exception_handlers.get(cls)
            if handle is not None:
                response: Response = await handle(request, exc)
                return response
        raise exc
