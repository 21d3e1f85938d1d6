"""Statements sent from trio itself: libpq's non-blocking mode, no worker thread.

The group-commit writer and the profile loader talk to PostgreSQL hundreds of times a
second. Through a worker thread each statement costs two hand-offs of the GIL and a thread
wake-up; at moderate load that doubled the CPU of a small commit (bench/notes.md, session 7).
Here the statement is sent with psycopg's libpq wrapper (``psycopg.pq.PGconn``) in
non-blocking mode and its answer awaited with ``trio.lowlevel.wait_readable`` on the
connection's socket, so the trio thread does the little work libpq needs and nothing else
wakes.

The guarantees of the threaded path (thread_calls.py) hold here too:

- every operation has a deadline; past it the operation is abandoned, its statement
  cancelled (a cancel request, from a thread of its own: the server may be unreachable) and
  its connection discarded — a COMMIT waiting for a synchronous standby that is gone is not
  ended by ``statement_timeout``;
- ``committing`` tells the caller whether a COMMIT may have been sent (its outcome is then
  unknown);
- a COMMIT answered with a warning ("canceling wait for synchronous replication … committed
  locally") is not an acknowledgement (``CommitOutcomeUnknown``);
- connections are made by ``database.connect`` (in a thread, bounded by the deadline: libpq's
  connection start-up blocks), so multi-host URLs, ``target_session_attrs=read-write``, the
  keepalives and ``tcp_user_timeout`` apply; a read-only server is a storage failure.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import trio
import trio.testing
from psycopg import errors as pg_errors
from psycopg import pq, sql
from psycopg._queries import PostgresQuery  # psycopg's own query conversion (pinned version)
from psycopg.adapt import Transformer

from ._errors import CommitOutcomeUnknown, StorageUnavailable
from .database import DEFAULT_TIMEOUTS, Timeouts, connect, storage_failure
from .thread_calls import CANCEL_SECONDS, Ticket, call_in_thread

log = logging.getLogger(__name__)

Query = str | bytes | sql.Composable
_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY)


class Session:
    """One open connection in non-blocking mode. Its methods raise psycopg errors (as the
    sync API would: ``DataError``, ``ReadOnlySqlTransaction``, ``OperationalError`` for a
    lost connection …); the owner (:class:`NativeConnection`) bounds them in time."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.pgconn = conn.pgconn
        self.pgconn.nonblocking = 1
        self.fd = self.pgconn.socket
        self._tx = Transformer(conn)
        self._encoding = conn.info.encoding
        self._queries: dict[int, tuple[Query, bytes]] = {}
        self._converted: dict[bytes, PostgresQuery] = {}
        self._prepared: dict[tuple[bytes, tuple[int, ...]], bytes] = {}
        self.in_statement = False  # something was sent whose answer was not read yet
        self.committing = False  # a COMMIT was sent (its fate is unknown until answered)

    # -- statements --------------------------------------------------------------------------

    async def execute(self, query: Query, params: Any = None) -> pq.abc.PGresult:
        """One statement; its result (rows: ``rows(result)``)."""
        return await self._pipeline([(query, params)])

    async def begin_and_execute(self, query: Query, params: Any = None) -> pq.abc.PGresult:
        """BEGIN, then the statement, in one round trip: the statement's result, in an open
        transaction (COMMIT or ROLLBACK follows)."""
        return await self._pipeline([(b"BEGIN", None), (query, params)])

    async def commit(self) -> None:
        """COMMIT, accepted only when PostgreSQL acknowledged it cleanly (any warning
        during COMMIT, such as a cancelled wait for the synchronous standby, and any
        failure: CommitOutcomeUnknown)."""
        await self._committed([(b"COMMIT", None)])

    async def execute_and_commit(self, query: Query, params: Any) -> pq.abc.PGresult:
        """BEGIN, the statement and COMMIT in one round trip: the statement's result, once
        committed. The statement's own error is raised as such (nothing was committed: the
        transaction is left aborted, ROLLBACK follows); a COMMIT that failed or was answered
        with a warning is CommitOutcomeUnknown."""
        return await self._committed([(b"BEGIN", None), (query, params), (b"COMMIT", None)])

    async def _committed(self, statements: list[tuple[Query, Any]]) -> pq.abc.PGresult:
        warnings: list[str] = []

        def notice(diagnostic: pg_errors.Diagnostic) -> None:
            if diagnostic.severity_nonlocalized == "WARNING":
                warnings.append(f"{diagnostic.message_primary} ({diagnostic.message_detail})")

        self.committing = True
        self.conn.add_notice_handler(notice)
        try:
            outcomes = await self._round_trip(statements)
        except psycopg.Error as exc:
            raise CommitOutcomeUnknown(f"COMMIT failed: {type(exc).__name__}") from exc
        finally:
            self.conn.remove_notice_handler(notice)
        for outcome in outcomes[:-1]:
            if isinstance(outcome, psycopg.Error):
                self.committing = False  # the COMMIT was not run
                raise outcome
        commit = outcomes[-1]
        if isinstance(commit, psycopg.Error):
            raise CommitOutcomeUnknown(f"COMMIT failed: {type(commit).__name__}") from commit
        self.committing = False
        if warnings:
            log.error("COMMIT not acknowledged: %s", warnings[0])
            raise CommitOutcomeUnknown(f"COMMIT answered with a warning: {warnings[0]}")
        result = outcomes[-2] if len(outcomes) > 1 else commit
        assert not isinstance(result, psycopg.Error)
        return result

    async def rollback(self) -> None:
        await self.execute(b"ROLLBACK")

    def rows(self, result: pq.abc.PGresult) -> list[tuple[Any, ...]]:
        """A result's rows, typed by the connection's loaders."""
        self._tx.set_pgresult(result)
        return self._tx.load_rows(0, result.ntuples, tuple)

    # -- libpq -------------------------------------------------------------------------------

    async def _pipeline(self, statements: list[tuple[Query, Any]]) -> pq.abc.PGresult:
        """The statements in one round trip; raises the first one's error; returns the last
        one's result."""
        outcomes = await self._round_trip(statements)
        for outcome in outcomes:
            if isinstance(outcome, psycopg.Error):
                raise outcome
        last = outcomes[-1]
        assert not isinstance(last, psycopg.Error)
        return last

    async def _round_trip(
        self, statements: list[tuple[Query, Any]]
    ) -> list[pq.abc.PGresult | psycopg.Error]:
        """Send the statements in one round trip (libpq's pipeline mode: one write, one
        sync) and read their results: per statement its result or its error (after an
        error, the rest are not run: their error says so). A statement with parameters is
        prepared on its first use on this connection (psycopg's cursors do the same:
        planning the flush's CTEs each time cost PostgreSQL milliseconds), in the same
        round trip."""
        pgconn = self.pgconn
        pgconn.enter_pipeline_mode()
        self.in_statement = True  # from here until every result is read
        prepared: list[tuple[bytes, tuple[int, ...]] | None] = []  # per statement
        for query, params in statements:
            if params is None:
                pgconn.send_query_params(self._bytes(query), None)
                prepared.append(None)
                continue
            converted = self._convert(query, params)
            key = (converted.query, converted.types)
            name = self._prepared.get(key)
            if name is None:
                name = self._prepared[key] = b"perkamo_%d" % len(self._prepared)
                pgconn.send_prepare(name, converted.query, param_types=converted.types)
                prepared.append(key)
            else:
                prepared.append(None)
            pgconn.send_query_prepared(name, converted.params, param_formats=converted.formats)
        pgconn.pipeline_sync()
        await self._flush_out()
        outcomes: list[pq.abc.PGresult | psycopg.Error] = []
        for preparation in prepared:
            failure: psycopg.Error | None = None
            if preparation is not None:
                try:
                    self._check((await self._results())[-1])
                except psycopg.Error as exc:
                    del self._prepared[preparation]  # not prepared after all
                    failure = exc
            result = (await self._results())[-1]
            try:
                self._check(result)
            except psycopg.Error as exc:
                failure = failure or exc
            outcomes.append(result if failure is None else failure)
        await self._results()  # the sync
        pgconn.exit_pipeline_mode()
        self.in_statement = False
        return outcomes

    def _convert(self, query: Query, params: Any) -> PostgresQuery:
        """psycopg's own conversion (placeholders, dumpers), parsed once per query."""
        text = self._bytes(query)
        converted = self._converted.get(text)
        if converted is None:
            converted = self._converted[text] = PostgresQuery(self._tx)
            converted.convert(text, params)
        else:
            converted.dump(params)
        return converted

    def _bytes(self, query: Query) -> bytes:
        if isinstance(query, bytes):
            return query
        known = self._queries.get(id(query))
        if known is None:
            text = (
                query.encode(self._encoding)
                if isinstance(query, str)
                else query.as_bytes(self.conn)
            )
            known = self._queries[id(query)] = (query, text)  # (held: its id stays its own)
        return known[1]

    async def _flush_out(self) -> None:
        while self.pgconn.flush():
            await trio.lowlevel.wait_writable(self.fd)

    async def _results(self) -> list[pq.abc.PGresult]:
        """The results of one statement (until libpq's NULL), or one pipeline sync."""
        pgconn = self.pgconn
        results: list[pq.abc.PGresult] = []
        while True:
            while pgconn.is_busy():
                await trio.lowlevel.wait_readable(self.fd)
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                if not results:
                    raise psycopg.OperationalError("the connection returned no result")
                return results
            results.append(result)
            if result.status == pq.ExecStatus.PIPELINE_SYNC:
                return results

    def _check(self, result: pq.abc.PGresult) -> None:
        if result.status not in _OK and result.status != pq.ExecStatus.PIPELINE_SYNC:
            if result.status == pq.ExecStatus.PIPELINE_ABORTED:
                raise psycopg.OperationalError("an earlier statement of the pipeline failed")
            raise pg_errors.error_from_result(result, encoding=self._encoding)

    # -- the end -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close now, or — when a statement may still run on the server — cancel it first
        (in a thread: the server may be unreachable) and close after."""
        trio.lowlevel.notify_closing(self.fd)
        conn = self.conn
        if not self.in_statement:
            conn.close()
            return

        def cancel_then_close() -> None:
            try:
                conn.cancel_safe(timeout=CANCEL_SECONDS)
            except psycopg.Error:
                pass  # closed meanwhile, or the server is gone: nothing left to cancel
            finally:
                conn.close()

        threading.Thread(target=cancel_then_close, name="perkamo-cancel", daemon=True).start()


class NativeConnection:
    """A dedicated connection for one task (the writer's, the loader's): opened on first use
    and again after a failure. ``async with conn.session(seconds) as s`` bounds everything
    done with ``s`` by ``seconds``: past it, StorageUnavailable (CommitOutcomeUnknown when a
    COMMIT had been sent) and the connection is discarded, its statement cancelled."""

    def __init__(
        self,
        url: str,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        *,
        prepare: Callable[[psycopg.Connection[Any]], None] | None = None,
    ) -> None:
        self._url = url
        self._timeouts = timeouts
        self._prepare = prepare
        self._session: Session | None = None
        self._finished = False

    def session(self, seconds: float, what: str = "the storage call") -> _Bounded:
        deadline = trio.current_time() + seconds
        if isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
            # Tests in virtual time: an autojumping clock would pass any deadline while
            # PostgreSQL works (as in thread_calls.py). The work is waited for.
            deadline = math.inf
        return _Bounded(self, deadline, what)

    async def _open(self, deadline: float) -> Session:
        if self._finished:
            raise StorageUnavailable("this connection was closed for good")
        session = self._session
        if session is not None and not session.conn.closed and not session.conn.broken:
            return session
        self.discard()
        # libpq's connection start-up blocks: in a thread, abandoned at the deadline.
        conn = await call_in_thread(self._connect, deadline=deadline, what="connecting")
        if self.finished:  # closed for good while it connected
            conn.close()
            raise StorageUnavailable("this connection was closed for good")
        self._session = Session(conn)
        return self._session

    def _connect(self, ticket: Ticket) -> psycopg.Connection[Any]:
        conn = connect(self._url, autocommit=True, timeouts=self._timeouts)
        try:
            if self._prepare is not None:
                self._prepare(conn)
        except psycopg.Error as exc:
            conn.close()
            raise storage_failure(exc) or StorageUnavailable(str(exc)) from exc
        if ticket.abandoned:  # nobody will use it
            conn.close()
            raise StorageUnavailable("connected after the deadline")
        return conn

    @property
    def finished(self) -> bool:
        return self._finished

    def discard(self) -> None:
        """The connection's state is unknown: close it (cancelling what it runs)."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def close(self, *, finished: bool = False) -> None:
        self._finished = self._finished or finished
        self.discard()


class _Bounded:
    """The context of ``NativeConnection.session``."""

    def __init__(self, owner: NativeConnection, deadline: float, what: str) -> None:
        self._owner = owner
        self._deadline = deadline
        self._what = what
        self._scope: trio.CancelScope | None = None
        self._session: Session | None = None

    async def __aenter__(self) -> Session:
        self._scope = trio.CancelScope(deadline=self._deadline)
        self._scope.__enter__()
        try:
            self._session = await self._owner._open(self._deadline)
        except BaseException as exc:
            if self._scope.__exit__(type(exc), exc, exc.__traceback__) and not isinstance(
                exc, StorageUnavailable
            ):
                raise StorageUnavailable(f"{self._what}: no connection in time") from None
            raise
        self._session.committing = False
        return self._session

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        assert self._scope is not None
        session = self._session
        if exc is not None and (session is None or session.in_statement or session.conn.broken):
            self._owner.discard()  # mid-statement: cancelled, then closed
        swallowed = self._scope.__exit__(kind, exc, tb) and exc is not None
        if swallowed or self._scope.cancelled_caught:
            if session is not None and session.committing:
                raise CommitOutcomeUnknown(f"{self._what} passed its deadline while committing")
            raise StorageUnavailable(f"{self._what} passed its deadline")
        if isinstance(exc, psycopg.Error):
            # Not the caller's to handle: the connection's state is unknown.
            self._owner.discard()
            raise storage_failure(exc) or StorageUnavailable(str(exc)) from exc
        return False
