"""Returns (docs/program.md "Returns: reversing an event"), computed by hand: pending points first,
then the event's lot, then — for what was spent — the wallet; a shortfall where a wallet
cannot go negative; ``earned`` falling by what the event added, and the level with it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from perkamo.errors import Code
from perkamo.program.adjustments import SupportRefused
from perkamo.program.outcome import Delta
from perkamo.program.returns import EventRecord, reverse_event
from perkamo.program.rewards import redeem
from tests.perkamo.program.test_lots import REWARD, Wallet, day, program


def give_back(p: Wallet, tx: str, earned_at: Any, outcome: Any, now: Any) -> Any:
    record = EventRecord(
        tx, earned_at, {d.wallet: d.amount for d in outcome.delta},
        {d.wallet: d.amount for d in outcome.pending},
    )  # fmt: skip
    p.state, back = reverse_event(p.state, record, p.program, now, {})
    return back


def amounts(deltas: list[Delta]) -> list[tuple[str, Decimal]]:
    return [(d.wallet, d.amount) for d in deltas]


def test_partly_pending_partly_spent_on_a_wallet_allowing_negatives():
    """A debt of 30 took 30 of the order's 100 at once; 70 wait in a pending lot."""
    p = Wallet(program(allow_negative=True, pending_days=14, expiry={"after_days": 60}))
    p.adjust(-30, day(0), counts=False)
    order = p.earn(100, day(1), tx="order")
    back = give_back(p, "order", day(1), order, day(2))
    assert amounts(back.pending) == [("points", -70)]  # the pending lot first
    assert amounts(back.delta) == [("points", -30)]  # what paid the debt: the wallet pays
    assert back.shortfall == []
    assert (p.w.balance, p.w.pending, p.w.earned, p.w.lots) == (-30, 0, 0, [])


@pytest.mark.parametrize(
    ("allow_negative", "delta", "shortfall", "balance"),
    [(False, -75, [("points", 25)], 0), (True, -100, [], -25)],
)
def test_partly_in_its_lot_partly_spent(allow_negative, delta, shortfall, balance):
    """100 released, 25 spent on a gift, 10 more pending from another order: the return
    takes the 75 left in the order's lot, then 25 from the wallet — which has nothing
    available (the 10 are pending and stay)."""
    p = Wallet(program(REWARD, allow_negative=allow_negative, pending_days=14,
                       expiry={"after_days": 365}))  # fmt: skip
    order = p.earn(100, day(0), tx="order")
    assert p.tick(day(15)).leveled_up  # 100 earned: level 2
    p.redeem(day(16), "gift-1")
    p.earn(10, day(16), tx="other")
    back = give_back(p, "order", day(0), order, day(17))
    assert amounts(back.delta) == [("points", delta)]
    assert amounts(back.shortfall) == shortfall
    assert back.pending == [] and back.leveled_down and back.level.level == 1
    assert (p.w.balance, p.w.pending, p.w.earned) == (balance, 10, 0)


def test_a_part_that_expired_is_not_taken_again():
    """30 earned, 25 spent, the other 5 expired: only the 25 spent are owed."""
    p = Wallet(program(REWARD, expiry={"after_days": 10}))
    order = p.earn(30, day(0), tx="order")
    p.redeem(day(1), "gift-1")
    assert p.tick(day(12)).expired == {"points": Decimal(5)}
    back = give_back(p, "order", day(0), order, day(13))
    assert back.delta == [] and amounts(back.shortfall) == [("points", 25)]
    assert (p.w.balance, p.w.earned, p.w.expired) == (0, 0, 5)


def test_a_negative_change_comes_back_as_a_lot_available_at_once():
    p = Wallet(program(expiry={"after_days": 30}))
    p.earn(50, day(0))
    fee = p.earn(-10, day(1), tx="fee")
    back = give_back(p, "fee", day(1), fee, day(2))
    assert amounts(back.delta) == [("points", 10)]
    assert (p.w.balance, p.w.earned) == (50, 50)  # a refund does not raise earned
    assert sorted(lot.remaining for lot in p.w.lots) == [10, 40]


def test_a_wallet_without_lots_follows_the_same_rules_on_its_balance():
    p = Wallet(program(REWARD))
    order = p.earn(100, day(0), tx="order")
    p.redeem(day(1), "gift-1")
    back = give_back(p, "order", day(0), order, day(2))
    assert amounts(back.delta) == [("points", -75)] and amounts(back.shortfall) == [("points", 25)]
    assert (p.w.balance, p.w.earned) == (0, 0)
    assert back.leveled_down


def test_a_return_settles_first():
    """Settled at its own *now*: the order's pending points were released before it."""
    p = Wallet(program(pending_days=3, expiry={"after_days": 30}))
    order = p.earn(40, day(0), tx="order")
    back = give_back(p, "order", day(0), order, day(5) + timedelta(hours=1))
    assert back.settled.released == {"points": Decimal(40)}
    assert amounts(back.delta) == [("points", -40)] and back.pending == []
    assert (p.w.balance, p.w.earned) == (0, 0)


def test_the_worked_example_of_docs_program_md():
    """docs/program.md, "A worked example: pending points, a return and an expiry"."""
    gift = [{**REWARD[0], "cost": {"wallet": "points", "amount": 100}}]
    settings = {"pending_days": 14, "expiry": {"after_days": 30}}

    def march(d: int, hour: int = 0) -> Any:
        return day(d - 1) - timedelta(hours=12 - hour)  # day(0) is 1 March 12:00

    def state(p: Wallet) -> tuple[Any, ...]:
        return (p.w.balance, p.w.pending, p.w.earned, p.state.max_level)

    for returned in ("B", "A"):
        p = Wallet(program(gift, **settings))
        order_a = p.earn(120, march(1, 10), tx="A")
        order_b = p.earn(40, march(5, 12), tx="B")
        assert state(p) == (0, 160, 0, 1)
        assert p.tick(march(15)).released == {"points": Decimal(120)} and state(p)[3] == 2
        p.state, _ = redeem(p.state, "gift", p.program, march(16), {}, "gift-1")
        assert state(p) == (20, 40, 120, 2)
        if returned == "A":  # the other ending: order A returned on 17 March
            back = give_back(p, "A", march(1, 10), order_a, march(17))
            assert amounts(back.delta) == [("points", -20)]
            assert amounts(back.shortfall) == [("points", 100)] and back.leveled_down
            continue
        assert p.tick(march(19)).released == {"points": Decimal(40)}
        assert state(p) == (60, 0, 160, 2)
        assert sorted((lot.expires_at.day, lot.remaining) for lot in p.w.lots) == [(1, 20), (5, 40)]
        back = give_back(p, "B", march(5, 12), order_b, march(20))
        assert amounts(back.delta) == [("points", -40)] and back.shortfall == []
        assert state(p) == (20, 0, 120, 2) and not back.leveled_down
        assert p.tick(day(31)).expired == {"points": Decimal(20)}  # 1 April 12:00
        assert (p.w.balance, p.w.spent, p.w.expired, p.w.earned) == (0, 100, 20, 120)


def test_a_refund_that_would_leave_the_bound_is_refused_and_changes_nothing():
    p = Wallet(program(allow_negative=True))
    fee = p.earn(-5, day(0), tx="fee")
    p.adjust(10**15, day(1), counts=False)
    p.adjust(5, day(1), counts=False)  # the balance at the bound
    before = p.state
    with pytest.raises(SupportRefused) as refused:
        give_back(p, "fee", day(0), fee, day(2))
    assert refused.value.code is Code.VALIDATION_ERROR
    assert p.state is before and p.w.balance == 10**15
