"""Invariants, with Hypothesis: balance = sum of the ledger; the same event on the same state
gives the same outcome; state survives its storage round trip; replaying the stored event log
from an empty state reproduces the stored profile; a duplicate never changes anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perkamo.configuration import activate_demo
from perkamo.profiles.replay import replay_profile
from perkamo.program import EngineEvent, ProfileState, apply
from perkamo.program.evaluation import copy_state
from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from tests.api_client import Api, app_for
from tests.perkamo.http.test_config_api import demo_modules
from tests.spaces import make_space

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
EVENTS = ["purchase.completed", "page.viewed", "app.opened", "lesson.finished",
          "subscription.renewed", "unknown.event"]  # fmt: skip

event_strategy = st.tuples(
    st.sampled_from(EVENTS),
    st.integers(min_value=0, max_value=60 * 24 * 20),  # minutes after T0
    st.fixed_dictionaries(
        {},
        optional={
            "path": st.sampled_from(["/pricing", "/home"]),
            "months": st.integers(min_value=-3, max_value=30),
            "lesson_id": st.integers(min_value=0, max_value=12),
            "amount": st.decimals(min_value=-100, max_value=100000, places=2),
        },
    ),
)


def demo_program():
    from perkamo.program import compile_program

    return compile_program({m: ("demo", b) for m, b in demo_modules().items()})


PROGRAM = demo_program()


# too_slow judges how fast examples are generated, which a loaded 2-core machine varies.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event_strategy, max_size=40))
def test_balance_is_the_sum_of_the_ledger_and_evaluation_is_deterministic(events):
    state = ProfileState()
    ledger: dict[str, Decimal] = {}
    for name, minutes, context in events:
        at = T0 + timedelta(minutes=minutes)
        event = EngineEvent(name, context, at, {"plan": "premium"})
        given = state
        untouched = copy_state(given)
        again = apply(given, event, PROGRAM, at)
        state, outcome = apply(given, event, PROGRAM, at)
        assert (state, outcome) == again  # same event, same state → same outcome
        assert given == untouched  # apply() never mutates the state it is given
        for entry in outcome.delta:
            ledger[entry.wallet] = ledger.get(entry.wallet, Decimal(0)) + entry.amount
        # the stored form round-trips exactly
        stored = msgspec.json.encode(state)
        assert msgspec.json.decode(stored, type=ProfileState) == state
    for key, balance in state.wallets.items():
        assert balance.balance == ledger.get(key, 0)
        assert balance.balance >= 0  # the demo wallet does not allow negatives
        assert balance.earned - balance.deducted == balance.balance


def stored_profile(pg_url: str, space_id: int, user_id: str) -> tuple[Any, ProfileState]:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT traits, state FROM profiles WHERE space_id = %s AND user_id = %s",
            (space_id, user_id),
        ).fetchone()
    assert row is not None
    return row[0], msgspec.convert(row[1], ProfileState, strict=False)


step_strategy = st.one_of(
    event_strategy.map(lambda e: ("event", e)),
    st.fixed_dictionaries({}, optional={"plan": st.sampled_from(["free", "premium", None]),
                                        "tier": st.integers(0, 3)}).map(lambda t: ("identify", t)),
    st.sampled_from(["free_shipping", "double_points_day"]).map(lambda r: ("redeem", r)),
    st.just(("reprice", None)),
    st.tuples(st.integers(-300, 300).filter(bool), st.booleans()).map(lambda a: ("adjust", a)),
    st.just(("reverse", None)),  # the latest redemption not reversed yet, if any
)  # fmt: skip


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step_strategy, min_size=1, max_size=20), repeat=st.data())
def test_replaying_the_stored_history_reproduces_the_profile(pg_url, tmp_path, steps, repeat):
    """Events, identifies, redemptions, adjustments, reversals and a program change, then a
    replay of the stored history from an empty profile equals the stored traits and
    state."""
    space = make_space(pg_url)
    repriced = demo_modules()["events"]
    repriced["rules"][0]["award"] = [{"wallet": "points", "formula": "{{amount}} / 10"}]

    async def scenario() -> None:
        async with open_runtime(Settings(data_dir=tmp_path), pg_url) as runtime:
            assert await activate_demo(runtime.db, runtime.programs, space.space.id)
            api = Api(app_for(runtime), space.key)
            await api.post("/v1/identify", {"user_id": "p", "traits": {"plan": "premium"}})
            sent = []
            redeemed: list[str] = []
            for n, (kind, value) in enumerate(steps):
                if kind == "event":
                    name, minutes, context = value
                    body = {"user_id": "p", "event": name, "transaction_id": f"t{n}",
                            "context": context,
                            "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat()}  # fmt: skip
                    answer = await api.post("/v1/events", body)
                    assert answer.status == 200, answer.body
                    sent.append((body, answer.body))
                elif kind == "identify":
                    assert (
                        await api.post("/v1/identify", {"user_id": "p", "traits": value})
                    ).status == 200
                elif kind == "redeem":
                    body = {"user_id": "p", "reward_key": value, "transaction_id": f"r{n}"}
                    answer = await api.post("/v1/rewards/redeem", body)
                    assert answer.status in (200, 400), answer.body
                    if answer.status == 200:
                        redeemed.append(f"r{n}")
                elif kind == "adjust":
                    amount, counts = value
                    body = {"user_id": "p", "wallet": "points", "amount": amount,
                            "reason": "property", "transaction_id": f"a{n}",
                            "counts_toward_level": counts}  # fmt: skip
                    answer = await api.post("/v1/admin/adjustments", body)
                    assert answer.status == 200 or answer.body["error"] == "insufficient_balance"
                elif kind == "reverse":
                    if redeemed:
                        path = f"/v1/admin/redemptions/{redeemed.pop()}/reverse"
                        assert (await api.post(path, {"reason": "property"})).status == 200
                else:
                    upload = {"version": f"price-{n}", "body": repriced}
                    assert (await api.post("/v1/admin/config/events", upload)).status == 200
            if sent:
                before = (await api.get("/v1/profile/p")).body
                # Duplicates (with a new occurred_at, as the PHP SDK sends) change nothing.
                body, original = repeat.draw(st.sampled_from(sent))
                retry = await api.post("/v1/events", {**body, "occurred_at": T0.isoformat()})
                assert retry.body == {**original, "duplicate": True}
                after = (await api.get("/v1/profile/p")).body
                assert {k: v for k, v in after.items() if k != "updated_at"} == {
                    k: v for k, v in before.items() if k != "updated_at"
                }

    trio.run(scenario)
    with psycopg.connect(pg_url) as conn:
        traits, state = replay_profile(conn, space.space.id, "p")
    assert (traits, state) == stored_profile(pg_url, space.space.id, "p")
