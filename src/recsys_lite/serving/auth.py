"""Admin keys: who may call the endpoints that change or reveal the shop's operation.

``ADMIN_API_KEY``, when set, is one full-scope key named ``admin``; clients send
``Authorization: Bearer <key>``. Without any key configured the admin endpoints answer 403, so
a service exposed by mistake reveals nothing. Keys are compared in constant time and never
logged. (Named, scoped keys for writes and privacy build on this.)
"""

from __future__ import annotations

import hmac

from fastapi import Request

from recsys_lite.config import Settings
from recsys_lite.errors import ForbiddenError, UnauthorizedError


def require_admin(settings: Settings, request: Request) -> str:
    """The key's name, or an error: 403 when no admin key is configured, 401 otherwise."""
    expected = settings.admin_api_key
    if expected is None or not expected.get_secret_value():
        raise ForbiddenError("admin API disabled: set ADMIN_API_KEY to enable it")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.get_secret_value().encode()
    ):
        raise UnauthorizedError("a valid admin key is required: Authorization: Bearer <key>")
    return "admin"
