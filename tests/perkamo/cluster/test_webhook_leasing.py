"""Two members' webhook dispatchers racing over the same due deliveries: each delivery is
sent once (claimed with FOR UPDATE SKIP LOCKED and leased)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import httpx
import trio

from perkamo.webhooks import WebhookDispatcher
from storage import Database
from tests.perkamo.webhooks.test_webhooks import Receiver, deliveries, due_deliveries
from tests.spaces import make_space


async def test_two_dispatchers_send_each_delivery_once(pg_url, nursery):
    receiver = Receiver([])
    await nursery.start(receiver.serve)
    space = make_space(pg_url)
    verdicts = await due_deliveries(pg_url, space, receiver.url, 40, datetime.now(UTC))
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
