"""API keys: named secrets, each allowed a set of scopes, kept only as SHA-256 digests.

Three sources add up: ``ADMIN_API_KEY`` is always one full-scope key named ``admin``;
``API_KEYS`` lists ``name:secret[:scope+scope]`` entries (default scopes: the two kinds of
writes); ``API_KEYS_FILE`` is a TOML file of ``[[keys]]`` tables with ``name``, ``sha256`` and
``scopes``, written by ``recsys-lite keys add`` so that no secret is ever stored.

A plain SHA-256 is enough because the secrets are random tokens of 256 bits (``keys add`` makes
them), not passwords: no dictionary helps against them, so a slow hash would only slow every
request. A presented key is hashed once and compared with every stored digest in constant time,
without stopping at the first match, so timing tells nothing about which key came close.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from recsys_lite.config import Settings
from recsys_lite.errors import ForbiddenError, InvalidInputError, UnauthorizedError

Scope = Literal["events", "catalog", "admin", "privacy"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
ALL_SCOPES = frozenset(SCOPES)
# what a key listed without scopes may do: the writes a shop's back end makes
DEFAULT_SCOPES: frozenset[Scope] = frozenset({"events", "catalog"})
ADMIN_KEY_NAME = "admin"
_WHAT_NEEDS: dict[Scope, str] = {
    "events": "server-side events (purchase, add_to_cart, custom types)",
    "catalog": "catalog writes",
    "admin": "the admin API",
    "privacy": "the privacy API",
}


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: str
    scopes: frozenset[Scope]


def _scopes(text: str, where: str) -> frozenset[Scope]:
    names = [part.strip() for part in text.replace("+", ",").split(",") if part.strip()]
    if "*" in names:
        return ALL_SCOPES
    unknown = sorted(set(names) - ALL_SCOPES)
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}, *"
        )
    return frozenset(name for name in SCOPES if name in names)


def parse_api_keys(text: str) -> list[ApiKey]:
    """``name:secret[:scope+scope],...`` as in the ``API_KEYS`` variable."""
    keys = []
    for number, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        name, _, rest = entry.partition(":")
        secret, _, scopes = rest.partition(":")
        if not name.strip() or not secret:
            raise InvalidInputError(f"API_KEYS entry {number}: expected name:secret[:scopes]")
        where = f"API_KEYS entry {number} ({name.strip()})"
        keys.append(
            ApiKey(
                name.strip(), digest(secret), _scopes(scopes, where) if scopes else DEFAULT_SCOPES
            )
        )
    return keys


def read_keys_file(path: Path) -> list[ApiKey]:
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInputError(f"API keys file {path}: {exc}") from None
    keys = []
    for number, table in enumerate(document.get("keys", []), start=1):
        where = f"{path}, key {number}"
        name, sha256 = table.get("name"), table.get("sha256")
        if not isinstance(name, str) or not isinstance(sha256, str) or len(sha256) != 64:
            raise InvalidInputError(f"{where}: needs a name and the sha256 of its secret")
        scopes = table.get("scopes")
        keys.append(
            ApiKey(name, sha256.lower(), _scopes(",".join(scopes), where) if scopes else
                   DEFAULT_SCOPES)
        )  # fmt: skip
    return keys


def append_key(path: Path, name: str, scopes: Iterable[str]) -> str:
    """Add a key to a keys file and return its secret, which is shown once and never stored."""
    chosen = _scopes(",".join(scopes), "scopes") if scopes else DEFAULT_SCOPES
    existing = read_keys_file(path) if path.exists() else []
    if any(key.name == name for key in existing):
        raise InvalidInputError(f"{path} already has a key named {name!r}")
    secret = new_secret()
    listed = ", ".join(f'"{scope}"' for scope in SCOPES if scope in chosen)
    entry = f'\n[[keys]]\nname = "{name}"\nsha256 = "{digest(secret)}"\nscopes = [{listed}]\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(entry)
    path.chmod(0o600)
    return secret


class KeyRing:
    """The configured keys; ``authorize`` answers who a request's key belongs to."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self.keys = tuple(keys)
        names = [key.name for key in self.keys]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise InvalidInputError(f"API key names must be unique: {', '.join(duplicates)}")

    @classmethod
    def from_sources(
        cls, admin_key: str | None, api_keys: str | None, keys_file: Path | None
    ) -> KeyRing:
        keys = [ApiKey(ADMIN_KEY_NAME, digest(admin_key), ALL_SCOPES)] if admin_key else []
        if api_keys:
            keys += parse_api_keys(api_keys)
        if keys_file is not None:
            keys += read_keys_file(keys_file)
        return cls(keys)

    @classmethod
    def from_settings(cls, settings: Settings, keys_file: Path | None = None) -> KeyRing:
        secret = settings.admin_api_key
        listed = settings.api_keys
        return cls.from_sources(
            secret.get_secret_value() if secret else None,
            listed.get_secret_value() if listed else None,
            keys_file or settings.api_keys_file,
        )

    def enabled(self, scope: Scope) -> bool:
        return any(scope in key.scopes for key in self.keys)

    def identify(self, authorization: str | None) -> ApiKey | None:
        """The key an ``Authorization: Bearer`` header carries; None without a header.

        Raises 401 for a header that names no configured key.
        """
        if not authorization:
            return None
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise UnauthorizedError("send the key as Authorization: Bearer <key>")
        presented = digest(given.strip()).encode()
        found = None
        for key in self.keys:  # every digest compared: no early exit
            if hmac.compare_digest(presented, key.sha256.encode()):
                found = key
        if found is None:
            raise UnauthorizedError("unknown API key")
        return found

    def authorize(self, authorization: str | None, scope: Scope) -> str:
        """The name of a key allowed ``scope``, or the error the API answers with."""
        if not self.enabled(scope):
            raise ForbiddenError(
                f"{_WHAT_NEEDS[scope]} disabled: no key with the {scope!r} scope is configured"
                " (ADMIN_API_KEY, API_KEYS or API_KEYS_FILE)"
            )
        key = self.identify(authorization)
        if key is None:
            raise UnauthorizedError(f"{_WHAT_NEEDS[scope]} need a key: Authorization: Bearer <key>")
        if scope not in key.scopes:
            raise ForbiddenError(f"the key {key.name!r} may not use {_WHAT_NEEDS[scope]}")
        return key.name
