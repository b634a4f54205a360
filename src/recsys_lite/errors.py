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
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


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
