"""Support operations (docs/api.md (support operations)): balance adjustments with a reason and redemption
reversals — hand-computed cases, idempotency, refusals, scopes, and the ledger."""

from __future__ import annotations

import psycopg
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perkamo.cli.main import main
from perkamo.profiles.replay import replay_profile
from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from tests.api_client import Api, app_for
from tests.perkamo.profiles.test_properties import stored_profile
from tests.spaces import make_space

PROGRAM = {
    "wallets": {
        "wallets": [
            {"key": "points", "name": "Points"},
            {"key": "cash", "name": "Cash", "precision": 2, "allow_negative": True},
        ],
        "rewards": [
            {"key": "coupon", "name": "Coupon", "cost": {"wallet": "points", "amount": 10},
             "effect": {"type": "coupon"}},
            {"key": "daily", "name": "Daily", "cost": {"wallet": "points", "amount": 5},
             "effect": {"type": "x"}, "limits": {"per_user_per_day": 1}},
            {"key": "double", "name": "Double", "cost": {"wallet": "points", "amount": 5},
             "effect": {"type": "boost", "boost": "double"}},
        ],
    },
    "events": {"rules": [
        {"key": "buy", "name": "Buy", "event": "buy", "award": [{"wallet": "points", "amount": 10}]},
        {"key": "topup", "name": "Top up", "event": "topup",
         "award": [{"wallet": "points", "formula": "{{n}}"}]},
    ]},
    "leveling": {"wallet": "points", "levels": [{"level": 1, "at": 0}, {"level": 2, "at": 200}]},
    "perks": {"perks": [
        {"key": "silver", "name": "Silver", "trigger": {"type": "level_reached", "level": 2}},
    ]},
    "boosts": {"boosts": [{"key": "double", "name": "Double", "multiplier": 2, "wallets": ["points"],
                           "grant": {"on": "reward"}, "duration_seconds": 3600}]},
}  # fmt: skip


@pytest.fixture
async def shop(api):
    answer = await api.post("/v1/admin/config", {"version": "v1", "modules": PROGRAM})
    assert answer.status == 200, answer.body
    return api


async def topup(api, user: str, n: int, tx: str) -> None:
    body = {"user_id": user, "event": "topup", "transaction_id": tx, "context": {"n": n}}
    assert (await api.post("/v1/events", body)).status == 200


def adjustment(user: str, amount, tx: str, **extra) -> dict:
    return {"user_id": user, "wallet": "points", "amount": amount, "reason": "support ticket 42",
            "transaction_id": tx, **extra}  # fmt: skip


def rows(pg_url: str, table: str, space) -> int:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM {table} WHERE space_id = %s", (space.space.id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_plus_200_crosses_a_level_threshold_and_unlocks_a_perk(shop, space, pg_url):
    await topup(shop, "u", 50, "t1")
    answer = await shop.post("/v1/admin/adjustments", adjustment("u", 200, "a1", actor="ann"))
    assert answer.status == 200, answer.body
    body = answer.body
    assert body["adjusted"] is True and body["duplicate"] is False
    assert body["adjustment_id"].startswith("adj_")
    assert body["delta"] == [{"wallet": "points", "amount": 200}]
    assert body["leveled_up"] is True and body["level"]["level"] == 2
    assert body["unlocked"] == [{"type": "perk", "key": "silver", "name": "Silver"}]
    assert body["wallet_state"] == {"points": 250, "cash": 0}
    profile = (await shop.get("/v1/profile/u")).body
    assert profile["wallets"]["points"] == 250 and profile["level"]["level"] == 2
    assert [p["key"] for p in profile["perks"]] == ["silver"]
    entry = profile["adjustments"][0]
    assert entry["adjustment_id"] == body["adjustment_id"] and entry["transaction_id"] == "a1"
    assert (entry["wallet"], entry["amount"], entry["reason"], entry["actor"]) == (
        "points",
        200,
        "support ticket 42",
        "ann",
    )
    assert profile["events"][0]["transaction_id"] == "t1"  # events stay as they are
    assert main(["verify", "--space", space.slug, "--database-url", pg_url]) == 0


async def test_minus_50_on_a_balance_of_30_is_refused_and_writes_nothing(shop, space, pg_url):
    await topup(shop, "u", 30, "t1")
    answer = await shop.post("/v1/admin/adjustments", adjustment("u", -50, "a1"))
    assert (answer.status, answer.body["error"]) == (400, "insufficient_balance")
    assert rows(pg_url, "adjustments", space) == 0
    assert (await shop.get("/v1/profile/u")).body["wallets"]["points"] == 30
    # The id was not used: the same id may carry an adjustment that fits.
    fits = await shop.post("/v1/admin/adjustments", adjustment("u", -30, "a1"))
    assert fits.status == 200 and fits.body["wallet_state"]["points"] == 0


async def test_an_adjustment_not_counting_toward_the_level_leaves_it(shop):
    await topup(shop, "u", 150, "t1")
    answer = await shop.post(
        "/v1/admin/adjustments", adjustment("u", 500, "a1", counts_toward_level=False)
    )
    assert answer.status == 200
    assert answer.body["leveled_up"] is False and answer.body["level"]["level"] == 1
    assert answer.body["level"]["current"] == 150  # earned total unchanged
    assert answer.body["wallet_state"]["points"] == 650
    counted = await shop.post("/v1/admin/adjustments", adjustment("u", -100, "a2"))
    assert counted.body["level"]["current"] == 50  # a counted subtraction lowers earned


async def test_a_negative_wallet_and_decimals_within_its_precision(shop):
    await topup(shop, "u", 1, "t1")
    ok = await shop.post(
        "/v1/admin/adjustments", {**adjustment("u", -12.25, "a1"), "wallet": "cash"}
    )
    assert ok.status == 200, ok.body
    assert ok.body["wallet_state"]["cash"] == -12.25  # this wallet allows negatives
    for amount, tx in ((1.005, "a2"), (0, "a3"), (10**16, "a4")):
        bad = await shop.post(
            "/v1/admin/adjustments", {**adjustment("u", amount, tx), "wallet": "cash"}
        )
        assert (bad.status, bad.body["error"]) == (400, "validation_error"), amount
        assert bad.body["details"][0]["path"] == "amount"


@pytest.mark.parametrize(
    ("change", "status", "code", "path"),
    [
        ({"wallet": "gold"}, 400, "validation_error", "wallet"),
        ({"amount": 1.5}, 400, "validation_error", "amount"),  # points has precision 0
        ({"reason": ""}, 400, "validation_error", "reason"),
        ({"reason": "x" * 501}, 400, "validation_error", "reason"),
        ({"amount": "ten"}, 400, "validation_error", "amount"),
        ({"user_id": "ghost"}, 404, "profile_not_found", None),
        ({"tenant": "elsewhere"}, 403, "tenant_mismatch", None),
    ],
)
async def test_bad_adjustments_are_refused_clearly(shop, change, status, code, path):
    await topup(shop, "u", 10, "t1")
    answer = await shop.post("/v1/admin/adjustments", {**adjustment("u", 5, "a1"), **change})
    assert (answer.status, answer.body["error"]) == (status, code), answer.body
    if path is not None:
        assert answer.body["details"][0]["path"] == path


async def test_fifty_concurrent_identical_adjustments_apply_once(shop, space, pg_url):
    await topup(shop, "u", 10, "t1")
    answers = []

    async def one() -> None:
        answers.append(await shop.post("/v1/admin/adjustments", adjustment("u", 7, "same")))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(one)
    assert {a.status for a in answers} == {200}
    assert sum(not a.body["duplicate"] for a in answers) == 1
    ids = {a.body["adjustment_id"] for a in answers}
    assert len(ids) == 1
    assert rows(pg_url, "adjustments", space) == 1
    assert (await shop.get("/v1/profile/u")).body["wallets"]["points"] == 17
    changed = await shop.post("/v1/admin/adjustments", adjustment("u", 8, "same"))
    assert (changed.status, changed.body["error"]) == (400, "idempotency_conflict")
    other_user = await shop.post("/v1/admin/adjustments", adjustment("v", 7, "same"))
    assert other_user.status in (400, 404)  # never applied to another profile
    assert rows(pg_url, "adjustments", space) == 1


async def test_a_retried_subtraction_after_the_points_were_spent_is_a_duplicate(shop):
    await topup(shop, "u", 100, "t1")
    first = await shop.post("/v1/admin/adjustments", adjustment("u", -60, "a1"))
    assert first.status == 200
    await shop.post("/v1/rewards/redeem", {"user_id": "u", "reward_key": "coupon",
                                           "transaction_id": "r1"})  # fmt: skip
    retry = await shop.post("/v1/admin/adjustments", adjustment("u", -60, "a1"))
    assert retry.status == 200 and retry.body == {**first.body, "duplicate": True}


def redeem(user: str, reward: str, tx: str) -> dict:
    return {"user_id": user, "reward_key": reward, "transaction_id": tx}


async def test_a_reversal_refunds_and_frees_the_per_day_slot(shop, space, pg_url):
    await topup(shop, "u", 100, "t1")
    assert (await shop.post("/v1/rewards/redeem", redeem("u", "daily", "d1"))).status == 200
    limited = await shop.post("/v1/rewards/redeem", redeem("u", "daily", "d2"))
    assert limited.body["error"] == "redemption_limit_reached"
    answer = await shop.post(
        "/v1/admin/redemptions/d1/reverse", {"reason": "order refunded", "actor": "bob"}
    )
    assert answer.status == 200, answer.body
    body = answer.body
    assert body["reversed"] is True and body["duplicate"] is False
    assert body["delta"] == [{"wallet": "points", "amount": 5}]
    assert body["wallet_state"]["points"] == 100
    assert body["redemption"]["transaction_id"] == "d1"
    assert body["redemption"]["status"] == "reversed" and body["redemption"]["actor"] == "bob"
    again = await shop.post("/v1/rewards/redeem", redeem("u", "daily", "d3"))
    assert again.status == 200, again.body  # the slot is free again the same day
    profile = (await shop.get("/v1/profile/u")).body
    by_tx = {r["transaction_id"]: r for r in profile["redemptions"]}
    assert by_tx["d1"]["status"] == "reversed" and by_tx["d1"]["reversed_at"]
    assert by_tx["d3"]["status"] == "redeemed" and by_tx["d3"]["reversed_at"] is None
    repeat = await shop.post("/v1/admin/redemptions/d1/reverse", {"reason": "another reason"})
    assert repeat.status == 200 and repeat.body == {**body, "duplicate": True}
    assert rows(pg_url, "reversals", space) == 1
    assert main(["verify", "--space", space.slug, "--database-url", pg_url]) == 0


async def test_a_reversal_ends_a_granted_boost_for_later_events_only(shop):
    await topup(shop, "u", 100, "t1")
    assert (await shop.post("/v1/rewards/redeem", redeem("u", "double", "b1"))).status == 200
    boosted = await shop.post(
        "/v1/events", {"user_id": "u", "event": "buy", "transaction_id": "e1"}
    )
    assert boosted.body["delta"] == [{"wallet": "points", "amount": 20}]
    assert (await shop.post("/v1/admin/redemptions/b1/reverse", {"reason": "r"})).status == 200
    plain = await shop.post("/v1/events", {"user_id": "u", "event": "buy", "transaction_id": "e2"})
    assert plain.body["delta"] == [{"wallet": "points", "amount": 10}]
    profile = (await shop.get("/v1/profile/u")).body
    assert profile["wallets"]["points"] == 100 - 5 + 20 + 5 + 10  # the boosted award stays
    assert profile["active_boosts"] == []


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/admin/redemptions/nope/reverse", 404, "redemption_not_found"),
        ("/v1/admin/redemptions/refused/reverse", 404, "redemption_not_found"),
    ],
)
async def test_nothing_to_reverse(shop, path, status, code):
    await topup(shop, "u", 1, "t1")
    refused = await shop.post("/v1/rewards/redeem", redeem("u", "coupon", "refused"))
    assert refused.status == 400  # insufficient balance: not a redemption
    answer = await shop.post(path, {"reason": "r"})
    assert (answer.status, answer.body["error"]) == (status, code)


async def test_support_needs_its_scope_and_stays_in_its_space(shop, runtime, pg_url):
    await topup(shop, "u", 100, "t1")
    assert (await shop.post("/v1/rewards/redeem", redeem("u", "coupon", "r1"))).status == 200
    limited = make_space(pg_url, ["events:write", "profile:read", "admin:config"])
    for path, body in (
        ("/v1/admin/adjustments", adjustment("u", 5, "a1")),
        ("/v1/admin/redemptions/r1/reverse", {"reason": "r"}),
    ):
        refused = await shop.post(path, body, key=limited.key)
        assert (refused.status, refused.body["error"]) == (403, "insufficient_scope")
    # Another Space's key with the scope sees neither this profile nor this redemption.
    other = make_space(pg_url)
    api = Api(app_for(runtime), other.key)
    assert (await api.post("/v1/admin/config", {"version": "v1", "modules": PROGRAM})).status == 200
    assert (await api.post("/v1/admin/adjustments", adjustment("u", 5, "a1"))).status == 404
    assert (await api.post("/v1/admin/redemptions/r1/reverse", {"reason": "r"})).status == 404
    assert (await shop.get("/v1/profile/u")).body["wallets"]["points"] == 90


async def test_the_cli_adjusts_and_reverses(shop, space, pg_url, tmp_path, capsys):
    await topup(shop, "u", 100, "t1")
    assert (await shop.post("/v1/rewards/redeem", redeem("u", "coupon", "r1"))).status == 200
    common = ["--space", space.slug, "--database-url", pg_url, "--data-dir", str(tmp_path)]
    adjusted = await trio.to_thread.run_sync(
        lambda: main(
            [
                "adjust",
                *common,
                "u",
                "points",
                "25",
                "--reason",
                "goodwill",
                "--transaction-id",
                "cli-1",
            ]
        )  # fmt: skip
    )
    assert adjusted == 0
    out = capsys.readouterr().out
    assert "adjusted u: points +25" in out and "transaction id cli-1" in out
    reversed_ = await trio.to_thread.run_sync(
        lambda: main(["reverse", *common, "r1", "--reason", "refund", "--json"])
    )
    assert reversed_ == 0
    assert '"reversed":true' in capsys.readouterr().out
    refused = await trio.to_thread.run_sync(
        lambda: main(["adjust", *common, "u", "points", "-1000", "--reason", "x"])
    )
    assert refused == 2
    assert "insufficient_balance" in capsys.readouterr().err
    runtime_view = (await shop.get("/v1/profile/u")).body
    assert runtime_view["wallets"]["points"] == 100 - 10 + 25 + 10
    assert main(["verify", "--space", space.slug, "--database-url", pg_url]) == 0


_op = st.one_of(
    st.integers(1, 40).map(lambda n: ("event", n)),
    st.integers(-60, 60).filter(bool).map(lambda n: ("adjust", n)),
    st.sampled_from(["coupon", "daily", "double"]).map(lambda r: ("redeem", r)),
    st.just(("reverse", 0)),
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(_op, min_size=4, max_size=40))
def test_concurrent_support_writes_never_overdraw_and_replay(pg_url, tmp_path, ops):
    """All at once on one profile: adjustments, events, redemptions and reversals. Nothing
    overdraws, the balance is the sum of the ledger (verify), and replaying the stored
    history reproduces the stored profile."""
    space = make_space(pg_url)

    async def scenario() -> None:
        async with open_runtime(Settings(data_dir=tmp_path), pg_url) as runtime:
            api = Api(app_for(runtime), space.key)
            config = {"version": "v1", "modules": PROGRAM}
            assert (await api.post("/v1/admin/config", config)).status == 200
            await topup(api, "p", 30, "seed")
            redeemed: list[str] = []

            async def one(n: int, kind: str, value) -> None:
                if kind == "event":
                    await topup(api, "p", value, f"e{n}")
                elif kind == "adjust":
                    answer = await api.post(
                        "/v1/admin/adjustments", adjustment("p", value, f"a{n}")
                    )
                    assert answer.status == 200 or answer.body["error"] == "insufficient_balance"
                    if answer.status == 200:
                        assert answer.body["wallet_state"]["points"] >= 0
                elif kind == "redeem":
                    answer = await api.post("/v1/rewards/redeem", redeem("p", value, f"r{n}"))
                    assert answer.status in (200, 400), answer.body
                    if answer.status == 200:
                        redeemed.append(f"r{n}")
                elif redeemed:
                    tx = redeemed.pop()
                    reversal = await api.post(
                        f"/v1/admin/redemptions/{tx}/reverse", {"reason": "x"}
                    )
                    assert reversal.status == 200, reversal.body

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    for n, (kind, value) in enumerate(ops):
                        nursery.start_soon(one, n, kind, value)
            profile = (await api.get("/v1/profile/p")).body
            assert profile["wallets"]["points"] >= 0

    trio.run(scenario)
    assert main(["verify", "--space", space.slug, "--database-url", pg_url]) == 0
    with psycopg.connect(pg_url) as conn:
        traits, state = replay_profile(conn, space.space.id, "p")
    assert (traits, state) == stored_profile(pg_url, space.space.id, "p")
