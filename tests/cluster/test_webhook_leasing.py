"""Two members' webhook dispatchers racing over the same due deliveries: each delivery is
sent once (claimed with FOR UPDATE SKIP LOCKED and leased)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import httpx
import psycopg
import trio

from perkamo.access import admin
from perkamo.webhooks import WebhookDispatcher
from storage import Database, EventRow, OutboxRow, SnapshotWrite, Unit
from storage.group_commit import GroupCommitWriter
from tests.perkamo.test_webhooks import Receiver, deliveries
from tests.spaces import make_space


async def test_two_dispatchers_send_each_delivery_once(pg_url, nursery):
    receiver = Receiver([])
    await nursery.start(receiver.serve)
    space = make_space(pg_url)
    with psycopg.connect(pg_url) as conn:
        admin.set_webhook(conn, space.slug, receiver.url)
        # Other tests' leftovers are not this test's to deliver.
        conn.execute(
            "UPDATE webhook_deliveries SET status = 'failed'"
            " WHERE status IN ('pending', 'retrying')"
        )
    created = datetime.now(UTC)
    units = []
    for n in range(40):
        row = OutboxRow(f"dlv_race_{space.space.id}_{n}", space.space.id, "e", "{}", created)
        event = EventRow(space.space.id, f"t{n}", f"u{n}", "e", "{}", created, created, b"h", "{}")
        snap = SnapshotWrite(space.space.id, f"u{n}", "{}", "{}", 0, created)
        units.append(Unit([event], snap, outbox=[row]))
    writer = GroupCommitWriter(pg_url)
    verdicts = await trio.to_thread.run_sync(writer._flush, units)
    writer._close_connection()
    assert {v.status.value for v in verdicts} == {"committed"}
    members = [Database(pg_url), Database(pg_url)]
    for db in members:
        await trio.to_thread.run_sync(db.open)
    try:
        async with httpx.AsyncClient() as client:

            async def drain(dispatcher: WebhookDispatcher) -> None:
                while await dispatcher.run_once(client):
                    pass

            # Small claims, so that both take turns over the same due rows.
            dispatchers = [WebhookDispatcher(db, batch=5) for db in members]
            with trio.fail_after(60):
                async with trio.open_nursery() as race:
                    for dispatcher in dispatchers:
                        race.start_soon(drain, dispatcher)
    finally:
        for db in members:
            await trio.to_thread.run_sync(db.close)
    assert all(d.stats.delivered > 0 for d in dispatchers)  # both took part
    sent = Counter(headers["x-perkamo-delivery"] for headers, _ in receiver.requests)
    assert len(sent) == 40 and set(sent.values()) == {1}, sent
    assert {row[0] for row in deliveries(pg_url, space.space.id)} == {"delivered"}
