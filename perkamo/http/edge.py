"""The HTTP edge: every request passes these checks in the documented order
(docs/api.md (errors)): route → body size → API key → signature → scope → content type → JSON →
tenant; then the route's handler runs (schema, idempotency, business rules)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

import msgspec
import trio
from quart import Request, Response
from werkzeug.exceptions import RequestEntityTooLarge

from perkamo.access import signing
from perkamo.access.rate_limit import DEFAULT_BURST, DEFAULT_RATE, Decision
from perkamo.errors import Code, PerkamoError
from perkamo.failures import classify
from perkamo.http.bodies import check_tenants, decode_body
from perkamo.http.errors import error_body, new_request_id
from perkamo.http.router import Route, Router
from perkamo.runtime import Runtime
from storage import CommitOutcomeUnknown, StorageUnavailable
from storage.spaces import KeyRecord
from storage.thread_calls import deadline_at

B = TypeVar("B", covariant=True)  # a Call only ever hands its body out
T = TypeVar("T", covariant=True)  # a Result only ever hands its body out
log = logging.getLogger(__name__)
access_log = logging.getLogger("perkamo.access")

MAX_BODY_BYTES = 1024 * 1024
_JSON_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json\Z")
# The work of a request (its storage calls, its wait for the actor) ends this long before
# its 5 s are up, so that the answer itself still leaves in time (docs/api.md "Timeouts").
ANSWER_MARGIN = 0.1
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_encoder = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True, slots=True)
class Call(Generic[B]):
    """What a keyed handler gets: the authenticated key, path parameters and the body,
    decoded once into its route's Struct."""

    runtime: Runtime
    key: KeyRecord
    params: dict[str, str]
    body: B
    received_at: datetime
    rate: Decision
    body_size: int = 0
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Result(Generic[T]):
    """A handler's answer: a ``T``, or a ``T`` already encoded (``msgspec.Raw``: a logged
    write's answer, sent as the log keeps it), with its status."""

    body: T | msgspec.Raw
    status: int = 200
    headers: dict[str, str] | None = None  # beyond the usual (cache-control, …)


def json_response(
    status: int, payload: object, request_id: str, headers: dict[str, str] | None = None
) -> Response:
    response = Response(_encoder.encode(payload), status=status, content_type="application/json")
    response.headers["x-perkamo-request-id"] = request_id
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response(
    exc: PerkamoError, request_id: str, extra: dict[str, str] | None = None
) -> Response:
    headers = {**(extra or {}), **exc.headers}
    return json_response(exc.status, error_body(exc, request_id), request_id, headers)


@dataclass(frozen=True, slots=True)
class RawBody:
    """A response body that is not JSON (the Prometheus text format)."""

    body: bytes
    content_type: str


@dataclass(slots=True)
class _Trace:
    route: str = "unmatched"
    space: str | None = None
    code: str | None = None
    body_read: bool = False


class Observability(Protocol):
    """What the edge reports every request to, and ``/metrics`` renders (ops/metrics.py)."""

    content_type: str

    def observe(self, route: str, status: int, seconds: float, code: str | None) -> None: ...

    def render(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Plain:
    """What an operational (keyless) handler gets."""

    runtime: Runtime
    metrics: Observability


Dispatch = Callable[["Plain", Router, Request, "_Trace"], Awaitable[Response]]


async def handle(
    runtime: Runtime,
    metrics: Observability,
    router: Router,
    request: Request,
    dispatch: Dispatch | None = None,
) -> Response:
    """Dispatch one request (``dispatch``: another edge's, the browser calls'); every
    response is measured and logged (never a key, a token or a body)."""
    started = time.perf_counter()
    trace = _Trace()
    response = await (dispatch or _dispatch)(Plain(runtime, metrics), router, request, trace)
    elapsed = time.perf_counter() - started
    metrics.observe(trace.route, response.status_code, elapsed, trace.code)
    access_log.info(
        "request",
        extra={
            "request_id": response.headers["x-perkamo-request-id"],
            "method": request.method,
            "route": trace.route,
            "status": response.status_code,
            "latency_ms": round(elapsed * 1000, 2),
            "space": trace.space,
        },
    )
    return response


async def _dispatch(plain: Plain, router: Router, request: Request, trace: _Trace) -> Response:
    runtime = plain.runtime
    request_id = new_request_id(request.headers.get("x-request-id"))
    rate_headers: dict[str, str] = {}  # sent on every authenticated response
    # The request's time: the server's own work, never the client's sending of the body.
    deadline = trio.current_time() + runtime.settings.request_timeout - ANSWER_MARGIN
    try:
        if runtime.stopping:
            raise PerkamoError(
                Code.SHUTTING_DOWN, "The server is shutting down; retry on a new connection."
            )
        route, params = await _route(router, request, trace)
        trace.route = route.pattern
        _check_declared_size(request)
        if route.scope is None:
            await _read_body(request, trace)
            return _respond(await route.handler(plain), request_id)
        # The key comes from the headers: an unauthenticated body is never read.
        record, key = await _authenticate(runtime, request, deadline)
        trace.space = record.space_slug
        received_at = datetime.now(UTC)
        runtime.usage.count_request(record.space_id, received_at)
        decision = runtime.rate_limiter.take(record.id, *rate_of(record))
        rate_headers = decision.headers()
        if not decision.allowed:
            raise rate_limited(decision)
        reading = trio.current_time()
        raw = await _read_body(request, trace)
        deadline += trio.current_time() - reading
        signed = _check_signature(record, key, request, raw)
        if request.method in _MUTATING:
            runtime.usage.count_request(record.space_id, received_at, "mutating_requests")
            if signed:
                runtime.usage.count_request(record.space_id, received_at, "signed_requests")
        if route.scope not in record.scopes:
            raise PerkamoError(
                Code.INSUFFICIENT_SCOPE, f"This API key lacks the {route.scope} scope."
            )
        named = request.args.getlist("tenant") + request.args.getlist("space")
        body: object = None
        if route.request is not None:
            _check_content_type(request.headers.get("content-type"))
            _check_content_encoding(request.headers.get("content-encoding"))
            body = decode_body(raw, route.request, named, record.space_slug, route.fast)
            if route.cost is not None:  # the first token was taken above
                _take_more(runtime, record, route.cost(body) - 1)
        else:
            check_tenants(named, record.space_slug)
        call = Call(runtime, record, params, body, received_at, decision, len(raw), request_id)
        result = await _bounded(route.handler, call, deadline, request.method)
        return _respond(result, request_id, rate_headers)
    except Exception as failure:
        exc = classify(failure)
        trace.code = exc.code.value
        return error_response(exc, request_id, {**rate_headers, **_closing(request, trace, exc)})


def _respond(
    result: Result[object], request_id: str, headers: dict[str, str] | None = None
) -> Response:
    body = result.body
    if isinstance(body, RawBody):
        raw = Response(body.body, status=result.status, content_type=body.content_type)
        raw.headers["x-perkamo-request-id"] = request_id
        for name, value in (result.headers or {}).items():
            raw.headers[name] = value
        return raw
    return json_response(
        result.status, result.body, request_id, {**(headers or {}), **(result.headers or {})}
    )


def _take_more(runtime: Runtime, record: KeyRecord, tokens: int) -> None:
    """A request that costs more than one token (a batch: one per item)."""
    if tokens > 0:
        decision = runtime.rate_limiter.take(record.id, *rate_of(record), cost=tokens)
        if not decision.allowed:
            raise rate_limited(decision)


def api_actor(record: KeyRecord) -> str:
    """Who an API key's changes are by, in the audit log: ``api:<its display prefix>``."""
    return f"api:{record.prefix}"


async def _authenticate(
    runtime: Runtime, request: Request, deadline: float
) -> tuple[KeyRecord, str]:
    """The key's record, within the request's deadline (a key not cached needs storage)."""
    with deadline_at(deadline), trio.move_on_at(deadline):
        return await runtime.auth.authenticate(request.headers.get("x-perkamo-api-key"))
    raise StorageUnavailable("authentication passed the request's deadline")


async def _bounded(
    handler: Callable[..., Awaitable[Result[object]]],
    call: object,  # a Call, or a browser route's ClientCall
    deadline: float,
    method: str,
) -> Result[object]:
    """The handler, its storage calls and its wait for actors bound by the request's
    deadline; whatever still waits at the bound (a cache load another request began) is
    given up on, so that every answer leaves within the request timeout, however long
    storage is gone (docs/architecture.md "PostgreSQL failover")."""
    with deadline_at(deadline), trio.move_on_at(deadline + ANSWER_MARGIN / 2):
        return await handler(call)
    if method in _MUTATING:
        raise CommitOutcomeUnknown("the request passed its deadline")
    raise StorageUnavailable("the request passed its deadline")


def rate_of(record: KeyRecord) -> tuple[float, int]:
    """The key's token bucket: (requests per second, burst)."""
    limits = record.space_limits
    return float(limits.get("rate", DEFAULT_RATE)), int(limits.get("burst", DEFAULT_BURST))


def rate_limited(decision: Decision) -> PerkamoError:
    return PerkamoError(
        Code.RATE_LIMITED,
        "Too many requests for this API key; slow down.",
        retry_after=decision.retry_after,
    )


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return (length is not None and length.strip() != "0") or "transfer-encoding" in request.headers


def _closing(request: Request, trace: _Trace, exc: PerkamoError) -> dict[str, str]:
    """An answer sent before the request's body was read, or during a shutdown, closes the
    connection: the unread body would otherwise be taken for the next request (h11 never
    parses it), and a stopping server takes no further requests."""
    if exc.code is Code.SHUTTING_DOWN or (not trace.body_read and _has_body(request)):
        return {"connection": "close"}
    return {}


async def _route(router: Router, request: Request, trace: _Trace) -> tuple[Route, dict[str, str]]:
    """Match the route (404/405 first, as documented). A refused request's body is still
    read, within the read deadline, so that the keep-alive connection stays usable."""
    try:
        return router.match(request.method, request.scope.get("raw_path") or b"/")
    except PerkamoError as refused:
        if refused.code not in (Code.NOT_FOUND, Code.METHOD_NOT_ALLOWED):
            raise  # a malformed path parameter: the body was not needed
        if _has_body(request):
            _check_declared_size(request)
            await _read_body(request, trace)
        raise


def _check_declared_size(request: Request) -> None:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PerkamoError(
            Code.PAYLOAD_TOO_LARGE, f"The request body is larger than {MAX_BODY_BYTES} bytes."
        )


async def _read_body(request: Request, trace: _Trace) -> bytes:
    try:
        data = await request.get_data(cache=False, as_text=False)
    except RequestEntityTooLarge:
        raise PerkamoError(
            Code.PAYLOAD_TOO_LARGE, f"The request body is larger than {MAX_BODY_BYTES} bytes."
        ) from None
    assert isinstance(data, bytes)
    trace.body_read = True
    return data


def _check_signature(record: KeyRecord, key: str, request: Request, body: bytes) -> bool:
    """True when the request carries a valid signature; raises for an invalid one (or a
    missing one where the Space requires it)."""
    given = request.headers.get("x-perkamo-signature")
    if given is None:
        if record.require_signatures and request.method in _MUTATING:
            raise PerkamoError(
                Code.SIGNATURE_REQUIRED,
                "This Space requires signed requests (x-perkamo-signature).",
            )
        return False
    timestamp = request.headers.get("x-perkamo-timestamp", "")
    raw_path = (request.scope.get("raw_path") or b"/").decode("ascii", "replace")
    if not signing.verify(key, timestamp, given, request.method, raw_path, body, time.time()):
        raise PerkamoError(
            Code.INVALID_SIGNATURE,
            "The request signature is invalid or its timestamp is outside the "
            f"{signing.WINDOW_SECONDS}-second window.",
        )
    return True


def _check_content_type(content_type: str | None) -> None:
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if not _JSON_TYPE.match(media):
        raise PerkamoError(
            Code.UNSUPPORTED_MEDIA_TYPE, "Send the body as JSON (content-type: application/json)."
        )


def _check_content_encoding(encoding: str | None) -> None:
    """A body is read as sent: a content coding other than ``identity`` (gzip, ...) is not
    decoded, so it is refused rather than read as JSON (415, with the content type)."""
    if encoding is None:
        return
    codings = [coding.strip().lower() for coding in encoding.split(",")]
    if any(coding not in ("", "identity") for coding in codings):
        raise PerkamoError(
            Code.UNSUPPORTED_MEDIA_TYPE,
            "Send the body without a content encoding: only content-encoding: identity "
            "is accepted.",
        )


# What the browser calls' edge (client_edge.py) shares with this one.
Trace = _Trace
route_of = _route
check_declared_size = _check_declared_size
read_body = _read_body
respond = _respond
check_content_type = _check_content_type
bounded = _bounded
closing = _closing
