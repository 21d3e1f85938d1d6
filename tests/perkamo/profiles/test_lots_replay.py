"""Replay = live state with lots (Hypothesis): any mix of backdated events, redemptions and
their reversals, adjustments, returns, identifies and ticks, each received some hours after
the previous one, then the stored history replayed from an empty profile equals the stored
state, and ``perkamo verify`` finds the ledger, the balances and the lots in agreement."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import psycopg
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perkamo.errors import PerkamoError
from perkamo.profiles.commands import (
    Adjust,
    Identify,
    Ingest,
    Redeem,
    Reverse,
    ReverseEvent,
    Tick,
    tick_id,
)
from perkamo.profiles.replay import replay_profile
from perkamo.profiles.verify import verify_space
from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from tests.api_client import Api, app_for
from tests.perkamo.profiles.test_lots_writes import BASE, PROGRAM
from tests.perkamo.profiles.test_properties import stored_profile
from tests.spaces import make_space

step_strategy = st.tuples(
    st.integers(min_value=0, max_value=96),  # hours after the previous write
    st.one_of(
        st.tuples(st.just("earn"), st.integers(-20, 150), st.integers(0, 40)),  # n, days back
        st.tuples(st.just("redeem")),
        st.tuples(st.just("adjust"), st.integers(-60, 60).filter(bool)),
        st.tuples(st.just("return"), st.integers(0, 50)),  # which earlier event
        st.tuples(st.just("unredeem")),
        st.tuples(st.just("tick")),
        st.tuples(st.just("identify")),
    ),
)


def allow_negative_program() -> dict:
    body = {**PROGRAM, "wallets": {**PROGRAM["wallets"]}}
    body["wallets"]["wallets"] = [{**PROGRAM["wallets"]["wallets"][0], "allow_negative": True}]
    return body


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(step_strategy, min_size=1, max_size=25),
    negatives=st.booleans(),
)
def test_replaying_a_history_with_lots_reproduces_the_profile(pg_url, tmp_path, steps, negatives):
    space = make_space(pg_url)
    program = allow_negative_program() if negatives else PROGRAM

    async def scenario() -> None:
        settings_ = Settings(data_dir=tmp_path, sweep_rate=0)
        async with open_runtime(settings_, pg_url) as runtime:
            api = Api(app_for(runtime), space.key)
            assert (await api.post("/v1/admin/config",
                                   {"version": "v1", "modules": program})).status == 200  # fmt: skip
            key = (space.space.id, "p")
            now = BASE
            events: list[str] = []
            redeemed: list[str] = []
            for n, (hours, (kind, *args)) in enumerate(steps):
                now += timedelta(hours=hours)
                if kind == "earn":
                    command = Ingest(
                        transaction_id=f"e{n}",
                        event="buy",
                        context={"n": args[0]},
                        occurred_at=now - timedelta(days=args[1]),
                        received_at=now,
                    )
                    events.append(f"e{n}")
                elif kind == "redeem":
                    command = Redeem(
                        transaction_id=f"r{n}", reward_key="gift", context={}, received_at=now
                    )
                elif kind == "adjust":
                    command = Adjust(
                        transaction_id=f"a{n}",
                        wallet="points",
                        amount=Decimal(args[0]),
                        counts_toward_level=n % 2 == 0,
                        reason="property",
                        actor=None,
                        received_at=now,
                    )
                elif kind == "return" and events:
                    command = ReverseEvent(
                        transaction_id=events[args[0] % len(events)],
                        reason="returned",
                        actor=None,
                        received_at=now,
                    )
                elif kind == "unredeem" and redeemed:
                    command = Reverse(
                        transaction_id=redeemed.pop(), reason="refund", actor=None, received_at=now
                    )
                elif kind == "tick":
                    command = Tick(transaction_id=tick_id("p", now), due_at=now, received_at=now)
                else:
                    command = Identify(traits={"n": n}, received_at=now)
                try:
                    await runtime.gateway.ask(key, command)
                except PerkamoError as exc:  # a business rule (no profile yet, no balance)
                    assert exc.code.value in (
                        "profile_not_found", "insufficient_balance", "redemption_not_found",
                    ), exc  # fmt: skip
                    continue
                if kind == "redeem":
                    redeemed.append(command.transaction_id)
                # fmt: skip

    trio.run(scenario)
    with psycopg.connect(pg_url) as conn:
        found = conn.execute(
            "SELECT 1 FROM profiles WHERE space_id = %s", (space.space.id,)
        ).fetchone()
        if found is None:
            return
        traits, state = replay_profile(conn, space.space.id, "p")
        assert verify_space(conn, space.space).mismatches == []
    assert (traits, state) == stored_profile(pg_url, space.space.id, "p")
