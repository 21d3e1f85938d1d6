"""The one place where errors become HTTP responses."""

from __future__ import annotations

from typing import Any

from ..errors import PerkamoError


def error_body(exc: PerkamoError, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {"error": exc.code, "message": exc.message, "request_id": request_id}
    if exc.details:
        body["details"] = exc.details
    return body


def item_error(exc: PerkamoError) -> dict[str, Any]:
    """The ``error`` object of a failed batch item."""
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    if exc.details:
        body["details"] = exc.details
    return body
