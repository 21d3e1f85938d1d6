"""Fixtures: one real PostgreSQL (embedded wheel) for the session, a fresh Space and key per
test, a runtime, the real app driven in-process, a real server process. Helpers live in
modules named after what they hold: ``tests/spaces.py``, ``tests/api_client.py``,
``tests/server_process.py``, ``tests/leaks.py``."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
import trio

from perkamo.runtime import Runtime, open_runtime
from perkamo.settings import Settings
from storage import EmbeddedPostgres
from storage.migrations import migrate
from tests.api_client import Api, app_for
from tests.server_process import ServerProcess
from tests.spaces import SpaceKey, make_space


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that runs a real server process (the ``server`` fixture) runs in real time
    and must say so (``@pytest.mark.slow`` or its module's ``pytestmark``): ``make
    test-fast`` leaves those out."""
    unmarked = [
        item.nodeid
        for item in items
        if "server" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "mark these slow (they run a server process): " + ", ".join(unmarked)
        )


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


def forget_dead_members(pg_url: str) -> None:
    """Remove the members rows of this host's server processes that an earlier test killed:
    their heartbeats stay fresh for a few seconds, and a runtime that sees them as peers
    behaves as one member of several (the database is shared by the whole session)."""
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT id, pid FROM members WHERE host = %s", (socket.gethostname(),)
        ).fetchall()
        dead = [member for member, pid in rows if not psutil.pid_exists(pid)]
        conn.execute("DELETE FROM members WHERE id = ANY(%s)", (dead,))


@pytest.fixture
def space(pg_url: str) -> SpaceKey:
    return make_space(pg_url)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=None)


@pytest.fixture
async def runtime(pg_url: str, settings: Settings) -> AsyncIterator[Runtime]:
    forget_dead_members(pg_url)
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


@pytest.fixture
def api(runtime: Runtime, space: SpaceKey) -> Api:
    return Api(app_for(runtime), space.key)
