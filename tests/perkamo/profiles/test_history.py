"""Profile reads answered from memory (profiles/history.py) equal reads from storage, and
memory answers only under the exclusivity lease."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
import trio.testing

from perkamo.profiles.history import RecentHistory
from storage.profiles import StoredEvent
from tests.perkamo.http.test_rewards import redeem_body, shop, topup

__all__ = ["shop"]  # the fixture


async def test_a_read_from_memory_equals_a_read_from_storage(shop, runtime):
    api = shop
    await topup(api, "mem", 100, "t0")
    assert (await api.post("/v1/rewards/redeem", redeem_body("mem", "coupon", "r0"))).status == 200
    first = await api.get("/v1/profile/mem")  # from storage: the history is kept from here
    assert first.status == 200
    assert runtime.history.exclusive and len(runtime.history) == 1
    for n in range(1, 25):  # past the 20 kept of each kind
        await topup(api, "mem", n, f"t{n}")
        redeemed = await api.post("/v1/rewards/redeem", redeem_body("mem", "coupon", f"r{n}"))
        assert redeemed.status == 200
    from_memory = await api.get("/v1/profile/mem")
    runtime.history.revoke()  # as if another member had appeared: storage answers
    from_storage = await api.get("/v1/profile/mem")
    assert from_memory.body == from_storage.body
    assert [e["transaction_id"] for e in from_memory.body["events"]][:3] == ["t24", "t23", "t22"]
    assert len(from_memory.body["events"]) == len(from_memory.body["redemptions"]) == 20


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def _event(tx: str) -> StoredEvent:
    outcome = '{"delta":[{"wallet":"points","amount":5}]}'
    return StoredEvent(tx, "u", "e", b"", 2, datetime(2026, 1, 1, tzinfo=UTC), outcome)


async def test_memory_answers_only_within_the_lease(autojump_clock):
    history = RecentHistory()
    key = (1, "u")
    history.keep(key, 3, [_event("a")], [], [], history.epoch)
    assert history.read(key, 3) is None  # no lease yet: nothing was kept
    history.grant(trio.current_time(), 1.0)
    history.keep(key, 3, [_event("a")], [], [], history.epoch)
    kept = history.read(key, 3)
    assert kept is not None and [e.transaction_id for e in kept[0]] == ["a"]
    assert history.read(key, 4) is None  # another version: not this entry
    await trio.sleep(1.5)  # the lease lapsed without a renewal
    assert history.read(key, 3) is None
    history.grant(trio.current_time(), 1.0)  # renewed after a lapse: a new epoch, nothing kept
    assert history.read(key, 3) is None


async def test_a_read_that_began_before_a_revocation_is_not_kept(autojump_clock):
    history = RecentHistory()
    history.grant(trio.current_time(), 10.0)
    epoch = history.epoch
    history.revoke()  # another member appeared while the read was in storage
    history.grant(trio.current_time(), 10.0)
    history.keep((1, "u"), 1, [_event("a")], [], [], epoch)
    assert history.read((1, "u"), 1) is None
