"""The edge of browser calls (``/v1/client/*``, docs/api.md "The browser half"): a browser token
instead of an API key, and exact CORS.

In order: route (404/405) → the token (401 ``invalid_token``: malformed, expired, badly
signed, its browser key or minting server key revoked) → the ``Origin``, checked against
the token's browser key before anything happens (403 ``origin_not_allowed``, without any
CORS header) → the token's purpose (403 ``wrong_token_purpose``) → its capability (403) →
the per-customer rate (429) → content type and body → the handler.

Every answer to an allowed origin — errors included — carries
``access-control-allow-origin: <origin>``, ``vary: origin`` and the exposed headers; never
``access-control-allow-credentials``. ``Origin: null`` never matches. A preflight
(``OPTIONS``, no token) answers 204 when some live browser key allows the origin, else 403
without CORS headers. Server endpoints never send CORS headers (edge.py has none).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

import trio
from quart import Request, Response

from perkamo.access.browser_auth import BrowserCaller
from perkamo.access.browser_keys import origin_allowed
from perkamo.access.rate_limit import Decision
from perkamo.errors import Code, PerkamoError
from perkamo.failures import classify
from perkamo.http import edge
from perkamo.http.bodies import decode_body
from perkamo.http.errors import new_request_id
from perkamo.http.router import Route, Router
from perkamo.runtime import Runtime
from storage import StorageUnavailable
from storage.thread_calls import deadline_at

B = TypeVar("B", covariant=True)

EXPOSE = "retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, x-perkamo-request-id"
PREFLIGHT = {
    "access-control-allow-methods": "GET, POST",
    "access-control-allow-headers": "authorization, content-type, x-perkamo-browser-key, "
    "last-event-id",
    "access-control-max-age": "600",
}
_PURPOSE = {"read": "client", "events": "client", "stream": "stream"}
CHARGE_WAIT = 0.5  # seconds for the owner's bucket; then this member's own


@dataclass(frozen=True, slots=True)
class ClientCall(Generic[B]):
    """What a browser route's handler gets."""

    runtime: Runtime
    caller: BrowserCaller
    body: B
    received_at: datetime
    rate: Decision
    request: Request
    body_size: int = 0
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class StreamBody:
    """A Server-Sent Events answer: its chunks, produced until the stream ends."""

    chunks: AsyncIterator[bytes]


def cors(origin: str) -> dict[str, str]:
    return {
        "access-control-allow-origin": origin,
        "vary": "origin",
        "access-control-expose-headers": EXPOSE,
    }


def _token(request: Request, route: Route) -> str:
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if route.client == "stream":  # EventSource cannot send headers
        return request.args.get("token", "")
    return ""


async def dispatch(
    plain: edge.Plain, router: Router, request: Request, trace: edge.Trace
) -> Response:
    """One browser call (see the module docstring); measured and logged by edge.handle."""
    runtime = plain.runtime
    request_id = new_request_id(request.headers.get("x-request-id"))
    origin = request.headers.get("origin")
    allowed: dict[str, str] = {}  # the CORS headers, once the origin is known to be allowed
    rate_headers: dict[str, str] = {}
    deadline = trio.current_time() + runtime.settings.request_timeout - edge.ANSWER_MARGIN
    try:
        if runtime.stopping:
            raise PerkamoError(
                Code.SHUTTING_DOWN, "The server is shutting down; retry on a new connection."
            )
        if request.method == "OPTIONS":
            trace.route = "preflight"
            return await _preflight(runtime, origin, request_id)
        route, _ = await edge.route_of(router, request, trace)
        trace.route = route.pattern
        edge.check_declared_size(request)
        if route.client is None:  # the browser client itself: anyone may load it
            await edge.read_body(request, trace)
            answer = edge.respond(await route.handler(plain), request_id)
            answer.headers["access-control-allow-origin"] = "*"
            return answer
        caller = await _authenticate(runtime, request, route, deadline)
        trace.space = caller.key.space_slug
        if origin is not None:
            if not origin_allowed(caller.key.allowed_origins, origin):
                raise PerkamoError(
                    Code.ORIGIN_NOT_ALLOWED, "This origin is not allowed by the browser key."
                )
            allowed = cors(origin)
        _check_token(caller, route)
        received_at = datetime.now(UTC)
        runtime.usage.count_request(caller.space_id, received_at)
        decision = await _charge(runtime, caller)
        rate_headers = decision.headers()
        if not decision.allowed:
            raise PerkamoError(
                Code.RATE_LIMITED,
                "Too many requests for this customer; slow down.",
                retry_after=decision.retry_after,
            )
        raw = await edge.read_body(request, trace)
        body = None
        if route.request is not None:
            edge.check_content_type(request.headers.get("content-type"))
            named = request.args.getlist("tenant") + request.args.getlist("space")
            body = decode_body(raw, route.request, named, caller.claims.space)
        call = ClientCall(
            runtime, caller, body, received_at, decision, request, len(raw), request_id
        )
        result = await edge.bounded(route.handler, call, deadline, request.method)
        return _respond(result, request_id, {**rate_headers, **allowed})
    except Exception as failure:
        exc = classify(failure)
        trace.code = exc.code.value
        if not allowed and origin is not None and exc.code is not Code.ORIGIN_NOT_ALLOWED:
            allowed = await _allowed_by_header_key(runtime, request, origin)
        extra = {**rate_headers, **allowed, **edge.closing(request, trace, exc)}
        return edge.error_response(exc, request_id, extra)


async def _preflight(runtime: Runtime, origin: str | None, request_id: str) -> Response:
    """A preflight carries no token: allowed when some live browser key allows the origin."""
    if origin is None or not await runtime.browser.origin_known(origin):
        raise PerkamoError(Code.ORIGIN_NOT_ALLOWED, "This origin is not allowed by any key.")
    response = Response(b"", status=204)
    response.headers["x-perkamo-request-id"] = request_id
    for name, value in {**cors(origin), **PREFLIGHT}.items():
        response.headers[name] = value
    del response.headers["content-type"]
    return response


async def _authenticate(
    runtime: Runtime, request: Request, route: Route, deadline: float
) -> BrowserCaller:
    header_key = request.headers.get("x-perkamo-browser-key")
    with deadline_at(deadline), trio.move_on_at(deadline):
        return await runtime.browser.authenticate(_token(request, route), header_key)
    raise StorageUnavailable("authentication passed the request's deadline")


_MAY = {"read": "read the profile", "events": "send events", "stream": "open streams"}


def _check_token(caller: BrowserCaller, route: Route) -> None:
    capability = route.client or "read"
    if caller.claims.purpose != _PURPOSE[capability]:
        raise PerkamoError(
            Code.WRONG_TOKEN_PURPOSE,
            "A stream token opens streams only; other client calls take a client token."
            if caller.claims.purpose == "stream"
            else "Open streams with a stream token (purpose: stream).",
        )
    may = {"read": caller.may_read, "events": caller.may_events, "stream": caller.may_stream}
    if not may[capability]:
        code = Code.EVENT_NOT_ALLOWED if capability == "events" else Code.INSUFFICIENT_SCOPE
        raise PerkamoError(code, f"This browser token may not {_MAY[capability]}.")


async def _charge(runtime: Runtime, caller: BrowserCaller) -> Decision:
    """The browser key's per-customer bucket — reads, stream opens and events alike. It
    lives at the profile's owner (one bucket, however many members a page's calls reach);
    here when this member owns the profile, or the owner does not answer within
    ``CHARGE_WAIT``."""
    rate = caller.key.rate
    bucket = f"{caller.key.id}\x00{caller.user_id}"
    per_second, burst = float(rate["per_second"]), int(rate["burst"])
    profile = (caller.space_id, caller.user_id)
    with trio.move_on_after(CHARGE_WAIT):
        # Another member owns the profile: its link may still be connecting (first use).
        while (remote := runtime.cluster.charge(profile, bucket, per_second, burst)) is None:
            if runtime.cluster.owner_of(profile) is None:
                break
            await trio.sleep(0.01)
        if remote is not None:
            answer = await remote.wait()
            if answer is not None:
                return Decision(answer.allowed, answer.limit, answer.remaining, answer.reset,
                                answer.retry_after)  # fmt: skip
    return runtime.client_rate.take(bucket, per_second, burst)


async def _allowed_by_header_key(runtime: Runtime, request: Request, origin: str) -> dict[str, str]:
    """A call refused before its token was known (a 401, a 404) still gets CORS headers
    when the ``x-perkamo-browser-key`` it sent allows its origin, so that the page can read
    why (and fetch a fresh token)."""
    header_key = request.headers.get("x-perkamo-browser-key")
    if not header_key:
        return {}
    try:
        with trio.move_on_after(1):
            record = await runtime.browser.browser_key(header_key)
            if record is not None and origin_allowed(record.allowed_origins, origin):
                return cors(origin)
    except Exception:  # storage trouble: the answer goes out without CORS headers
        return {}
    return {}


def _respond(result: edge.Result[object], request_id: str, headers: dict[str, str]) -> Response:
    body = result.body
    if isinstance(body, StreamBody):
        response = Response(body.chunks, status=200, content_type="text/event-stream")
        response.timeout = None  # a stream lasts until its token expires
        response.headers["cache-control"] = "no-cache"
        response.headers["x-accel-buffering"] = "no"  # proxies must not buffer it
        response.headers["x-perkamo-request-id"] = request_id
        for name, value in headers.items():
            response.headers[name] = value
        return response
    return edge.respond(result, request_id, headers)
