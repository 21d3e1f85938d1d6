"""Connections: a small pool of psycopg 3 connections driven from worker threads.

psycopg's async API runs only on asyncio, so every query runs in a worker thread through
``trio.to_thread.run_sync``. A thread call cannot be cancelled: a call past its deadline is
abandoned and its connection discarded (thread_calls.py), so no storage call holds a
request past the 5 s bound, however long PostgreSQL is gone.

Every connection is made with the same settings (``connect``): a libpq multi-host URL
(``postgresql://db-a,db-b/perkamo``) connects to whichever host is the primary now
(``target_session_attrs=read-write``: never a standby, never a server turned read-only),
each host within ``connect_timeout``; TCP keepalives and ``tcp_user_timeout`` make a host
that vanished silently an error within seconds rather than minutes.

The pool connects on demand: no background reconnection with a growing backoff, so the
first call after a failover connects to the new primary at once (docs/architecture.md
"PostgreSQL failover").
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ParamSpec, TypeAlias, TypeVar

import msgspec
import psycopg
import trio
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg.types.json import set_json_dumps, set_json_loads

from ._errors import StorageUnavailable
from .thread_calls import Ticket, call_in_thread, commit_acknowledged, deadline_within

# A connection of this package's (rows as tuples): what every storage function takes.
Conn: TypeAlias = psycopg.Connection[TupleRow]
P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)

_json_decoder = msgspec.json.Decoder(float_hook=Decimal)
_json_encoder = msgspec.json.Encoder(decimal_format="number")

CONNECT_TIMEOUT = 2  # seconds per host (libpq counts whole seconds)
TCP_USER_TIMEOUT_MS = 5000  # unacknowledged data on a dead peer is an error after this
OPEN_SECONDS = 10.0  # how long a server starting up waits for PostgreSQL


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a statement may run and a pool checkout may wait, in seconds. The
    product's settings choose them (and check them against the request timeout)."""

    statement: float = 4.0
    checkout: float = 3.0

    @property
    def call(self) -> float:
        """The longest a storage call may take before its caller gives up on it: a wait
        for a connection, then a statement (a request's own deadline may come first)."""
        return self.checkout + self.statement


DEFAULT_TIMEOUTS = Timeouts()


def configure(conn: psycopg.Connection[Any]) -> None:
    """JSON columns of this connection decode with exact decimals, never binary floats
    (balances must be exact), and encode decimals as numbers. Per connection: importing
    storage changes nothing for other psycopg users in the process."""
    set_json_loads(_json_decoder.decode, conn)
    set_json_dumps(_json_encoder.encode, conn)


def connection_settings(url: str, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> dict[str, Any]:
    """The libpq parameters every connection of the product is made with (the URL's own
    ``target_session_attrs`` is kept when it names one)."""
    settings: dict[str, Any] = {
        "connect_timeout": max(1, min(CONNECT_TIMEOUT, round(timeouts.checkout))),
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
        "options": f"-c statement_timeout={round(timeouts.statement * 1000)} -c timezone=UTC",
    }
    if "target_session_attrs" not in conninfo_to_dict(url):
        settings["target_session_attrs"] = "read-write"
    return settings


def connect(
    url: str, *, autocommit: bool = False, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> psycopg.Connection[Any]:
    """One connection with the product's settings (for the writer, the loader, the
    listener, the health probe, the back-test worker, the CLI)."""
    try:
        conn = psycopg.connect(url, autocommit=autocommit, **connection_settings(url, timeouts))
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


def storage_failure(exc: psycopg.Error) -> StorageUnavailable | None:
    """The StorageUnavailable a psycopg error means, or None when it is the work's own
    error (a constraint, a bad value: the caller's to handle). A server that turned
    read-only (demoted to a standby) is a storage failure like a lost connection."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return StorageUnavailable("statement timed out")
    if isinstance(exc, psycopg.OperationalError | psycopg.errors.ReadOnlySqlTransaction):
        return StorageUnavailable(str(exc))
    return None


def _usable(conn: psycopg.Connection[Any]) -> bool:
    """Whether a connection that just failed may be used again: open, and rolled back."""
    if conn.closed or conn.broken:
        return False
    try:
        conn.rollback()
    except psycopg.Error:
        return False
    return True


class Database:
    """The shared pool. ``run(fn, ...)`` (async, in a worker thread) and ``call(fn, ...)``
    (blocking) call ``fn(conn, ...)`` inside a transaction that commits when ``fn`` returns
    and rolls back when it raises.

    Raises StorageUnavailable when no connection can be had or PostgreSQL fails the work,
    CommitOutcomeUnknown when the COMMIT's fate is unknown (or it was not acknowledged).
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
        self._min_size = min(min_size, max_size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._generation = 0  # bumped when the idle connections are dropped
        self._closed = False
        # When a connection was last lost or could not be made (time.monotonic()): storage
        # is not ready again until a probe begun later succeeds (health.py).
        self.lost_at = -float("inf")
        # Calls in flight (and so connections in use) are at most max_size.
        self._limiter = trio.CapacityLimiter(max_size)

    def open(self) -> None:
        """Connect the first connections, waiting up to OPEN_SECONDS for PostgreSQL (a
        server may start while its database fails over)."""
        deadline = time.monotonic() + OPEN_SECONDS
        while True:
            try:
                conns = [self._connect() for _ in range(self._min_size)]
                break
            except StorageUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with self._lock:
            self._idle.extend(conns)

    def close(self) -> None:
        """Close the idle connections; those in use are closed when their call returns."""
        with self._lock:
            self._closed = True
        self.drop_idle()

    def drop_idle(self) -> None:
        """Close every idle connection: after one failed, the others are likely dead too
        (the server went away, or is a standby now)."""
        self.lost_at = time.monotonic()
        with self._lock:
            idle, self._idle = self._idle, []
            self._generation += 1
        for conn in idle:
            conn.close()

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return self._call(Ticket(), fn, args, kwargs)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``call`` in a worker thread, abandoned when it passes its deadline."""
        return await call_in_thread(
            functools.partial(self._call, fn=fn, args=args, kwargs=kwargs),
            deadline=deadline_within(self.timeouts.call),
            limiter=self._limiter,
            checkout=self.timeouts.checkout,
        )

    # -- in the worker thread ------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        return connect(self.url, timeouts=self.timeouts)

    def _checkout(self) -> tuple[psycopg.Connection[Any], int, bool]:
        """An idle connection, or a new one; with the generation it belongs to, and
        whether it was reused."""
        with self._lock:
            if self._closed:
                raise StorageUnavailable("the database was closed")
            generation = self._generation
            if self._idle:
                return self._idle.pop(), generation, True
        try:
            return self._connect(), generation, False
        except StorageUnavailable:
            self.lost_at = time.monotonic()
            raise

    def _checkin(self, conn: psycopg.Connection[Any], generation: int) -> None:
        with self._lock:
            if not self._closed and generation == self._generation:
                self._idle.append(conn)
                return
        conn.close()

    def _call(
        self, ticket: Ticket, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        while True:
            conn, generation, reused = self._checkout()
            ticket.using(conn)
            keep = False
            try:
                result = self._transaction(ticket, conn, fn, args, kwargs)
                keep = True
                return result
            except _ConnectionLost as lost:
                self.drop_idle()
                # An idle connection found dead (the server it knew is gone, or is a
                # standby now): the work was never committed, so it runs once more on a
                # fresh connection — to the new primary when there is one.
                if reused and not ticket.abandoned:
                    continue
                raise lost.failure from lost.__cause__
            except Exception:
                keep = _usable(conn)
                if not keep:
                    self.drop_idle()
                raise
            finally:
                ticket.using(None)
                if keep and ticket.keeps_connection():
                    self._checkin(conn, generation)
                else:
                    conn.close()

    @staticmethod
    def _transaction(
        ticket: Ticket,
        conn: psycopg.Connection[Any],
        fn: Callable[..., T],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        try:
            result = fn(conn, *args, **kwargs)
        except psycopg.Error as exc:
            failure = storage_failure(exc)
            if failure is None:
                raise
            if conn.broken or isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
                raise _ConnectionLost(failure) from exc
            raise failure from exc
        if not ticket.may_commit():
            conn.rollback()  # the caller gave up: nothing of it may become durable
            raise StorageUnavailable("abandoned before COMMIT")
        commit_acknowledged(conn)
        return result


class _ConnectionLost(Exception):
    """The connection cannot take this work any more (it broke, or its server is read-only
    now); nothing was committed."""

    def __init__(self, failure: StorageUnavailable) -> None:
        super().__init__(str(failure))
        self.failure = failure


@asynccontextmanager
async def open_database(
    url: str, *, max_size: int = 10, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> AsyncIterator[Database]:
    db = Database(url, max_size=max_size, timeouts=timeouts)
    try:
        await trio.to_thread.run_sync(db.open)
    except StorageUnavailable as exc:
        await trio.to_thread.run_sync(db.close)
        raise StorageUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    try:
        yield db
    finally:
        await trio.to_thread.run_sync(db.close)
