"""Connections: a psycopg 3 pool driven from worker threads.

psycopg's async API runs only on asyncio, so every query runs in a worker thread through
``trio.to_thread.run_sync``. A thread call cannot be cancelled, so statements are bounded by
PostgreSQL's ``statement_timeout`` instead.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

import msgspec
import psycopg
import psycopg_pool
import trio
from psycopg.types.json import set_json_dumps, set_json_loads

from ._errors import StorageUnavailable

# JSON columns decode with exact decimals, never binary floats (balances must be exact).
_json_decoder = msgspec.json.Decoder(float_hook=Decimal)
set_json_loads(_json_decoder.decode)
set_json_dumps(msgspec.json.Encoder(decimal_format="number").encode)

P = ParamSpec("P")
T = TypeVar("T")

STATEMENT_TIMEOUT_MS = 4000
CONNECT_TIMEOUT_S = 3


def connection_kwargs() -> dict[str, Any]:
    """Settings every connection of the product uses."""
    return {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c timezone=UTC",
    }


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    """One connection with the product's settings (for the writer and the listener)."""
    try:
        return psycopg.connect(url, autocommit=autocommit, **connection_kwargs())
    except psycopg.Error as exc:
        raise StorageUnavailable(str(exc)) from exc


class Database:
    """The shared pool. ``run(fn, ...)`` (async, in a worker thread) and ``call(fn, ...)``
    (blocking) call ``fn(conn, ...)`` inside a transaction that commits when ``fn`` returns
    and rolls back when it raises.

    Raises StorageUnavailable when no connection can be had or PostgreSQL fails the work.
    """

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 10) -> None:
        self.url = url
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs=connection_kwargs(),
            timeout=CONNECT_TIMEOUT_S,
            open=False,
            name="perkamo",
        )
        self._limiter = trio.CapacityLimiter(max_size)

    def open(self) -> None:
        self._pool.open(wait=True, timeout=10)

    def close(self) -> None:
        self._pool.close()

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        try:
            with self._pool.connection() as conn:
                return fn(conn, *args, **kwargs)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise StorageUnavailable(str(exc)) from exc
        except psycopg.errors.QueryCanceled as exc:
            raise StorageUnavailable("statement timed out") from exc

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(
            functools.partial(self.call, fn, *args, **kwargs), limiter=self._limiter
        )


@asynccontextmanager
async def open_database(url: str, *, max_size: int = 10) -> AsyncIterator[Database]:
    db = Database(url, max_size=max_size)
    try:
        await trio.to_thread.run_sync(db.open)
    except psycopg_pool.PoolTimeout as exc:
        await trio.to_thread.run_sync(db.close)
        raise StorageUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        yield db
    finally:
        await trio.to_thread.run_sync(db.close)
