"""A connection of its own for a background task (the health probe, the membership
heartbeat, the profile loader, the group-commit writer): its queries never queue behind the
shared pool's work, which is what they report on or must not be delayed by."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import trio

from ._errors import StorageUnavailable
from .database import DEFAULT_TIMEOUTS, Timeouts, connect, storage_failure
from .thread_calls import Ticket, call_in_thread, deadline_within

T = TypeVar("T")
Conn = psycopg.Connection[Any]


class DedicatedConnection:
    """Opened on first use and again after a failure. A call past its deadline
    (``seconds``, by default the timeouts' call bound) is abandoned: its caller gets
    StorageUnavailable at once and the thread discards the connection when it returns
    (thread_calls.py), so the next call opens another — on the new primary after a
    failover.

    ``one_session``: calls wait for each other, an abandoned one included, so that they
    share one PostgreSQL session (the membership's advisory locks live in it). Otherwise
    the caller runs one call at a time itself, and a call made while an abandoned one still
    holds the connection opens a new one at once."""

    def __init__(
        self,
        url: str,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        *,
        autocommit: bool = True,
        prepare: Callable[[Conn], None] | None = None,
        one_session: bool = True,
    ) -> None:
        self._url = url
        self._timeouts = timeouts
        self._autocommit = autocommit
        self._prepare = prepare
        self._conn: Conn | None = None  # while no call holds it
        self._lock = threading.Lock()
        self._generation = 0  # bumped by close(): a connection from before is not kept
        self._limiter = trio.CapacityLimiter(1) if one_session else None
        self._finished = False  # closed for good: no reconnecting

    async def run(self, fn: Callable[..., T], /, *args: Any, seconds: float | None = None) -> T:
        """``fn(conn, *args)`` in a worker thread; raises StorageUnavailable (a psycopg
        error is one too, and discards the connection)."""

        return await self.run_with(
            lambda ticket: self.call_with(ticket, lambda conn: fn(conn, *args)), seconds=seconds
        )

    async def run_with(
        self, fn: Callable[[Ticket], T], *, seconds: float | None = None, what: str = ""
    ) -> T:
        """``fn(ticket)`` in a worker thread, abandoned at the deadline; ``fn`` reaches the
        connection through ``call_with`` (for callers that handle psycopg errors and
        commits themselves, such as the group-commit writer)."""
        bound = self._timeouts.call if seconds is None else seconds
        return await call_in_thread(
            fn,
            deadline=deadline_within(bound),
            limiter=self._limiter,
            checkout=self._timeouts.checkout,
            what=what or "the storage call",
        )

    def call_with(self, ticket: Ticket, fn: Callable[[Conn], T]) -> T:
        """In the worker thread: ``fn(conn)`` on this connection (opened when needed).
        The connection is kept for the next call unless ``fn`` raised, discarded it
        through the ticket, or the caller gave up."""
        with self._lock:
            if self._finished:
                raise StorageUnavailable("this connection was closed for good")
            conn, self._conn, generation = self._conn, None, self._generation
        if conn is not None and (conn.closed or conn.broken):
            conn.close()
            conn = None
        keep = False
        try:
            if conn is None:
                conn = connect(self._url, autocommit=self._autocommit, timeouts=self._timeouts)
                if self._prepare is not None:
                    self._prepare(conn)
            ticket.using(conn)
            result = fn(conn)
            keep = True
            return result
        except psycopg.Error as exc:
            raise storage_failure(exc) or StorageUnavailable(str(exc)) from exc
        finally:
            ticket.using(None)
            with self._lock:
                if keep and ticket.keeps_connection() and not self._finished:
                    if generation == self._generation and self._conn is None:
                        self._conn, conn = conn, None
            if conn is not None:
                conn.close()

    def close(self, *, finished: bool = False) -> None:
        """Close the connection (the next ``run`` opens another, unless ``finished``); a
        call holding it now closes it when it returns."""
        with self._lock:
            self._finished = self._finished or finished
            self._generation += 1
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
