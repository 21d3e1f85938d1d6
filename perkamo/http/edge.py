"""The HTTP edge: every request passes these checks in the documented order
(API.md §5): route → body size → API key → signature → scope → content type → JSON →
tenant; then the route's handler runs (schema, idempotency, business rules)."""

from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from quart import Request, Response
from werkzeug.exceptions import RequestEntityTooLarge

from storage import StorageUnavailable
from storage.spaces import KeyRecord

from .. import signing
from ..errors import (
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PerkamoError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from ..rate_limit import DEFAULT_BURST, DEFAULT_RATE
from ..runtime import Runtime
from ..wire import check_tenants, decode_json, tenants_named
from .errors import error_body
from .router import Route, Router

log = logging.getLogger(__name__)
access_log = logging.getLogger("perkamo.access")

MAX_BODY_BYTES = 1024 * 1024
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}\Z")
_JSON_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json\Z")
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_encoder = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the authenticated key, path parameters and the decoded body."""

    runtime: Runtime
    key: KeyRecord
    params: dict[str, str]
    body: Any
    received_at: datetime


def new_request_id(header: str | None) -> str:
    if header and _SANE_REQUEST_ID.match(header):
        return header
    return "req_" + secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")


def json_response(
    status: int, payload: Any, request_id: str, headers: dict[str, str] | None = None
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


async def handle(runtime: Runtime, router: Router, request: Request) -> Response:
    """Dispatch one request; every response is measured and logged (never the key or body)."""
    started = time.perf_counter()
    trace = _Trace()
    response = await _dispatch(runtime, router, request, trace)
    elapsed = time.perf_counter() - started
    runtime.metrics.observe(trace.route, response.status_code, elapsed, trace.code)
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


async def _dispatch(runtime: Runtime, router: Router, request: Request, trace: _Trace) -> Response:
    request_id = new_request_id(request.headers.get("x-request-id"))
    rate_headers: dict[str, str] = {}  # sent on every authenticated response
    try:
        route, params, body = await _route_and_body(router, request)
        trace.route = route.pattern
        if route.scope is None:
            status, payload = await route.handler(runtime)
            if isinstance(payload, RawBody):
                raw = Response(payload.body, status=status, content_type=payload.content_type)
                raw.headers["x-perkamo-request-id"] = request_id
                return raw
            return json_response(status, payload, request_id)
        record, key = await runtime.auth.authenticate(request.headers.get("x-perkamo-api-key"))
        trace.space = record.space_slug
        received_at = datetime.now(UTC)
        runtime.usage.count_request(record.space_id, received_at)
        limits = record.space_limits
        decision = runtime.rate_limiter.take(
            record.id,
            float(limits.get("rate", DEFAULT_RATE)),
            int(limits.get("burst", DEFAULT_BURST)),
        )
        rate_headers = decision.headers()
        if not decision.allowed:
            raise TooManyRequests(
                "Too many requests for this API key; slow down.",
                code="rate_limited",
                headers={"retry-after": str(decision.retry_after)},
            )
        signed = _check_signature(record, key, request, body)
        if request.method in _MUTATING:
            runtime.usage.count_request(record.space_id, received_at, "mutating_requests")
            if signed:
                runtime.usage.count_request(record.space_id, received_at, "signed_requests")
        if route.scope not in record.scopes:
            raise Forbidden(
                f"This API key lacks the {route.scope} scope.", code="insufficient_scope"
            )
        if request.method in _MUTATING:
            _check_content_type(request.headers.get("content-type"))
            value = decode_json(body)
            check_tenants(tenants_named(value), record.space_slug)
        else:
            value = None
            named = [v for k in ("tenant", "space") if (v := request.args.get(k)) is not None]
            check_tenants(named, record.space_slug)
        call = Call(runtime, record, params, value, received_at)
        status, payload = await route.handler(call)
        return json_response(status, payload, request_id, rate_headers)
    except PerkamoError as exc:
        trace.code = exc.code
        return error_response(exc, request_id, rate_headers)
    except StorageUnavailable:
        return error_response(
            ServiceUnavailable("Storage is unavailable; retry.", code="storage_unavailable"),
            request_id,
            rate_headers,
        )
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id})
        return error_response(
            InternalError("Something went wrong on our side; retry shortly."),
            request_id,
            rate_headers,
        )


async def _route_and_body(router: Router, request: Request) -> tuple[Route, dict[str, str], bytes]:
    """Match the route (404/405 first, as documented), but read the body in every case: an
    answer sent before the request's body was consumed wedges the keep-alive connection
    (hypercorn's h11 then never parses the next request). A body over the limit is not read
    at all; that answer closes the connection instead."""
    try:
        route, params = router.match(request.method, request.scope.get("raw_path") or b"/")
    except (NotFound, MethodNotAllowed) as refused:
        try:
            await _read_body(request)
        except PayloadTooLarge:
            refused.headers["connection"] = "close"
        raise
    try:
        body = await _read_body(request)
    except PayloadTooLarge as exc:
        exc.headers["connection"] = "close"
        raise
    return route, params, body


async def _read_body(request: Request) -> bytes:
    try:
        data = await request.get_data(cache=False, as_text=False)
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"The request body is larger than {MAX_BODY_BYTES} bytes.") from None
    assert isinstance(data, bytes)
    return data


def _check_signature(record: KeyRecord, key: str, request: Request, body: bytes) -> bool:
    """True when the request carries a valid signature; raises for an invalid one (or a
    missing one where the Space requires it)."""
    given = request.headers.get("x-perkamo-signature")
    if given is None:
        if record.require_signatures and request.method in _MUTATING:
            raise Unauthorized(
                "This Space requires signed requests (x-perkamo-signature).",
                code="signature_required",
            )
        return False
    timestamp = request.headers.get("x-perkamo-timestamp", "")
    raw_path = (request.scope.get("raw_path") or b"/").decode("ascii", "replace")
    if not signing.verify(key, timestamp, given, request.method, raw_path, body, time.time()):
        raise Unauthorized(
            "The request signature is invalid or its timestamp is outside the "
            f"{signing.WINDOW_SECONDS}-second window.",
            code="invalid_signature",
        )
    return True


def _check_content_type(content_type: str | None) -> None:
    if content_type is None:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if not _JSON_TYPE.match(media):
        raise UnsupportedMediaType("Send the body as JSON (content-type: application/json).")
