"""The sweeper (docs/architecture.md "Time: lots and the sweeper"): every profile with something due is ticked
within 60 s of its due time — in virtual time, against the real index of due profiles — at
the configured pace; and a tick is never applied twice, across a restart included."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import trio
import trio.testing

from perkamo.access import admin
from perkamo.profiles.commands import Ingest, Tick, tick_id
from perkamo.profiles.sweeper import Sweeper
from perkamo.runtime import open_runtime, sweeper_for
from perkamo.settings import Settings
from storage import StorageUnavailable
from storage.database import configure
from storage.sweep import Due, due_profiles
from tests.api_client import Api, app_for
from tests.perkamo.profiles.test_lots_writes import PROGRAM, count, deliveries, due_of
from tests.spaces import make_space

# Virtual time 0 is T0, long before anything else the shared database holds is due.
T0 = datetime(2001, 1, 1, tzinfo=UTC)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def insert_due(pg_url: str, space_id: int, due: dict[str, float]) -> None:
    """Profiles due at the given seconds after T0 (what a snapshot write records)."""
    with psycopg.connect(pg_url) as conn:
        for user, seconds in due.items():
            conn.execute(
                "INSERT INTO profiles (space_id, user_id, traits, state, version, created_at,"
                " updated_at, next_due, due_shard) VALUES (%s, %s, '{}', '{}', 1, %s, %s, %s, 0)",
                (space_id, user, T0, T0, T0 + timedelta(seconds=seconds)),
            )


async def test_every_due_profile_is_ticked_within_60_s_once(pg_url, autojump_clock):
    space = make_space(pg_url)
    due = {"soon": 5, "later": 100, "hour": 3600, "same-a": 600, "same-b": 600}
    insert_due(pg_url, space.space.id, due)
    fired: dict[str, list[float]] = {}
    conn = psycopg.connect(pg_url, autocommit=True)
    configure(conn)

    def virtual_now() -> datetime:
        return T0 + timedelta(seconds=trio.current_time())

    async def find(now: datetime, after, limit: int) -> list[Due]:
        # Blocking on purpose: virtual time stands still while the real query runs.
        return due_profiles(conn, now, None, after, limit)

    async def send(ticks: list[Due], now: datetime) -> list[object]:
        for d in ticks:
            if d.space_id == space.space.id:  # (the database is shared with other tests)
                fired.setdefault(d.user_id, []).append((now - T0).total_seconds())
                conn.execute(  # what the tick's commit does: nothing due any more
                    "UPDATE profiles SET next_due = NULL WHERE space_id = %s AND user_id = %s",
                    (d.space_id, d.user_id),
                )
        return [None] * len(ticks)

    sweeper = Sweeper(find, send, clock=virtual_now, rate=2000)
    with trio.fail_after(4000):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sweeper.run)
            await trio.sleep(3700)
            nursery.cancel_scope.cancel()
    conn.close()
    assert set(fired) == set(due)
    for user, seconds in due.items():
        [when] = fired[user]  # exactly once
        assert seconds <= when <= seconds + 60, (user, when)
    assert sweeper.statistics().lag_seconds <= 60


async def test_the_sweeper_keeps_its_pace(pg_url, autojump_clock):
    """5,000 profiles due at once, 2,000 ticks a second: 2.5 s of (virtual) time."""
    space = make_space(pg_url)
    insert_due(pg_url, space.space.id, {f"u{n:05}": 0 for n in range(5000)})
    conn = psycopg.connect(pg_url, autocommit=True)
    configure(conn)
    sent: list[float] = []

    async def find(now: datetime, after, limit: int) -> list[Due]:
        return [d for d in due_profiles(conn, now, None, after, limit)]

    async def send(ticks: list[Due], now: datetime) -> list[object]:
        sent.extend(trio.current_time() for d in ticks if d.space_id == space.space.id)
        return [None] * len(ticks)

    sweeper = Sweeper(find, send, clock=lambda: T0 + timedelta(seconds=1), rate=2000)
    started = trio.current_time()
    assert await sweeper.sweep() >= 5000
    conn.execute("UPDATE profiles SET next_due = NULL WHERE space_id = %s", (space.space.id,))
    conn.close()
    assert len(sent) == 5000
    assert 2.4 <= sent[-1] - started <= 2.6


async def test_a_tick_is_never_applied_twice_across_a_restart(pg_url, tmp_path):
    space = make_space(pg_url)
    settings = Settings(data_dir=tmp_path, sweep_rate=0)  # swept by hand below
    with psycopg.connect(pg_url) as conn:
        admin.set_webhook(conn, space.slug, "http://127.0.0.1:9/hooks")
    received = datetime.now(UTC) - timedelta(days=20)  # its 14 pending days are over
    async with open_runtime(settings, pg_url) as runtime:
        api = Api(app_for(runtime), space.key)
        assert (
            await api.post("/v1/admin/config", {"version": "v1", "modules": PROGRAM})
        ).status == 200
        command = Ingest(transaction_id="o1", event="buy", context={"n": 40}, received_at=received)
        await runtime.gateway.ask((space.space.id, "c"), command)
        due = due_of(pg_url, space.space.id, "c")
        assert due is not None and due < datetime.now(UTC)
        await sweeper_for(runtime, rate=2000).sweep()
        assert count(pg_url, "ticks", space.space.id) == 1
        assert due_of(pg_url, space.space.id, "c") > datetime.now(UTC)  # its expiry, next
    async with open_runtime(settings, pg_url) as runtime:  # a restart
        await sweeper_for(runtime, rate=2000).sweep()
        # The tick the first sweeper sent, sent again (it never heard the answer): the same
        # due time of the same profile settles nothing more.
        again = Tick(transaction_id=tick_id("c", due), due_at=due, received_at=datetime.now(UTC))
        answer = json.loads(bytes((await runtime.gateway.ask((space.space.id, "c"), again)).body))
        assert answer["ticked"] is False
    assert count(pg_url, "ticks", space.space.id) == 1
    [released] = deliveries(pg_url, space.space.id, "points.released")
    assert released["data"]["amount"] == 40


def test_each_member_finds_the_due_profiles_of_its_own_shards(pg_url):
    space = make_space(pg_url)
    start = T0 - timedelta(days=365)  # before anything else in the shared database
    with psycopg.connect(pg_url) as conn:
        for user, shard, seconds in (("a", 3, 1), ("b", 7, 2), ("c", 3, 3), ("d", 3, 9999)):
            conn.execute(
                "INSERT INTO profiles (space_id, user_id, traits, state, version, created_at,"
                " updated_at, next_due, due_shard) VALUES (%s, %s, '{}', '{}', 1, %s, %s, %s, %s)",
                (space.space.id, user, start, start, start + timedelta(seconds=seconds), shard),
            )
        until = start + timedelta(seconds=10)

        def users(shards, after=None, limit=10):
            found = due_profiles(conn, until, shards, after, limit)
            return [d.user_id for d in found if d.space_id == space.space.id]

        assert users([3]) == ["a", "c"] and users([7]) == ["b"] and users([5]) == []
        assert users(None) == ["a", "b", "c"]
        first = due_profiles(conn, until, [3], None, 1)
        assert [d.user_id for d in first] == ["a"]
        assert users([3], after=first[0].cursor) == ["c"]  # the keyset walk goes on
        conn.execute("UPDATE profiles SET next_due = NULL WHERE space_id = %s", (space.space.id,))


async def test_a_storage_outage_pauses_the_sweeper_without_a_traceback(autojump_clock, caplog):
    calls: list[float] = []

    async def find(now: datetime, after, limit: int) -> list[Due]:
        calls.append(trio.current_time())
        if len(calls) == 1:
            raise StorageUnavailable("connection refused")
        raise ValueError("a defect")  # anything else is logged with its traceback

    async def send(due: list[Due]) -> None:
        raise AssertionError("nothing is due")

    sweeper = Sweeper(find, send, clock=lambda: T0, poll=10)
    with trio.move_on_after(15):
        await sweeper.run()
    assert len(calls) == 2  # tried again after the wait
    outage, defect = [r for r in caplog.records if r.name == "perkamo.profiles.sweeper"]
    assert outage.levelname == "WARNING" and outage.exc_info is None
    assert "storage unavailable" in outage.getMessage()
    assert defect.levelname == "ERROR" and defect.exc_info is not None
