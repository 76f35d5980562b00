"""decider's errors: each carries the HTTP status it answers with, and a message for people."""

from __future__ import annotations


class DeciderError(Exception):
    status_code = 400

    def __init__(self, message: str, *, status_code: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code is not None:
            self.status_code = status_code


class NotFound(DeciderError):
    status_code = 404


class Conflict(DeciderError):
    """The request is well formed but clashes with the case as it stands (already decided, not yours)."""

    status_code = 409


class InvalidInput(DeciderError):
    status_code = 422


class Unauthorized(DeciderError):
    status_code = 401


class Forbidden(DeciderError):
    status_code = 403


class ModelRefused(DeciderError):
    """A model artifact failed a check (hash, trusted types, features) and will not be served."""

    status_code = 409
