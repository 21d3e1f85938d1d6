"""Lots through the profile's actor and the API (docs/program.md "Points that wait and points
that expire"): what answers carry (``pending``, ``settled``), the profile's
``wallet_details``, the ``points.released`` / ``points.expired`` webhooks, ticks (written
only when something is due, once per due time), ``perkamo verify`` on lots, and replay =
live state. Writes sent through the gateway bring their own receive time, so days pass
without waiting."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
import pytest

from perkamo.access import admin
from perkamo.profiles.commands import Adjust, Ingest, Redeem, Tick, tick_id
from perkamo.profiles.verify import verify_space
from perkamo.settings import Settings

MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
BASE = MIDNIGHT + timedelta(days=2)  # every write here is "received" from then on


def at(days: float) -> datetime:
    return BASE + timedelta(days=days)


PROGRAM = {
    "wallets": {
        "wallets": [{"key": "points", "name": "Points", "pending_days": 14,
                     "expiry": {"after_days": 30}}],
        "rewards": [{"key": "gift", "name": "Gift", "cost": {"wallet": "points", "amount": 25},
                     "effect": {"type": "gift"}}],
    },
    "events": {"rules": [{"key": "buy", "name": "Buy", "event": "buy",
                          "award": [{"wallet": "points", "formula": "{{n}}"}]}]},
    "leveling": {"wallet": "points", "levels": [{"level": 1, "at": 0}, {"level": 2, "at": 100}]},
    "perks": {"perks": [{"key": "silver", "name": "Silver",
                         "trigger": {"type": "level_reached", "level": 2}}]},
}  # fmt: skip


@pytest.fixture
def settings(tmp_path):
    """No sweeper: these tests decide when a profile is ticked."""
    return Settings(data_dir=tmp_path, database_url=None, sweep_rate=0)


@pytest.fixture
async def shop(api, space, pg_url):
    answer = await api.post("/v1/admin/config", {"version": "v1", "modules": PROGRAM})
    assert answer.status == 200, answer.body
    with psycopg.connect(pg_url) as conn:  # deliveries to a closed port: only their bodies
        admin.set_webhook(conn, space.slug, "http://127.0.0.1:9/hooks")
    return api


class Writes:
    def __init__(self, runtime: Any, space: Any, user: str = "c") -> None:
        self.runtime, self.space_id, self.user = runtime, space.space.id, user

    async def ask(self, command: Any) -> Any:
        written = await self.runtime.gateway.ask((self.space_id, self.user), command)
        return msgspec.json.decode(written.body)

    async def earn(self, n: int, received: datetime, tx: str, occurred: datetime | None = None):
        return await self.ask(Ingest(transaction_id=tx, event="buy", context={"n": n},
                                     occurred_at=occurred, received_at=received))  # fmt: skip

    async def redeem(self, received: datetime, tx: str) -> Any:
        return await self.ask(Redeem(transaction_id=tx, reward_key="gift", context={},
                                     received_at=received))  # fmt: skip

    async def adjust(self, amount: int, received: datetime, tx: str) -> Any:
        return await self.ask(Adjust(
            transaction_id=tx, wallet="points", amount=Decimal(amount), counts_toward_level=True,
            reason="test", actor=None, received_at=received,
        ))  # fmt: skip

    async def tick(self, due: datetime, received: datetime) -> Any:
        return await self.ask(Tick(transaction_id=tick_id(self.user, due), due_at=due,
                                   received_at=received))  # fmt: skip


def deliveries(pg_url: str, space_id: int, kind: str) -> list[dict[str, Any]]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT body FROM webhook_deliveries WHERE space_id = %s AND event_type = %s"
            " ORDER BY created_at, id",
            (space_id, kind),
        ).fetchall()
    return [json.loads(body) for (body,) in rows]


def count(pg_url: str, table: str, space_id: int) -> int:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM {table} WHERE space_id = %s", (space_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def due_of(pg_url: str, space_id: int, user: str) -> datetime | None:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT next_due FROM profiles WHERE space_id = %s AND user_id = %s", (space_id, user)
        ).fetchone()
    assert row is not None
    return row[0]


async def test_pending_points_are_released_with_the_level_and_announced(
    shop, runtime, space, pg_url
):
    w = Writes(runtime, space)
    first = await w.earn(120, at(0.5), "o1")
    assert first["delta"] == [] and first["pending"] == [{"wallet": "points", "amount": 120}]
    assert first["settled"] == {"released": [], "expired": [], "leveled_up": False,
                                "unlocked": []}  # fmt: skip
    assert first["wallet_state"] == {"points": 0} and first["level"]["level"] == 1
    assert due_of(pg_url, space.space.id, "c") == at(14)
    profile = (await shop.get("/v1/profile/c")).body
    assert profile["wallet_details"]["points"] == {
        "balance": 0,
        "pending": 120,
        "earned": 0,
        "spent": 0,
        "expired": 0,
        "expiring": [],
    }
    later = await w.earn(1, at(15), "o2")  # 14 days on: o1's 120 are released first
    assert later["settled"]["released"] == [{"wallet": "points", "amount": 120}]
    assert later["settled"]["leveled_up"] is True and later["leveled_up"] is True
    assert later["unlocked"] == later["settled"]["unlocked"] == [
        {"type": "perk", "key": "silver", "name": "Silver"}]  # fmt: skip
    assert later["delta"] == [] and later["wallet_state"] == {"points": 120}
    profile = (await shop.get("/v1/profile/c")).body
    assert profile["perks"][0]["unlocked_at"] == "{}.000Z".format(
        at(14).strftime("%Y-%m-%dT%H:%M:%S")
    )
    details = profile["wallet_details"]["points"]
    assert (details["balance"], details["pending"], details["earned"]) == (120, 1, 120)
    assert details["expiring"] == [
        {"amount": 120, "expires_at": at(31).strftime("%Y-%m-%dT%H:%M:%S.000Z")}]  # fmt: skip
    [released] = deliveries(pg_url, space.space.id, "points.released")
    data = released["data"]
    assert (data["user_id"], data["wallet"], data["amount"]) == ("c", "points", 120)
    assert data["lots"] == [{"earned_at": at(0.5).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                             "expires_at": at(31).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                             "amount": 120}]  # fmt: skip
    assert data["wallet_state"] == {"points": 120}
    assert {"type": "level", "from": 1, "to": 2} in data["effects"]


async def test_a_tick_writes_only_what_is_due_and_once_per_due_time(shop, runtime, space, pg_url):
    w = Writes(runtime, space)
    await w.earn(40, at(0.5), "o1")
    nothing = await w.tick(at(14), at(10))  # not due yet
    assert nothing["ticked"] is False and count(pg_url, "ticks", space.space.id) == 0
    first = await w.tick(at(14), at(14) + timedelta(seconds=30))
    assert first["ticked"] is True
    assert first["settled"]["released"] == [{"wallet": "points", "amount": 40}]
    again = await w.tick(at(14), at(14) + timedelta(seconds=45))  # the sweeper, restarted
    assert again["ticked"] is False
    assert count(pg_url, "ticks", space.space.id) == 1
    assert len(deliveries(pg_url, space.space.id, "points.released")) == 1
    assert due_of(pg_url, space.space.id, "c") == at(31)
    expired = await w.tick(at(31), at(31) + timedelta(seconds=5))
    assert expired["settled"]["expired"] == [{"wallet": "points", "amount": 40}]
    assert expired["wallet_state"] == {"points": 0}
    assert due_of(pg_url, space.space.id, "c") is None
    [gone] = deliveries(pg_url, space.space.id, "points.expired")
    assert (gone["data"]["amount"], gone["data"]["wallet_state"]) == (40, {"points": 0})
    profile = (await shop.get("/v1/profile/c")).body
    assert profile["wallet_details"]["points"]["expired"] == 40


async def test_reads_show_the_profile_settled_at_their_time_without_writing(
    shop, runtime, space, pg_url
):
    w = Writes(runtime, space)
    await w.earn(30, MIDNIGHT - timedelta(days=20), "o1")  # received long ago: due already
    with psycopg.connect(pg_url) as conn:
        version = conn.execute(
            "SELECT version FROM profiles WHERE space_id = %s", (space.space.id,)
        ).fetchone()
    profile = (await shop.get("/v1/profile/c")).body
    assert profile["wallets"] == {"points": 30}
    assert profile["wallet_details"]["points"]["pending"] == 0
    with psycopg.connect(pg_url) as conn:
        assert (
            conn.execute(
                "SELECT version FROM profiles WHERE space_id = %s", (space.space.id,)
            ).fetchone()
            == version
        )  # a read writes nothing


async def test_verify_checks_lots_against_the_balance_and_catches_a_corrupted_lot(
    shop, runtime, space, pg_url
):
    w = Writes(runtime, space)
    await w.earn(50, at(0), "o1")
    await w.earn(30, at(1), "o2")
    await w.tick(at(14), at(15))
    await w.redeem(at(16), "r1")
    await w.adjust(-5, at(16), "a1")
    await w.earn(7, at(17), "o3")
    record = space.space
    with psycopg.connect(pg_url) as conn:
        assert verify_space(conn, record).mismatches == []
        conn.execute(
            "UPDATE profiles SET state = jsonb_set(state, '{wallets,points,lots,0,2}', '999')"
            " WHERE space_id = %s",
            (space.space.id,),
        )
    with psycopg.connect(pg_url) as conn:
        found = verify_space(conn, record).mismatches
    assert [(m.user_id, m.wallet, m.what) for m in found] == [("c", "points", "available lots")]


async def test_a_due_time_the_program_made_stale_is_corrected_once(shop, runtime, space, pg_url):
    """A program without the wallet any more: the tick finds nothing to settle, but writes
    once so that the profile stops being due (no tick at every sweep for ever)."""
    w = Writes(runtime, space)
    await w.earn(40, at(0.5), "o1")
    stars = {"wallets": {"wallets": [{"key": "stars", "name": "Stars"}]},
             "events": {"rules": []}, "leveling": {}, "perks": {}}  # fmt: skip
    assert (await shop.post("/v1/admin/config", {"version": "v2", "modules": stars})).status == 200
    first = await w.tick(at(14), at(14) + timedelta(seconds=20))
    assert first["ticked"] is False and first["settled"]["released"] == []
    assert count(pg_url, "ticks", space.space.id) == 1
    assert due_of(pg_url, space.space.id, "c") is None
    again = await w.tick(at(14), at(14) + timedelta(seconds=40))
    assert again["ticked"] is False and count(pg_url, "ticks", space.space.id) == 1
