"""Routes and routing on the raw (still percent-encoded) path.

A route declares everything about itself: its method and pattern, the scope a key needs,
the Struct its body decodes into (once, at the edge), the type it answers, the statuses it
documents beyond the edge's own and its rate-limit cost. The OpenAPI document (openapi.py)
and a test follow from these declarations; ``keyed`` and ``keyless`` build them so that mypy
checks a handler against the body and answer types it is declared with.

A ``user_id`` is one path segment that may contain an encoded ``/`` (the PHP SDK
``rawurlencode``s it), so routing splits the raw path and decodes only the matched segment.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import unquote

from perkamo.errors import Code, PerkamoError, validation_failed

if TYPE_CHECKING:
    from perkamo.http.client_edge import ClientCall
    from perkamo.http.edge import Call, Plain, Result

B = TypeVar("B")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint (see the module docstring). ``scope`` None: no key (operational
    endpoints, whose handlers get a ``Plain``)."""

    method: str
    pattern: str  # e.g. "/v1/profile/{user_id}"
    handler: Callable[..., Awaitable[Result[object]]]
    scope: str | None
    summary: str = ""
    request: type | None = None  # the body's Struct (None: no body)
    response: type | str | None = None  # the answer's type, or a media type (a page, a file)
    errors: tuple[int, ...] = ()
    success: int = 200  # the status of a successful answer
    cost: Callable[..., int] | None = None  # rate-limit tokens a body takes (default 1)
    fast: type | None = None  # a stricter shape tried first in one pass (a batch of events)
    # A browser call (docs/api.md "The browser half"): the capability its token needs
    # (read, events, stream); such a route takes a browser token, never an API key.
    client: str | None = None


def keyed(
    method: str,
    pattern: str,
    handler: Callable[[Call[B]], Awaitable[Result[T]]],
    scope: str,
    summary: str,
    request: type[B] | None,
    response: type[T],
    errors: tuple[int, ...] = (),
    *,
    success: int = 200,
    cost: Callable[[B], int] | None = None,
    fast: type | None = None,
) -> Route:
    """A route for a key with ``scope``: its handler gets the key and the decoded body."""
    return Route(method, pattern, handler, scope, summary, request, response, errors, success,
                 cost, fast)  # fmt: skip


def keyless(
    method: str,
    pattern: str,
    handler: Callable[[Plain], Awaitable[Result[T]]],
    summary: str,
    response: type[T] | str,
    errors: tuple[int, ...] = (),
) -> Route:
    """An operational route (no key, no body)."""
    return Route(method, pattern, handler, None, summary, None, response, errors)


def client(
    method: str,
    pattern: str,
    handler: Callable[[ClientCall[B]], Awaitable[Result[T]]],
    capability: str,
    summary: str,
    request: type[B] | None,
    response: type[T] | str,
    errors: tuple[int, ...] = (),
) -> Route:
    """A browser route: a token with ``capability`` (read, events, stream), CORS."""
    return Route(method, pattern, handler, None, summary, request, response, errors,
                 client=capability)  # fmt: skip


class Router:
    """``params``: a check per path parameter name, run on its decoded value when a route
    matches (before anything else: a module that does not exist is 404 whatever the
    body)."""

    def __init__(self, params: dict[str, Callable[[str], None]] | None = None) -> None:
        self._routes: list[tuple[tuple[str, ...], Route]] = []
        self._params = params or {}

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
                decoded = {k: decode_segment(k, v) for k, v in params.items()}
                for name, value in decoded.items():
                    if (check := self._params.get(name)) is not None:
                        check(value)
                return route, decoded
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
