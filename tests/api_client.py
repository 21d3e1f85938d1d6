"""The real app in-process (routing, edge checks, handlers) through Quart's test client, and
the check that every answer any test sees is one the OpenAPI document promises."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec
import trio
from quart_trio import QuartTrio

from perkamo.errors import PerkamoError
from perkamo.http import openapi
from perkamo.http.app import create_app
from perkamo.http.responses import ErrorBody
from perkamo.http.routes import build_router
from perkamo.runtime import Runtime
from perkamo.server.metrics import Metrics
from tests.leaks import assert_no_leak


def app_for(runtime: Runtime) -> QuartTrio:
    """The app as ``perkamo serve`` builds it, metrics included."""
    return create_app(runtime, Metrics(runtime.statistics, runtime.cluster.membership.id))


_decoder = msgspec.json.Decoder(float_hook=None)
_exact = msgspec.json.Decoder(float_hook=Decimal)
_ROUTER = build_router()
_PATHS = openapi.document(_ROUTER.routes)["paths"]


def conforms(method: str, raw_path: bytes, status: int, headers: Any, raw: bytes) -> None:
    """Every response a test sees is one the OpenAPI document promises: a documented status,
    and a body that decodes into the route's response type (unknown fields forbidden) or,
    for an error, into ErrorBody. This is what keeps responses.py from drifting."""
    assert status != 500, raw
    assert headers["x-perkamo-request-id"]
    try:
        route, _ = _ROUTER.match(method, raw_path)
    except PerkamoError:
        assert status in (400, 404, 405), (status, raw)
        msgspec.json.decode(raw, type=ErrorBody)
        assert_no_leak(raw)
        return
    operation = _PATHS[openapi.template(route.pattern)][route.method.lower()]
    if status == 413:
        assert route.request is not None, "413 on a route without a body"
    else:
        assert str(status) in operation["responses"], (route.pattern, status, raw)
    if status >= 400:
        msgspec.json.decode(raw, type=ErrorBody)
        assert_no_leak(raw)
    elif isinstance(route.response, type) and issubclass(route.response, msgspec.Struct):
        msgspec.json.Decoder(route.response, float_hook=Decimal).decode(raw)


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any
    raw: bytes = b""


class Api:
    """Calls the real ASGI app (routing, edge checks, handlers) in-process."""

    def __init__(self, app: Any, key: str | None) -> None:
        self._client = app.test_client()
        self.key = key

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = "default",
    ) -> Answer:
        all_headers = {} if headers is None else dict(headers)
        use_key = self.key if key == "default" else key
        if use_key is not None:
            all_headers.setdefault("x-perkamo-api-key", use_key)
        body = data
        if json is not None:
            body = msgspec.json.encode(json)
            all_headers.setdefault("content-type", "application/json")
        if body is not None:  # as every HTTP client sends it (Quart's test client does not)
            all_headers.setdefault("content-length", str(len(body)))
        with trio.fail_after(15):
            # Like hypercorn: raw_path is the path exactly as sent (still percent-encoded).
            raw_path = path.split("?", 1)[0].encode("ascii")
            response = await self._client.open(
                path,
                method=method,
                data=body,
                headers=all_headers,
                scope_base={"raw_path": raw_path},
            )
            raw = await response.get_data()
        conforms(method, raw_path, response.status_code, response.headers, raw)
        try:
            parsed = _decoder.decode(raw) if raw else None
        except msgspec.ValidationError:  # a number beyond float range: as an exact decimal
            parsed = _exact.decode(raw)
        return Answer(response.status_code, parsed, response.headers, raw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Answer:
        return await self.request("POST", path, json=json, **kw)

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.request("GET", path, **kw)
