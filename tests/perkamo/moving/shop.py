"""A Space that holds every kind of row an export carries, filled through the API: a program
with streaks, boosts, levels and perks (and a draft), events, identifies, redemptions (one
granting a boost), a reversal, adjustments, an opening balance, known transaction ids, a
revoked key, a webhook with undelivered deliveries, usage. Every logged request is kept with
its answer, to re-send after the move."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from perkamo.access import admin
from perkamo.runtime import Runtime
from perkamo.usecases.moving.balances import Known, Opening
from perkamo.usecases.moving.opening import apply_openings, store_known
from storage import spaces as space_store
from tests.api_client import Api
from tests.notifications import notified
from tests.spaces import SpaceKey

PROGRAM = {
    "wallets": {
        "wallets": [
            {"key": "points", "name": "Points"},
            {"key": "cash", "name": "Cash", "precision": 2, "allow_negative": True},
        ],
        "rewards": [
            {"key": "coupon", "name": "Coupon", "cost": {"wallet": "points", "amount": 10},
             "effect": {"type": "coupon"}},
            {"key": "double", "name": "Double", "cost": {"wallet": "points", "amount": 5},
             "effect": {"type": "boost", "boost": "double"}},
        ],
    },
    "events": {
        "rules": [
            {"key": "buy", "name": "Buy", "event": "buy",
             "award": [{"wallet": "points", "formula": "{{amount}}"}]},
            {"key": "visit", "name": "Visit", "event": "visit",
             "award": [{"wallet": "points", "amount": 1}]},
        ],
        "streaks": [{"key": "daily", "name": "Daily", "events": ["visit"], "period": "day",
                     "timezone": "UTC",
                     "milestones": [{"length": 2, "award": [{"wallet": "points", "amount": 7}]}]}],
    },
    "leveling": {"wallet": "points", "basis": "earned",
                 "levels": [{"level": 1, "at": 0}, {"level": 2, "at": 100}]},
    "perks": {"perks": [
        {"key": "silver", "name": "Silver", "trigger": {"type": "level_reached", "level": 2}},
    ]},
    "boosts": {"boosts": [{"key": "double", "name": "Double", "multiplier": 2, "wallets": ["points"],
                           "grant": {"on": "reward"}, "duration_seconds": 3600}]},
}  # fmt: skip
DRAFT_RULES = {"rules": [{"key": "buy", "name": "Buy", "event": "buy",
                          "award": [{"wallet": "points", "formula": "{{amount}} * 2"}]}]}  # fmt: skip


@dataclass
class Sent:
    """A logged request and its answer (re-sent after the move, it is a duplicate)."""

    path: str
    body: dict[str, Any]
    answer: dict[str, Any]


@dataclass
class Shop:
    space: SpaceKey
    users: list[str]
    sent: list[Sent] = field(default_factory=list)
    revoked_key: str = ""

    async def send(self, api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await api.post(path, body)
        assert answer.status == 200, answer.body
        if "transaction_id" in body or path.endswith("/reverse"):
            self.sent.append(Sent(path, body, answer.body))
        return answer.body  # type: ignore[no-any-return]


async def fill(api: Api, runtime: Runtime, space: SpaceKey, pg_url: str) -> Shop:
    shop = Shop(space, ["ann", "bob", "account:acme/42"])
    assert (await api.post("/v1/admin/config", {"version": "v1", "modules": PROGRAM})).status == 200
    draft = {"version": "v2-draft", "active": False, "body": DRAFT_RULES}
    assert (await api.post("/v1/admin/config/events", draft)).status == 200
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for n, user in enumerate(shop.users):
        await api.post("/v1/identify", {"user_id": user, "traits": {"name": user, "n": n}})
        await shop.send(
            api,
            "/v1/events",
            {
                "user_id": user,
                "event": "visit",
                "transaction_id": f"v0-{n}",
                "occurred_at": yesterday,
            },
        )
        await shop.send(
            api, "/v1/events", {"user_id": user, "event": "visit", "transaction_id": f"v1-{n}"}
        )  # a streak milestone
        await shop.send(
            api,
            "/v1/events",
            {
                "user_id": user,
                "event": "buy",
                "transaction_id": f"b1-{n}",
                "context": {"amount": 120 + n, "sku": 'é\n"x"'},
            },
        )
    await shop.send(
        api,
        "/v1/rewards/redeem",
        {"user_id": "ann", "reward_key": "double", "transaction_id": "r-double"},
    )
    await shop.send(
        api,
        "/v1/events",
        {
            "user_id": "ann",
            "event": "buy",
            "transaction_id": "b2-boosted",
            "context": {"amount": 10},
        },
    )
    await shop.send(
        api,
        "/v1/rewards/redeem",
        {"user_id": "bob", "reward_key": "coupon", "transaction_id": "r-coupon"},
    )
    await shop.send(
        api,
        "/v1/rewards/redeem",
        {"user_id": "ann", "reward_key": "coupon", "transaction_id": "r-kept"},
    )
    await shop.send(api, "/v1/admin/redemptions/r-coupon/reverse", {"reason": "refund"})
    await shop.send(api, "/v1/admin/events/b1-1/reverse", {"reason": "returned"})
    await shop.send(api, "/v1/admin/adjustments", {
        "user_id": "bob", "wallet": "cash", "amount": 12.5, "reason": "goodwill",
        "transaction_id": "adj-1", "counts_toward_level": False})  # fmt: skip
    await shop.send(api, "/v1/admin/adjustments", {
        "user_id": "ann", "wallet": "points", "amount": -3, "reason": "fix",
        "transaction_id": "adj-2"})  # fmt: skip
    opening = Opening(1, "carol", "points", Decimal(40), Decimal(400), {"tier": "gold"})
    summary = await apply_openings(runtime, space.space.id, {}, [opening], actor="migration")
    assert summary.applied == 1, summary
    shop.users.append("carol")
    known = [Known(1, "event", "old-1", "ann"), Known(2, "redemption", "old-r", None)]
    assert (await store_known(runtime, space.space.id, known)).applied == 2
    async with notified(runtime):  # the webhook's endpoint reaches the runtime
        with psycopg.connect(pg_url) as conn:
            key_id, shop.revoked_key = admin.create_key(conn, space.space, ["profile:read"])
            space_store.revoke_key(conn, key_id)
            admin.set_webhook(conn, space.slug, "http://127.0.0.1:9/hooks")
    await shop.send(
        api,
        "/v1/events",
        {"user_id": "bob", "event": "buy", "transaction_id": "b-hooked", "context": {"amount": 1}},
    )
    await browser_visit(api, "ann")
    return shop


async def browser_visit(api: Api, user: str) -> None:
    """A browser key, a token for ``user`` and a visit sent from the shop's page (a client
    event, with an id that is also a server event's: the namespaces are apart)."""
    origin = "https://shop.example.com"
    policy = {"name": "Shop", "allowed_origins": [origin], "allowed_events": ["visit"]}
    created = await api.post("/v1/admin/browser-keys", policy)
    assert created.status == 201, created.body
    minted = await api.post("/v1/browser-tokens", {"browser_key": created.body["key"],
                                                    "user_id": user})  # fmt: skip
    assert minted.status == 200, minted.body
    headers = {"authorization": f"Bearer {minted.body['token']}", "origin": origin}
    sent = await api.request("POST", "/v1/client/events", json={
        "event": "visit", "transaction_id": "v1-0"}, headers=headers, key=None)  # fmt: skip
    assert sent.status == 200 and sent.body["duplicate"] is False, sent.body
