"""The thread-free connections (storage/native.py) keep the threaded path's guarantees: a
statement past its deadline is abandoned at the deadline, cancelled on the server and its
connection discarded; the next use connects again; a COMMIT that was sent makes the outcome
unknown; errors are psycopg's own."""

from __future__ import annotations

import psycopg
import pytest
import trio

from storage import CommitOutcomeUnknown, StorageUnavailable
from storage.native import NativeConnection


def _alive(pg_url: str, pid: int) -> bool:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
        return row.fetchone() == (1,)


async def test_a_statement_past_its_deadline_is_cancelled_and_its_connection_discarded(pg_url):
    native = NativeConnection(pg_url)
    try:
        async with native.session(5) as session:
            (pid,) = session.rows(await session.execute("SELECT pg_backend_pid()"))[0]
        started = trio.current_time()
        with pytest.raises(StorageUnavailable, match="passed its deadline") as raised:
            async with native.session(0.3) as session:
                await session.execute("SELECT pg_sleep(%s)", (30,))
        assert not isinstance(raised.value, CommitOutcomeUnknown)
        assert trio.current_time() - started < 0.8  # answered at the deadline
        with trio.fail_after(5):  # cancelled and closed (not left sleeping for 30 s)
            while _alive(pg_url, pid):
                await trio.sleep(0.05)
        async with native.session(5) as session:  # a new connection
            (again,) = session.rows(await session.execute("SELECT pg_backend_pid()"))[0]
        assert again != pid
    finally:
        native.close(finished=True)


async def test_a_commit_past_its_deadline_has_an_unknown_outcome(pg_url):
    native = NativeConnection(pg_url)
    try:
        with pytest.raises(CommitOutcomeUnknown):
            async with native.session(0.3) as session:
                # The COMMIT is in the same round trip as a statement that outlives the
                # deadline: once sent, its fate is not known to the caller.
                await session.execute_and_commit("SELECT pg_sleep(%s)", (30,))
    finally:
        native.close(finished=True)


async def test_errors_are_psycopgs_and_the_connection_goes_on(pg_url):
    native = NativeConnection(pg_url)
    try:
        async with native.session(5) as session:
            with pytest.raises(psycopg.errors.DivisionByZero):
                await session.begin_and_execute("SELECT 1 / %s", (0,))
            await session.rollback()
            result = await session.execute("SELECT %s::int + 1, %s::text", (41, "é"))
            assert session.rows(result) == [(42, "é")]
        with pytest.raises(StorageUnavailable):  # not the caller's error: the link is gone
            async with native.session(5) as session:
                await session.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        async with native.session(5) as session:
            assert session.rows(await session.execute("SELECT %s::int", (1,))) == [(1,)]
    finally:
        native.close(finished=True)
