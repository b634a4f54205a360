"""Who may call what: the HTTP side of the key ring (security/keys.py).

Reads are public. Catalog writes, server-side events (purchase, add_to_cart, custom types),
admin and privacy endpoints take a key with the matching scope, sent as
``Authorization: Bearer <key>``. An endpoint whose scope no configured key has answers 403, so
a service exposed by mistake neither reveals nor changes anything; a missing or unknown key is
401. Keys are compared in constant time and never logged.
"""

from __future__ import annotations

from fastapi import Request

from recsys_lite.security.keys import KeyRing, Scope


def require(keys: KeyRing, request: Request, scope: Scope) -> str:
    """The name of the request's key if it may use ``scope``; otherwise the 401/403 error."""
    return keys.authorize(request.headers.get("authorization"), scope)
