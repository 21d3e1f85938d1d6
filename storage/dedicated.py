"""A connection of its own for a background task (the health probe, the membership
heartbeat): its queries never queue behind the shared pool's work, which is what they
report on or must not be delayed by."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import trio

from ._errors import StorageUnavailable
from .database import DEFAULT_TIMEOUTS, Timeouts, connect

T = TypeVar("T")


class DedicatedConnection:
    """Autocommit; opened on first use and again after a failure. ``run`` is not
    abandoned on cancel: the thread owns the connection until it returns (bounded by the
    connect and statement timeouts)."""

    def __init__(self, url: str, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        self._url = url
        self._timeouts = timeouts
        self._conn: psycopg.Connection[Any] | None = None
        self._limiter = trio.CapacityLimiter(1)
        self._finished = False  # closed for good: no reconnecting

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``fn(conn, *args)`` in a worker thread; raises StorageUnavailable."""
        return await trio.to_thread.run_sync(self._call, fn, *args, limiter=self._limiter)

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._finished:
            raise StorageUnavailable("this connection was closed for good")
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(self._url, autocommit=True, timeouts=self._timeouts)
            return fn(self._conn, *args)
        except psycopg.Error as exc:
            self.close()
            raise StorageUnavailable(str(exc)) from exc

    def close(self, *, finished: bool = False) -> None:
        """Close the connection (the next ``run`` opens another, unless ``finished``)."""
        self._finished = self._finished or finished
        if self._conn is not None:
            self._conn.close()
            self._conn = None
