"""The group-commit writer against real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import trio

from storage import EventRow, GroupCommitWriter, SnapshotWrite, Status, Unit
from storage.group_commit import open_group_commit_writer
from tests.spaces import make_space

NOW = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def event_unit(space_id: int, user: str, tx: str, version: int = 0) -> Unit:
    row = EventRow(
        space_id=space_id,
        transaction_id=tx,
        user_id=user,
        event="thing.happened",
        context="{}",
        occurred_at=NOW,
        received_at=NOW,
        request_hash=b"h",
        outcome='{"applied": true}',
    )
    snapshot = SnapshotWrite(space_id, user, "{}", "{}", version, NOW)
    return Unit({"events": [row]}, snapshot)


def count(pg_url: str, sql: str, *params: object) -> int:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(sql, params).fetchone()
        assert row is not None
        return int(row[0])


async def test_many_units_share_transactions(pg_url):
    space_id = make_space(pg_url).space.id
    verdicts: list[Status] = []
    async with open_group_commit_writer(pg_url) as writer:

        async def one(n: int) -> None:
            verdict = await writer.commit(event_unit(space_id, f"user-{n}", f"tx-{n}"))
            verdicts.append(verdict.status)

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for n in range(300):
                    nursery.start_soon(one, n)
        stats = writer.statistics()
    assert verdicts == [Status.COMMITTED] * 300
    assert stats.units == 300
    assert stats.flushes < 300 / 2, stats
    assert stats.max_flush_units > 10
    assert count(pg_url, "SELECT count(*) FROM events WHERE space_id = %s", space_id) == 300
    assert count(pg_url, "SELECT count(*) FROM profiles WHERE space_id = %s", space_id) == 300


async def test_a_conflicting_unit_is_set_aside_and_the_rest_commit(pg_url):
    space_id = make_space(pg_url).space.id
    writer = GroupCommitWriter(pg_url)
    first = await writer._flush([event_unit(space_id, "alice", "dup")])
    assert first[0].status is Status.COMMITTED
    # One flush: bob reuses alice's transaction id, carol is innocent.
    bob = event_unit(space_id, "bob", "dup")
    carol = event_unit(space_id, "carol", "fresh")
    verdicts = await writer._flush([bob, carol])
    writer._close_connection()
    assert verdicts[0].status is Status.CONFLICT
    assert verdicts[0].taken == frozenset({("event", "dup")})
    assert verdicts[1].status is Status.COMMITTED
    assert writer.statistics().retried_flushes == 1
    # Bob's unit was rolled back whole: no profile, the event still belongs to alice.
    q = "SELECT count(*) FROM profiles WHERE space_id = %s AND user_id = %s"
    assert count(pg_url, q, space_id, "bob") == 0
    assert count(pg_url, q, space_id, "carol") == 1
    owner = (
        "SELECT count(*) FROM events WHERE space_id = %s AND transaction_id = %s AND user_id = %s"
    )
    assert count(pg_url, owner, space_id, "dup", "alice") == 1


async def test_a_stale_snapshot_is_refused_and_the_rest_commit(pg_url):
    space_id = make_space(pg_url).space.id
    writer = GroupCommitWriter(pg_url)
    created = await writer._flush([event_unit(space_id, "dana", "e1")])
    assert created[0].status is Status.COMMITTED
    stale = event_unit(space_id, "dana", "e2", version=7)  # the stored version is 1
    current = event_unit(space_id, "dana2", "e3")
    recreate = event_unit(space_id, "dana", "e4", version=0)  # "create" an existing profile
    verdicts = await writer._flush([stale, current, recreate])
    writer._close_connection()
    assert [v.status for v in verdicts] == [Status.STALE, Status.COMMITTED, Status.STALE]
    q = "SELECT count(*) FROM events WHERE space_id = %s AND transaction_id = %s"
    assert count(pg_url, q, space_id, "e2") == 0
    assert count(pg_url, q, space_id, "e4") == 0
    assert count(pg_url, q, space_id, "e3") == 1
    version = "SELECT version FROM profiles WHERE space_id = %s AND user_id = %s"
    assert count(pg_url, version, space_id, "dana") == 1


async def test_an_unreachable_database_answers_unavailable_without_hanging(tmp_path):
    missing = f"postgresql://postgres@/postgres?host={tmp_path}&port=1"
    async with open_group_commit_writer(missing) as writer:
        with trio.fail_after(10):
            verdict = await writer.commit(event_unit(1, "u", "t"))
    assert verdict.status is Status.UNAVAILABLE
    assert writer.statistics().failed_flushes == 1


async def test_a_unit_postgresql_cannot_store_fails_alone(pg_url):
    """Defence in depth behind input validation: a value PostgreSQL refuses (here a number
    beyond numeric's range) fails its own unit, not the other units of its flush."""
    space_id = make_space(pg_url).space.id
    writer = GroupCommitWriter(pg_url)
    units = [event_unit(space_id, f"user-{n}", f"tx-{n}") for n in range(5)]
    poison = event_unit(space_id, "mallory", "tx-poison")
    poison.rows["events"][0].context = '{"n": 1e999999}'
    units.insert(3, poison)
    verdicts = await writer._flush(units)
    writer._close_connection()
    assert [v.status for v in verdicts] == [Status.COMMITTED] * 3 + [Status.UNAVAILABLE] + [
        Status.COMMITTED
    ] * 2
    assert count(pg_url, "SELECT count(*) FROM events WHERE space_id = %s", space_id) == 5
    q = "SELECT count(*) FROM profiles WHERE space_id = %s AND user_id = 'mallory'"
    assert count(pg_url, q, space_id) == 0
