"""The one place where errors become HTTP responses."""

from __future__ import annotations

import re

import msgspec

from perkamo import ids
from perkamo.errors import PerkamoError
from perkamo.http.responses import ErrorBody, ErrorDetail, ItemError

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}\Z")


def new_request_id(header: str | None) -> str:
    """The caller's ``x-request-id`` when it is a sane token, else ``req_<random>``."""
    if header and _SANE_REQUEST_ID.match(header):
        return header
    return "req_" + ids.token_urlsafe(12).replace("-", "x").replace("_", "y")


def _details(exc: PerkamoError) -> list[ErrorDetail] | msgspec.UnsetType:
    if not exc.details:
        return msgspec.UNSET
    return [ErrorDetail(d["path"], d["message"]) for d in exc.details]


def error_body(exc: PerkamoError, request_id: str) -> ErrorBody:
    return ErrorBody(exc.code.value, exc.message, request_id, _details(exc))


def item_error(exc: PerkamoError) -> ItemError:
    """The ``error`` object of a failed batch item."""
    return ItemError(exc.code.value, exc.message, _details(exc))
