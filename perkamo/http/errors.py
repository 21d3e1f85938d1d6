"""The one place where errors become HTTP responses."""

from __future__ import annotations

import re
import secrets
from typing import Any

from perkamo.errors import PerkamoError

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}\Z")


def new_request_id(header: str | None) -> str:
    """The caller's ``x-request-id`` when it is a sane token, else ``req_<random>``."""
    if header and _SANE_REQUEST_ID.match(header):
        return header
    return "req_" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")


def error_body(exc: PerkamoError, request_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": exc.code.value,
        "message": exc.message,
        "request_id": request_id,
    }
    if exc.details:
        body["details"] = exc.details
    return body


def item_error(exc: PerkamoError) -> dict[str, Any]:
    """The ``error`` object of a failed batch item."""
    body: dict[str, Any] = {"error": exc.code.value, "message": exc.message}
    if exc.details:
        body["details"] = exc.details
    return body
