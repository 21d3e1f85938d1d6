"""The one error hierarchy. Each error carries a stable snake_case code and a user-safe
message; ``perkamo.http.errors`` maps them to HTTP responses in one place."""

from __future__ import annotations

from typing import ClassVar


class PerkamoError(Exception):
    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details
        self.headers = headers or {}


class BadRequest(PerkamoError):
    """400: malformed input or a business rule (codes: invalid_json, idempotency_conflict…)."""


class ValidationFailed(BadRequest):
    default_code = "validation_error"

    def __init__(self, path: str, message: str) -> None:
        super().__init__(
            f"Invalid request: {path}: {message}" if path else f"Invalid request: {message}",
            details=[{"path": path, "message": message}],
        )


class Unauthorized(PerkamoError):
    status = 401
    default_code = "invalid_api_key"


class Forbidden(PerkamoError):
    status = 403
    default_code = "insufficient_scope"


class NotFound(PerkamoError):
    status = 404
    default_code = "not_found"


class MethodNotAllowed(PerkamoError):
    status = 405
    default_code = "method_not_allowed"


class PayloadTooLarge(PerkamoError):
    status = 413
    default_code = "payload_too_large"


class UnsupportedMediaType(PerkamoError):
    status = 415
    default_code = "unsupported_media_type"


class TooManyRequests(PerkamoError):
    status = 429
    default_code = "rate_limited"


class NotSupported(PerkamoError):
    status = 501
    default_code = "not_supported"


class InternalError(PerkamoError):
    status = 500
    default_code = "internal_error"


class ServiceUnavailable(PerkamoError):
    """503: the caller retries with the same transaction id (codes: overloaded,
    storage_unavailable, outcome_unknown)."""

    status = 503
    default_code = "storage_unavailable"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, code=code, headers={"retry-after": str(retry_after)})
