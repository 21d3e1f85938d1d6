"""Connections: a psycopg 3 pool driven from worker threads.

psycopg's async API runs only on asyncio, so every query runs in a worker thread through
``trio.to_thread.run_sync``. A thread call cannot be cancelled, so statements are bounded by
PostgreSQL's ``statement_timeout`` instead.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ParamSpec, TypeVar

import msgspec
import psycopg
import psycopg_pool
import trio
from psycopg.types.json import set_json_dumps, set_json_loads

from ._errors import StorageUnavailable

P = ParamSpec("P")
T = TypeVar("T")

_json_decoder = msgspec.json.Decoder(float_hook=Decimal)
_json_encoder = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a statement may run and a pool checkout (or a connect) may wait, in seconds.
    The product's settings choose them (and check them against the request timeout)."""

    statement: float = 4.0
    checkout: float = 3.0


DEFAULT_TIMEOUTS = Timeouts()


def configure(conn: psycopg.Connection[Any]) -> None:
    """JSON columns of this connection decode with exact decimals, never binary floats
    (balances must be exact), and encode decimals as numbers. Per connection: importing
    storage changes nothing for other psycopg users in the process."""
    set_json_loads(_json_decoder.decode, conn)
    set_json_dumps(_json_encoder.encode, conn)


def _connection_kwargs(timeouts: Timeouts) -> dict[str, Any]:
    return {
        "connect_timeout": max(1, round(timeouts.checkout)),
        "options": f"-c statement_timeout={round(timeouts.statement * 1000)} -c timezone=UTC",
    }


def connect(
    url: str, *, autocommit: bool = False, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> psycopg.Connection[Any]:
    """One connection with the product's settings (for the writer, the loader, the
    listener, the health probe, the CLI)."""
    try:
        conn = psycopg.connect(url, autocommit=autocommit, **_connection_kwargs(timeouts))
    except psycopg.Error as exc:
        raise StorageUnavailable(str(exc)) from exc
    configure(conn)
    return conn


def keyed_plans_only(conn: psycopg.Connection[Any]) -> None:
    """Plans that reach rows through their keys' indexes, never a scan of the table.

    The loader and the writer join a few keys (an array or a JSON document of them) to
    ``profiles``. Planned while the table was small, and kept as a prepared generic plan,
    that join was a hash join over a sequential scan: once the table held 100,000 profiles
    each load and flush scanned all of them, PostgreSQL spent 15 s of CPU per 20 s on it and
    the paced p99 tripled (bench/notes.md). These connections run keyed statements only."""
    conn.execute("SET enable_seqscan = off")
    conn.execute("SET enable_hashjoin = off")
    conn.execute("SET enable_mergejoin = off")
    if not conn.autocommit:
        conn.commit()


class Database:
    """The shared pool. ``run(fn, ...)`` (async, in a worker thread) and ``call(fn, ...)``
    (blocking) call ``fn(conn, ...)`` inside a transaction that commits when ``fn`` returns
    and rolls back when it raises.

    Raises StorageUnavailable when no connection can be had or PostgreSQL fails the work.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        self.url = url
        self.timeouts = timeouts
        self._pool = psycopg_pool.ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            kwargs=_connection_kwargs(timeouts),
            configure=configure,
            timeout=timeouts.checkout,
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
async def open_database(
    url: str, *, max_size: int = 10, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> AsyncIterator[Database]:
    db = Database(url, max_size=max_size, timeouts=timeouts)
    try:
        await trio.to_thread.run_sync(db.open)
    except psycopg_pool.PoolTimeout as exc:
        await trio.to_thread.run_sync(db.close)
        raise StorageUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        yield db
    finally:
        await trio.to_thread.run_sync(db.close)
