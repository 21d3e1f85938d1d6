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

from perkamo.configuration import activate_demo, load_program
from perkamo.http.app import create_app
from perkamo.program import EngineEvent, ProfileState, apply
from perkamo.program.engine import copy_state
from perkamo.runtime import open_runtime
from perkamo.settings import Settings
from tests.conftest import Api, make_space
from tests.perkamo.test_config_api import demo_modules

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


@settings(max_examples=60, deadline=None)
@given(st.lists(event_strategy, max_size=40))
def test_balance_is_the_sum_of_the_ledger_and_evaluation_is_deterministic(events):
    state = ProfileState()
    ledger: dict[str, Decimal] = {}
    for name, minutes, context in events:
        at = T0 + timedelta(minutes=minutes)
        event = EngineEvent(name, context, at, {"plan": "premium"})
        again = apply(state, event, PROGRAM, at)
        state_before = copy_state(state)
        state, outcome = apply(state, event, PROGRAM, at)
        assert (state, outcome) == again  # same event, same state → same outcome
        assert copy_state(state_before) == state_before
        for entry in outcome.delta:
            ledger[entry["wallet"]] = ledger.get(entry["wallet"], Decimal(0)) + entry["amount"]
        # the stored form round-trips exactly
        stored = msgspec.json.encode(state)
        assert msgspec.json.decode(stored, type=ProfileState) == state
    for key, balance in state.wallets.items():
        assert balance.balance == ledger.get(key, 0)
        assert balance.balance >= 0  # the demo wallet does not allow negatives
        assert balance.earned - balance.deducted == balance.balance


def replay(pg_url: str, space_id: int, user_id: str) -> tuple[ProfileState, Any]:
    """Replay the stored log from an empty state (the traits did not change in the run)."""
    with psycopg.connect(pg_url) as conn:
        program = load_program(conn, space_id)
        rows = conn.execute(
            "SELECT event, context, occurred_at, received_at FROM events"
            " WHERE space_id = %s AND user_id = %s ORDER BY seq",
            (space_id, user_id),
        ).fetchall()
        stored = conn.execute(
            "SELECT state, traits FROM profiles WHERE space_id = %s AND user_id = %s",
            (space_id, user_id),
        ).fetchone()
    assert stored is not None
    state = ProfileState()
    for event, context, occurred_at, received_at in rows:
        state, _ = apply(
            state, EngineEvent(event, context, occurred_at, stored[1]), program, received_at
        )
    return state, msgspec.convert(stored[0], ProfileState, strict=False)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(event_strategy, min_size=1, max_size=15), repeat=st.data())
def test_replaying_the_stored_log_reproduces_the_profile(pg_url, tmp_path, events, repeat):
    space = make_space(pg_url)

    async def scenario() -> None:
        async with open_runtime(Settings(data_dir=tmp_path), pg_url) as runtime:
            assert await activate_demo(runtime.db, runtime.programs, space.space.id)
            api = Api(create_app(runtime), space.key)
            await api.post("/v1/identify", {"user_id": "p", "traits": {"plan": "premium"}})
            sent = []
            for n, (name, minutes, context) in enumerate(events):
                body = {"user_id": "p", "event": name, "transaction_id": f"t{n}",
                        "context": context,
                        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat()}  # fmt: skip
                answer = await api.post("/v1/events", body)
                assert answer.status == 200, answer.body
                sent.append((body, answer.body))
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
    replayed, stored = replay(pg_url, space.space.id, "p")
    assert replayed == stored
