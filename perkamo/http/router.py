"""Routing on the raw (still percent-encoded) path.

A ``user_id`` is one path segment that may contain an encoded ``/`` (the PHP SDK
``rawurlencode``s it), so routing splits the raw path and decodes only the matched segment.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from perkamo.errors import Code, PerkamoError, validation_failed

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint. ``request`` and ``response`` are the msgspec types of its bodies (None:
    no JSON body); ``errors`` lists the statuses it documents beyond the edge's own. The
    OpenAPI document is generated from these (openapi.py)."""

    method: str
    pattern: str  # e.g. "/v1/profile/{user_id}"
    handler: Handler
    scope: str | None  # required API-key scope; None: no key (operational endpoints)
    summary: str = ""
    request: Any = None
    response: Any = None
    errors: tuple[int, ...] = ()
    # A one-pass typed decoder for the body (requests.typed), tried before the two phases.
    fast: Callable[[bytes], Any] | None = None
    success: int = 200  # the status of a successful answer


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[tuple[str, ...], Route]] = []

    def add(self, route: Route) -> None:
        self._routes.append((tuple(route.pattern.strip("/").split("/")), route))

    @property
    def routes(self) -> list[Route]:
        return [route for _, route in self._routes]

    def match(self, method: str, raw_path: bytes) -> tuple[Route, dict[str, str]]:
        """Find the route; raises not_found or method_not_allowed (with ``allow``)."""
        try:
            path = raw_path.decode("ascii")
        except UnicodeDecodeError:
            raise PerkamoError(Code.NOT_FOUND, "No such endpoint.") from None
        segments = path.strip("/").split("/") if path.startswith("/") else None
        if segments is None or path.endswith("/") and path != "/":
            raise PerkamoError(Code.NOT_FOUND, "No such endpoint.")
        allowed: list[str] = []
        for pattern, route in self._routes:
            params = _match(pattern, segments)
            if params is None:
                continue
            if route.method == method:
                return route, {k: decode_segment(k, v) for k, v in params.items()}
            allowed.append(route.method)
        if allowed:
            raise PerkamoError(
                Code.METHOD_NOT_ALLOWED,
                f"{method} is not allowed here; use {', '.join(allowed)}.",
                allow=", ".join(allowed),
            )
        raise PerkamoError(Code.NOT_FOUND, "No such endpoint.")


def _match(pattern: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params: dict[str, str] = {}
    for want, got in zip(pattern, segments, strict=True):
        if want.startswith("{") and want.endswith("}"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want == "*":
            continue
        elif got != want and unquote(got) != want:
            return None
    return params


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc


def decode_segment(name: str, raw: str) -> str:
    """One rule for every path parameter, API and console alike: each ``%`` starts two hex
    digits, the bytes they spell are UTF-8, and the text holds no control character (no
    identifier may; a ``%00`` once reached PostgreSQL and answered 500). Anything else is
    400 ``validation_error`` naming the parameter (a lone ``%`` is not taken literally)."""
    try:
        if _BAD_ESCAPE.search(raw):
            raise UnicodeDecodeError("percent", b"", 0, 1, "bad escape")
        value = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise validation_failed(name, "is not valid percent-encoded UTF-8") from None
    if _CONTROL.search(value):
        raise validation_failed(name, "contains control characters")
    return value
