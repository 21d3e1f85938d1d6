"""Redemptions, usage meters and limits, rate limiting, and ``perkamo verify``."""

from __future__ import annotations

import psycopg
import pytest
import trio

from perkamo.access.rate_limit import RateLimiter
from perkamo.cli.main import main
from storage import spaces as space_store
from tests.notifications import notified

PROGRAM = {
    "wallets": {
        "wallets": [{"key": "points", "name": "Points"}, {"key": "xp", "name": "XP", "spendable": False}],
        "rewards": [
            {"key": "coupon", "name": "Coupon", "cost": {"wallet": "points", "amount": 10},
             "effect": {"type": "coupon", "value": 5}},
            {"key": "once", "name": "Once", "cost": {"wallet": "points", "amount": 1},
             "effect": {"type": "x"}, "limits": {"per_user": 1}},
            {"key": "daily", "name": "Daily", "cost": {"wallet": "points", "amount": 1},
             "effect": {"type": "x"}, "limits": {"per_user_per_day": 2}},
            {"key": "gold_only", "name": "Gold only", "cost": {"wallet": "points", "amount": 1},
             "effect": {"type": "x"}, "requires": {"level_at_least": 3}},
            {"key": "vip_only", "name": "VIP only", "cost": {"wallet": "points", "amount": 1},
             "effect": {"type": "x"}, "requires": {"perks": ["vip"]}},
            {"key": "retired", "name": "Retired", "cost": {"wallet": "points", "amount": 1},
             "effect": {"type": "x"}, "active": False},
            {"key": "double", "name": "Double", "cost": {"wallet": "points", "amount": 5},
             "effect": {"type": "boost", "boost": "double"}},
        ],
    },
    "events": {"rules": [
        {"key": "topup", "name": "Top up", "event": "topup", "award": [{"wallet": "points", "formula": "{{n}}"}]},
        {"key": "buy", "name": "Buy", "event": "buy", "award": [{"wallet": "points", "amount": 10}]},
    ]},
    "leveling": {"wallet": "points", "levels": [{"level": 1, "at": 0}, {"level": 2, "at": 1000}, {"level": 3, "at": 5000}]},
    "perks": {"perks": [{"key": "vip", "name": "VIP", "trigger": {"type": "trait", "path": "traits.vip", "op": "eq", "value": True}}]},
    "boosts": {"boosts": [{"key": "double", "name": "Double", "multiplier": 2, "wallets": ["points"],
                           "grant": {"on": "reward"}, "duration_seconds": 3600}]},
}  # fmt: skip


@pytest.fixture
async def shop(api):
    answer = await api.post("/v1/admin/config", {"version": "v1", "modules": PROGRAM})
    assert answer.status == 200, answer.body
    return api


async def topup(api, user: str, n: int, tx: str) -> None:
    answer = await api.post(
        "/v1/events", {"user_id": user, "event": "topup", "transaction_id": tx, "context": {"n": n}}
    )
    assert answer.status == 200, answer.body


def redeem_body(user: str, reward: str, tx: str, **extra) -> dict:
    return {"user_id": user, "reward_key": reward, "transaction_id": tx, **extra}


async def test_a_redemption_answers_the_documented_shape(shop):
    await topup(shop, "u", 25, "t1")
    answer = await shop.post("/v1/rewards/redeem", redeem_body("u", "coupon", "r1"))
    assert answer.status == 200, answer.body
    body = answer.body
    assert body["redeemed"] is True and body["duplicate"] is False
    assert body["redemption_id"].startswith("rdm_")
    assert body["reward"] == {"key": "coupon", "name": "Coupon"}
    assert body["cost"] == {"wallet": "points", "amount": 10}
    assert body["delta"] == [{"wallet": "points", "amount": -10}]
    assert body["effect"] == {"type": "coupon", "value": 5}  # verbatim
    assert body["wallet_state"] == {"points": 15, "xp": 0}
    assert body["level"]["current"] == 25  # earned basis: spending never lowers it
    profile = (await shop.get("/v1/profile/u")).body
    assert profile["wallets"]["points"] == 15
    assert profile["redemptions"][0]["reward_key"] == "coupon"
    assert profile["redemptions"][0]["cost"] == {"wallet": "points", "amount": 10}
    assert profile["redemptions"][0]["effect"] == {"type": "coupon", "value": 5}


async def test_hundred_concurrent_redemptions_never_overdraw(shop, space, pg_url):
    await topup(shop, "rich", 100, "t1")  # covers exactly 10 coupons
    answers = []

    async def one(n: int) -> None:
        answers.append(
            await shop.post("/v1/rewards/redeem", redeem_body("rich", "coupon", f"c{n}"))
        )

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for n in range(100):
                nursery.start_soon(one, n)
    ok = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status != 200]
    assert len(ok) == 10
    assert {(a.status, a.body["error"]) for a in refused} == {(400, "insufficient_balance")}
    assert sorted(a.body["wallet_state"]["points"] for a in ok) == list(range(0, 100, 10))
    assert (await shop.get("/v1/profile/rich")).body["wallets"]["points"] == 0
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM redemptions WHERE space_id = %s", (space.space.id,)
        ).fetchone()
    assert row == (10,)


@pytest.mark.parametrize(
    ("user", "reward", "status", "code", "words"),
    [
        ("poor", "coupon", 400, "insufficient_balance", ["Points", "balance is 3", "costs 10"]),
        ("poor", "nothing", 400, "unknown_reward", ["nothing"]),
        ("poor", "retired", 400, "unknown_reward", ["retired"]),
        ("poor", "gold_only", 400, "requirements_not_met", ["level 3"]),
        ("poor", "vip_only", 400, "requirements_not_met", ["vip"]),
        ("ghost", "coupon", 404, "profile_not_found", ["ghost"]),
    ],
)
async def test_refusals(shop, user, reward, status, code, words):
    await topup(shop, "poor", 3, "t1")
    answer = await shop.post("/v1/rewards/redeem", redeem_body(user, reward, "r1"))
    assert (answer.status, answer.body["error"]) == (status, code)
    for word in words:
        assert word in answer.body["message"]


async def test_limits_per_user_and_per_day(shop):
    await topup(shop, "u", 50, "t1")
    assert (await shop.post("/v1/rewards/redeem", redeem_body("u", "once", "o1"))).status == 200
    again = await shop.post("/v1/rewards/redeem", redeem_body("u", "once", "o2"))
    assert again.body["error"] == "redemption_limit_reached"
    for n in range(2):
        assert (
            await shop.post("/v1/rewards/redeem", redeem_body("u", "daily", f"d{n}"))
        ).status == 200
    third = await shop.post("/v1/rewards/redeem", redeem_body("u", "daily", "d2"))
    assert third.body["error"] == "redemption_limit_reached"


async def test_a_refused_redemption_does_not_consume_its_id(shop):
    await topup(shop, "u", 5, "t1")
    refused = await shop.post("/v1/rewards/redeem", redeem_body("u", "coupon", "keep"))
    assert refused.body["error"] == "insufficient_balance"
    await topup(shop, "u", 5, "t2")
    accepted = await shop.post("/v1/rewards/redeem", redeem_body("u", "coupon", "keep"))
    assert accepted.status == 200 and accepted.body["duplicate"] is False


async def test_redemption_idempotency(shop):
    await topup(shop, "u", 10, "t1")
    first = await shop.post(
        "/v1/rewards/redeem", redeem_body("u", "coupon", "r", context={"order": 1})
    )
    # The points are gone, yet a retry is a duplicate, not "insufficient balance".
    retry = await shop.post(
        "/v1/rewards/redeem", redeem_body("u", "coupon", "r", context={"order": 1.0})
    )
    assert retry.status == 200
    assert retry.body == {**first.body, "duplicate": True}
    other = await shop.post(
        "/v1/rewards/redeem", redeem_body("u", "coupon", "r", context={"order": 2})
    )
    assert (other.status, other.body["error"]) == (400, "idempotency_conflict")
    # Redemptions have their own namespace: an event may use the same id.
    event = await shop.post("/v1/events", {"user_id": "u", "event": "buy", "transaction_id": "r"})
    assert event.status == 200 and event.body["duplicate"] is False


async def test_a_boost_effect_grants_the_boost(shop):
    await topup(shop, "u", 5, "t1")
    answer = await shop.post("/v1/rewards/redeem", redeem_body("u", "double", "b1"))
    assert {"type": "boost", "key": "double", "name": "Double"} in answer.body["unlocked"]
    bought = await shop.post("/v1/events", {"user_id": "u", "event": "buy", "transaction_id": "x"})
    assert bought.body["delta"] == [{"wallet": "points", "amount": 20}]
    boosts = (await shop.get("/v1/profile/u")).body["active_boosts"]
    assert [(b["key"], b["source"]) for b in boosts] == [("double", "granted")]


async def test_redemption_needs_its_scope(runtime, pg_url):
    from tests.api_client import Api, app_for
    from tests.spaces import make_space

    writer = make_space(pg_url, scopes=["events:write"])
    answer = await Api(app_for(runtime), writer.key).post(
        "/v1/rewards/redeem", redeem_body("u", "coupon", "r")
    )
    assert (answer.status, answer.body["error"]) == (403, "insufficient_scope")


# -- usage --------------------------------------------------------------------------------------


def set_limits(pg_url: str, slug: str, **limits) -> None:
    with psycopg.connect(pg_url) as conn:
        assert space_store.set_limits(conn, slug, limits) is not None


async def test_meters_count_exactly_what_was_accepted(shop, runtime):
    async def send(n: int) -> None:
        await shop.post(
            "/v1/events", {"user_id": f"u{n % 7}", "event": "buy", "transaction_id": f"e{n}"}
        )

    async with trio.open_nursery() as nursery:
        for n in range(60):
            nursery.start_soon(send, n)
            nursery.start_soon(send, n)  # every event twice: duplicates are not new events
    await topup(shop, "w", 30, "t1")  # a new profile whose 30 points buy exactly 3 coupons
    for n in range(4):
        await shop.post("/v1/rewards/redeem", redeem_body("w", "coupon", f"r{n}"))
    await runtime.usage.flush_requests(runtime.writer.commit)
    meters = (await shop.get("/v1/usage")).body["meters"]
    assert meters["events"] == {"used": 61, "limit": None}
    assert meters["profiles"] == {"used": 8, "limit": None}
    assert meters["redemptions"] == {"used": 3, "limit": None}
    assert meters["api_requests"]["used"] == 120 + 1 + 4 + 1 + 1  # config, events, redeems, usage
    program = (await shop.get("/v1/program")).body
    assert program["usage"]["meters"]["events"]["used"] == 61
    assert program["metrics"]["redemptions"] == 3
    assert program["metrics"]["spent"]["points"] == 30


async def test_usage_limit_trips_at_exactly_the_limit(shop, space, pg_url, runtime):
    async with notified(runtime):  # the key cache learns of it through NOTIFY
        set_limits(pg_url, space.slug, events=5)
    answers = [
        await shop.post("/v1/events", {"user_id": "u", "event": "buy", "transaction_id": f"e{n}"})
        for n in range(7)
    ]
    assert [a.status for a in answers] == [200] * 5 + [429] * 2
    assert answers[5].body["error"] == "usage_limit_exceeded"
    assert int(answers[5].headers["retry-after"]) > 0
    # A retry of an applied event is never refused for quota.
    retry = await shop.post("/v1/events", {"user_id": "u", "event": "buy", "transaction_id": "e0"})
    assert (retry.status, retry.body["duplicate"]) == (200, True)
    meters = (await shop.get("/v1/usage")).body["meters"]
    assert meters["events"] == {"used": 5, "limit": 5}
    async with notified(runtime):  # raised: work is accepted again
        set_limits(pg_url, space.slug, events=None)
    again = await shop.post("/v1/events", {"user_id": "u", "event": "buy", "transaction_id": "e9"})
    assert again.status == 200


async def test_batch_items_over_the_limit_fail_alone(shop, space, pg_url, runtime):
    async with notified(runtime):  # the key cache learns of it through NOTIFY
        set_limits(pg_url, space.slug, events=3, profiles=2)
    items = [{"user_id": f"u{n % 3}", "event": "buy", "transaction_id": f"b{n}"} for n in range(6)]
    results = (await shop.post("/v1/events:batch", {"events": items})).body["results"]
    codes = [r.get("error", {}).get("error") for r in results]
    # Users proceed in parallel, so which items win is not fixed; the limits are.
    assert codes.count(None) == 3
    assert set(codes) - {None} == {"usage_limit_exceeded"}
    assert len({items[n]["user_id"] for n, c in enumerate(codes) if c is None}) <= 2
    meters = (await shop.get("/v1/usage")).body["meters"]
    assert meters["events"]["used"] == 3 and meters["profiles"]["used"] <= 2


async def test_a_duplicate_in_a_batch_never_takes_the_last_usage_slot(shop, space, pg_url, runtime):
    """D12: with 3 of 4 events used, a batch [a retry of an applied event, a new event for
    another user] refused the new event: the retry had reserved the last slot and the new
    one was judged before the retry turned out a duplicate. Both orders now apply it."""
    async with notified(runtime):  # the key cache learns of it through NOTIFY
        set_limits(pg_url, space.slug, events=4)
    for n in range(3):
        body = {"user_id": f"old{n}", "event": "buy", "transaction_id": f"e{n}"}
        assert (await shop.post("/v1/events", body)).status == 200
    retry = {"user_id": "old0", "event": "buy", "transaction_id": "e0"}
    for n, order in enumerate(("retry-first", "new-first")):
        new = {"user_id": f"new{n}", "event": "buy", "transaction_id": f"new{n}"}
        items = [retry, new] if order == "retry-first" else [new, retry]
        results = (await shop.post("/v1/events:batch", {"events": items})).body["results"]
        by_tx = {
            item["transaction_id"]: result for item, result in zip(items, results, strict=True)
        }
        assert by_tx["e0"]["duplicate"] is True, order
        if n == 0:
            assert "error" not in by_tx[new["transaction_id"]], by_tx[new["transaction_id"]][
                "error"
            ]
        else:  # the limit is now full: a new event is refused, the duplicate still is not
            assert by_tx[new["transaction_id"]]["error"]["error"] == "usage_limit_exceeded"
    meters = (await shop.get("/v1/usage")).body["meters"]
    assert meters["events"] == {"used": 4, "limit": 4}


# -- rate limiting (virtual time) -------------------------------------------------------------


def test_token_bucket_in_virtual_time():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0], wall_clock=lambda: 1_000_000.0 + now[0])
    decisions = [limiter.take("k", rate=2, burst=3) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[3].retry_after == 1 and decisions[3].limit == 3
    assert decisions[2].reset == 1_000_002  # 3 tokens at 2/s
    now[0] += 0.5  # one token back
    assert limiter.take("k", rate=2, burst=3).allowed
    assert not limiter.take("k", rate=2, burst=3).allowed
    assert limiter.take("other", rate=2, burst=3).allowed  # buckets are per key


async def test_rate_limit_headers_and_429(shop, space, pg_url, runtime, mock_clock):
    set_limits(pg_url, space.slug, rate=1, burst=2)
    # Virtual time stands still here, so do not wait for NOTIFY (tested with revocation):
    # drop the cached key record as the notification would.
    runtime.auth.forget_all()
    assert (await shop.get("/v1/usage")).headers["ratelimit-limit"] == "2"
    mock_clock.jump(10)  # a full bucket
    first = await shop.get("/v1/usage")
    second = await shop.get("/v1/usage")
    third = await shop.get("/v1/usage")
    assert [first.status, second.status, third.status] == [200, 200, 429]
    assert (first.headers["ratelimit-limit"], first.headers["ratelimit-remaining"]) == ("2", "1")
    assert third.body["error"] == "rate_limited"
    assert third.headers["retry-after"] == "1"
    assert int(third.headers["ratelimit-reset"]) > 0
    mock_clock.jump(1)
    assert (await shop.get("/v1/usage")).status == 200
    unauthenticated = await shop.get("/healthz", key=None)
    assert "ratelimit-limit" not in unauthenticated.headers


# -- verify -----------------------------------------------------------------------------------


async def test_verify_passes_on_a_busy_space_and_detects_tampering(
    shop, space, pg_url, monkeypatch, capsys
):
    async def user(n: int) -> None:
        await topup(shop, f"v{n}", 37, f"t{n}")
        for k in range(3):
            await shop.post(
                "/v1/events", {"user_id": f"v{n}", "event": "buy", "transaction_id": f"b{n}-{k}"}
            )
        await shop.post("/v1/rewards/redeem", redeem_body(f"v{n}", "coupon", f"r{n}"))

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(user, n)
    monkeypatch.setenv("PERKAMO_DATABASE_URL", pg_url)
    assert main(["verify", "--space", space.slug]) == 0
    assert "20 profiles verified, ok" in capsys.readouterr().out
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "UPDATE profiles SET state = jsonb_set(state, '{wallets,points,balance}', '999')"
            " WHERE space_id = %s AND user_id = 'v3'",
            (space.space.id,),
        )
    assert main(["verify", "--space", space.slug]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "'v3' points balance: stored 999, ledger 57" in out
