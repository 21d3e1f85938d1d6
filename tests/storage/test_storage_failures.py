"""How storage fails when its primary does (docs/architecture.md "PostgreSQL failover"): every
connection asks for a read-write server; a call past its deadline is abandoned, never
commits, and its connection is discarded; a server turned read-only (a demoted primary) is
a storage failure, never a 500; a COMMIT whose wait for the synchronous standby was
cancelled is not acknowledged; and a host that vanishes without a word cannot hold an
answer past the 5 s bound."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
import trio
from psycopg import sql

from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from storage import CommitOutcomeUnknown, Database, EmbeddedPostgres, StorageUnavailable
from storage.database import connect, connection_settings
from storage.migrations import migrate
from storage.thread_calls import deadline_at
from tests.api_client import Api, app_for
from tests.spaces import make_space


def test_every_connection_asks_for_a_read_write_server_and_gives_up_quickly(pg_url):
    given = connection_settings("postgresql://db-a:5432,db-b:5432/perkamo")
    assert given["target_session_attrs"] == "read-write"
    assert given["connect_timeout"] == 2 and given["tcp_user_timeout"] == 5000
    assert given["keepalives"] == 1
    # An operator's own choice in the URL is kept.
    assert "target_session_attrs" not in connection_settings(
        "postgresql:///x?target_session_attrs=any"
    )
    with connect(pg_url) as conn:
        parameters = conn.info.get_parameters()
    assert parameters["target_session_attrs"] == "read-write"
    assert parameters["tcp_user_timeout"] == "5000"


async def test_a_call_past_its_deadline_is_abandoned_never_commits_and_drops_its_connection(pg_url):
    table = sql.Identifier(f"abandon_probe_{secrets.token_hex(4)}")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (n int)").format(table))
    db = Database(pg_url)
    await trio.to_thread.run_sync(db.open)
    backends: list[int] = []

    def slow_write(conn: psycopg.Connection) -> None:
        backends.append(conn.info.backend_pid)
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(table))
        conn.execute("SELECT pg_sleep(1.5)")

    try:
        started = trio.current_time()
        with deadline_at(started + 0.3), pytest.raises(StorageUnavailable):
            await db.run(slow_write)
        assert trio.current_time() - started < 0.6  # answered at the deadline, not after
        await trio.sleep(2.0)  # meanwhile the abandoned thread's statement ended
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
            alive = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backends[0],)
            ).fetchone()
        assert rows == (0,)  # never committed
        assert alive == (0,)  # its connection was closed, not put back
        assert await db.run(lambda conn: conn.execute("SELECT 1").fetchone()) == (1,)
    finally:
        await trio.to_thread.run_sync(db.close)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE {}").format(table))


@pytest.fixture(scope="module")
def own_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL whose server settings these tests change (not the session's)."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("failures") / "pg")
    url = server.start()
    with psycopg.connect(url) as conn:
        migrate(conn)
    yield url
    server.stop()


def set_server(url: str, setting: str, value: str | None) -> None:
    """ALTER SYSTEM (None: RESET), applied to every session at once."""
    with psycopg.connect(url, autocommit=True) as conn:
        if value is None:
            conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(setting)))
        else:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    sql.Identifier(setting), sql.Literal(value)
                )
            )
        conn.execute("SELECT pg_reload_conf()")


@pytest.mark.slow
async def test_a_server_turned_read_only_is_a_storage_failure_never_a_500(own_pg, tmp_path):
    space = make_space(own_pg)
    async with open_runtime(Settings(data_dir=tmp_path), own_pg) as rt:
        api = Api(app_for(rt), space.key)
        event = {"user_id": "u", "event": "e", "transaction_id": "before"}
        assert (await api.post("/v1/events", event)).status == 200
        set_server(own_pg, "default_transaction_read_only", "on")  # demoted, in effect
        try:
            await trio.sleep(0.2)  # the sessions have read the new setting
            with trio.fail_after(6):
                refused = await api.post("/v1/events", {**event, "transaction_id": "during"})
            assert refused.status == 503, refused.body
            assert refused.body["error"] == "storage_unavailable"
            with pytest.raises(StorageUnavailable):  # the pool's work, and a new connection
                await rt.db.run(lambda conn: conn.execute("UPDATE spaces SET name = name"))
            with pytest.raises(StorageUnavailable, match="read-only"):
                connect(own_pg)
        finally:
            set_server(own_pg, "default_transaction_read_only", None)
        with trio.fail_after(10):
            while (
                again := await api.post("/v1/events", {**event, "transaction_id": "during"})
            ).status != 200:
                await trio.sleep(0.1)
        assert again.body["applied"] is True


@pytest.mark.slow
async def test_a_commit_the_synchronous_standby_did_not_confirm_is_not_acknowledged(
    own_pg, tmp_path
):
    space = make_space(own_pg)
    with psycopg.connect(own_pg, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS commit_probe (n int)")  # no one else's rows
    async with open_runtime(Settings(data_dir=tmp_path), own_pg) as rt:
        api = Api(app_for(rt), space.key)
        event = {"user_id": "u", "event": "e", "transaction_id": "first"}
        assert (await api.post("/v1/events", event)).status == 200
        # A synchronous standby that never answers: each COMMIT waits for it, for ever
        # (statement_timeout does not end that wait).
        set_server(own_pg, "synchronous_standby_names", "nobody")
        try:
            await trio.sleep(0.2)
            started = trio.current_time()
            unknown = await api.post("/v1/events", {**event, "transaction_id": "local"})
            assert trio.current_time() - started < 5.1
            assert unknown.status == 503, unknown.body
            assert unknown.body["error"] == "outcome_unknown"
            assert int(unknown.headers["retry-after"]) >= 1
            # Cancelled (by an operator, a failover manager), such a COMMIT returns with the
            # warning "canceling wait for synchronous replication … committed locally, but
            # might not have been replicated": not an acknowledgement either.
            backends: list[int] = []

            def write(conn: psycopg.Connection) -> None:
                backends.append(conn.info.backend_pid)
                conn.execute("INSERT INTO commit_probe VALUES (1)")

            async def cancel_its_wait() -> None:
                with psycopg.connect(own_pg, autocommit=True) as conn:
                    while (
                        not backends
                        or not conn.execute(
                            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                            " WHERE pid = %s AND wait_event = 'SyncRep'",
                            (backends[0],),
                        ).fetchall()
                    ):
                        await trio.sleep(0.05)

            db = Database(own_pg)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cancel_its_wait)
                with pytest.raises(CommitOutcomeUnknown, match="synchronous replication"):
                    await db.run(write)
            await trio.to_thread.run_sync(db.close)
        finally:
            set_server(own_pg, "synchronous_standby_names", None)
        # It was committed on this server: the retry with the same id finds it.
        with trio.fail_after(10):
            while (
                again := await api.post("/v1/events", {**event, "transaction_id": "local"})
            ).status != 200:
                await trio.sleep(0.1)
        assert again.body["duplicate"] is True


class FreezingProxy:
    """TCP on 127.0.0.1 in front of PostgreSQL's Unix socket. ``freeze()``: no byte moves any
    more, in either direction, and new connections are accepted but never served — every
    socket stays open, as with a host that vanished without a word (the kernel still
    acknowledges what is sent, so not even TCP notices). ``thaw()``: the frozen connections
    are closed and new ones are served again."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.port = 0
        self._flowing = trio.Event()
        self._flowing.set()
        self._streams: list[trio.abc.Stream] = []

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._relay, listeners)

    def freeze(self) -> None:
        self._flowing = trio.Event()

    async def thaw(self) -> None:
        streams, self._streams = self._streams, []
        for stream in streams:
            await stream.aclose()
        self._flowing.set()

    async def _relay(self, client: trio.SocketStream) -> None:
        flowing = self._flowing
        await flowing.wait()
        server = await trio.open_unix_socket(self.socket_path)
        self._streams += [client, server]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pipe, client, server)
            nursery.start_soon(self._pipe, server, client)

    async def _pipe(self, source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        try:
            while data := await source.receive_some(65536):
                await self._flowing.wait()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await sink.aclose()


@pytest.fixture
async def proxy(pg_url, nursery) -> AsyncIterator[tuple[FreezingProxy, str]]:
    with psycopg.connect(pg_url) as conn:
        host, port = conn.info.host, conn.info.port
    frozen = FreezingProxy(os.path.join(host, f".s.PGSQL.{port}"))
    await nursery.start(frozen.serve)
    yield frozen, f"postgresql://postgres@127.0.0.1:{frozen.port}/postgres"
    await frozen.thaw()


@pytest.mark.slow
async def test_a_database_that_vanishes_silently_cannot_hold_an_answer_past_five_seconds(
    pg_url, proxy, tmp_path
):
    frozen, url = proxy
    space = make_space(pg_url)
    async with open_runtime(Settings(data_dir=tmp_path), url) as rt:
        api = Api(app_for(rt), space.key)
        for n in range(3):  # warm: the key is cached, the profiles are resident
            answer = await api.post(
                "/v1/events", {"user_id": f"u{n}", "event": "e", "transaction_id": f"w{n}"}
            )
            assert answer.status == 200
        frozen.freeze()
        latencies: list[float] = []
        answers: list[tuple[int, str]] = []

        async def one(user: str, tx: str) -> None:
            started = trio.current_time()
            answer = await api.post(
                "/v1/events", {"user_id": user, "event": "e", "transaction_id": tx}
            )
            latencies.append(trio.current_time() - started)
            answers.append((answer.status, answer.body.get("error", "")))
            if answer.status == 503:
                assert int(answer.headers["retry-after"]) >= 1

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for n in range(3):  # resident profiles (the writer), and new ones (the loader)
                    nursery.start_soon(one, f"u{n}", f"frozen-{n}")
                    nursery.start_soon(one, f"new{n}", f"frozen-new-{n}")
                await trio.sleep(6)  # a second wave, while the first calls are still stuck
                for n in range(3):
                    nursery.start_soon(one, f"u{n}", f"frozen-again-{n}")
        print(
            f"vanished silently: answers in {sorted(round(t, 2) for t in latencies)} s: {answers}"
        )
        assert max(latencies) < 5.3, latencies
        assert {status for status, _ in answers} == {503}, answers
        assert {code for _, code in answers} <= {
            "storage_unavailable",
            "outcome_unknown",
            "overloaded",
        }
        await frozen.thaw()  # the host is back: the stuck calls fail, new connections flow
        with trio.fail_after(20):
            while (
                await api.post(
                    "/v1/events", {"user_id": "u0", "event": "e", "transaction_id": "frozen-0"}
                )
            ).status != 200:
                await trio.sleep(0.2)
