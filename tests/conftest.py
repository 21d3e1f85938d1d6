"""Shared fixtures: one real PostgreSQL (embedded wheel) for the session, a fresh Space and
key per test, and the real app driven through Quart's test client."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
import trio

from perkamo import admin, openapi
from perkamo.errors import PerkamoError
from perkamo.http.app import create_app
from perkamo.http.routes import build_router
from perkamo.responses import ErrorBody
from perkamo.runtime import Runtime, open_runtime
from perkamo.settings import Settings
from storage import EmbeddedPostgres
from storage.migrations import migrate
from tests.server_process import ServerProcess

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's PostgreSQL (or PERKAMO_TEST_DATABASE_URL when set), migrated."""
    url = os.environ.get("PERKAMO_TEST_DATABASE_URL")
    server = None
    if url is None:
        base = Path(tmp_path_factory.mktemp("pg", numbered=True))
        server = EmbeddedPostgres(base / "data")
        url = server.start()
    with psycopg.connect(url) as conn:
        migrate(conn)
    yield url
    if server is not None:
        server.stop()


@dataclass
class SpaceKey:
    space: Any
    key: str
    key_id: str

    @property
    def slug(self) -> str:
        return str(self.space.slug)


def make_space(pg_url: str, scopes: list[str] | None = None, environment: str = "test") -> SpaceKey:
    slug = f"space-{next(_counter)}-{secrets.token_hex(3)}"
    with psycopg.connect(pg_url) as conn:
        space = admin.create_space(conn, slug, f"Space {slug}", environment)
        key_id, key = admin.create_key(conn, space, scopes)
    return SpaceKey(space, key, key_id)


def committed(pg_url: str, space_id: int) -> dict[str, int]:
    """transaction id -> how many times it is in the event log."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT transaction_id, count(*) FROM events WHERE space_id = %s"
            " GROUP BY transaction_id",
            (space_id,),
        ).fetchall()
    return {tx: n for tx, n in rows}


@pytest.fixture
def space(pg_url: str) -> SpaceKey:
    return make_space(pg_url)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=None)


@pytest.fixture
async def runtime(pg_url: str, settings: Settings) -> AsyncIterator[Runtime]:
    with trio.fail_after(30):
        async with open_runtime(settings, pg_url) as rt:
            yield rt


@pytest.fixture
async def server(pg_url: str, tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """``perkamo serve`` as a real subprocess on the session's PostgreSQL."""
    proc = ServerProcess(pg_url, tmp_path)
    await proc.start()
    yield proc
    proc.kill()


_decoder = msgspec.json.Decoder(float_hook=None)
_ROUTER = build_router()
_PATHS = openapi.document(_ROUTER.routes)["paths"]
# What an error body must never carry: a trace, SQL, a source path, a database URL.
_LEAKS = (b"Traceback", b"SELECT ", b"INSERT ", b"psycopg", b'File "', b'.py"', b"postgresql://")


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
        assert not any(leak in raw for leak in _LEAKS), raw
        return
    operation = _PATHS[openapi.template(route.pattern)][route.method.lower()]
    if status == 413:
        assert route.request is not None, "413 on a route without a body"
    else:
        assert str(status) in operation["responses"], (route.pattern, status, raw)
    if status >= 400:
        msgspec.json.decode(raw, type=ErrorBody)
        for leak in _LEAKS:
            assert leak not in raw, (leak, raw)
    elif isinstance(route.response, type) and issubclass(route.response, msgspec.Struct):
        msgspec.json.decode(raw, type=route.response)


@dataclass
class Answer:
    status: int
    body: Any
    headers: Any


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
        parsed = _decoder.decode(raw) if raw else None
        return Answer(response.status_code, parsed, response.headers)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Answer:
        return await self.request("POST", path, json=json, **kw)

    async def get(self, path: str, **kw: Any) -> Answer:
        return await self.request("GET", path, **kw)


@pytest.fixture
def api(runtime: Runtime, space: SpaceKey) -> Api:
    return Api(create_app(runtime), space.key)
