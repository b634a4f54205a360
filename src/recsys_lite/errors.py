"""The one error hierarchy. Each class carries the HTTP status the API answers with."""

from __future__ import annotations

from typing import Any


class RecsysError(Exception):
    """Base of every error the product raises on purpose."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_dict(self) -> dict[str, Any]:
        """The one error body of the HTTP API: ``{error, message, details}``."""
        return error_body(self.code, self.message, self.details)


def error_body(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"error": code, "message": message, "details": details or []}


# Codes of errors raised by the HTTP layer itself (routing, methods, limits), by status.
HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class InvalidInputError(RecsysError):
    """The caller sent something that cannot be used (bad parameter, bad params JSON)."""

    status_code = 400
    code = "invalid_input"


class DataValidationError(InvalidInputError):
    """Input data failed validation; ``details`` name file, rows, column and reason."""

    status_code = 422
    code = "invalid_data"


class NotFoundError(RecsysError):
    status_code = 404
    code = "not_found"


class UnauthorizedError(RecsysError):
    """No key, or a key that is not valid."""

    status_code = 401
    code = "unauthorized"


class ForbiddenError(RecsysError):
    """The endpoint is disabled (no key configured) or the key may not use it."""

    status_code = 403
    code = "forbidden"


class RateLimitedError(RecsysError):
    """Too many requests from one client; ``retry_after`` says when to try again."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConflictError(RecsysError):
    """The request collides with work in progress (e.g. a training job already running)."""

    status_code = 409
    code = "conflict"


class ArtifactError(RecsysError):
    """A model artifact is missing, corrupt or was written by an incompatible version."""

    status_code = 503
    code = "artifact_error"


class NotFittedError(RecsysError):
    status_code = 503
    code = "not_fitted"


class StoreBusyError(RecsysError):
    """Another process held the store for longer than the lock timeout."""

    status_code = 503
    code = "store_busy"


class EmptyDataError(RecsysError):
    """There is nothing to train or evaluate on."""

    status_code = 409
    code = "empty_data"


class ModelUnavailableError(RecsysError):
    """A model whose library this installation lacks (torch, in an image built without it)."""

    status_code = 503
    code = "model_unavailable"


class VectorStoreError(RecsysError):
    """The configured vector store cannot be used (its extra is missing, its server is down)."""

    status_code = 503
    code = "vector_store_unavailable"
