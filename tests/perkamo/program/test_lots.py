"""Lots in the pure engine, computed by hand (docs/program.md "Points that wait and points that expire"): merging, the 1,000-lot bound, spending order, redemptions and their reversal,
negative adjustments, debts, release raising ``earned`` and the level, settings changed on
a live wallet. Backdated ``occurred_at`` makes time testable: every write brings its own
*now*."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from perkamo.program import EngineEvent, ProfileState, apply, compile_program, settle_at
from perkamo.program.adjustments import RedemptionRecord, SupportRefused, adjust, reverse
from perkamo.program.lots import MAX_LOTS, new_lot, place, spend
from perkamo.program.model import Program, WalletBalance
from perkamo.program.outcome import Delta
from perkamo.program.rewards import redeem

D0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EARN = {"rules": [{"key": "r", "name": "r", "event": "buy",
                   "award": [{"wallet": "points", "formula": "{{n}}"}]}]}  # fmt: skip
LEVELS = {"wallet": "points", "levels": [{"level": 1, "at": 0}, {"level": 2, "at": 100}]}


def day(n: float) -> datetime:
    return D0 + timedelta(days=n)


def midnight(n: int) -> datetime:
    """00:00 UTC of day n (D0 is day 0)."""
    return datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=n)


def program(rewards: list[dict[str, Any]] | None = None, **settings: Any) -> Program:
    wallets = {"wallets": [{"key": "points", "name": "Points", **settings}],
               "rewards": rewards or []}  # fmt: skip
    return compile_program(
        {"wallets": ("v1", wallets), "events": ("v1", EARN), "leveling": ("v1", LEVELS)}
    )


REWARD = [{"key": "gift", "name": "Gift", "cost": {"wallet": "points", "amount": 25},
           "effect": {"type": "gift"}}]  # fmt: skip


class Wallet:
    """One profile, its writes sent at the given days (each its own *now*)."""

    def __init__(self, prog: Program) -> None:
        self.program = prog
        self.state = ProfileState()

    def earn(self, n: int, at: datetime, now: datetime | None = None, tx: str = "") -> Any:
        event = EngineEvent("buy", {"n": n}, at, {}, tx or f"e{at.isoformat()}")
        self.state, outcome = apply(self.state, event, self.program, now or at)
        return outcome

    def adjust(self, amount: int, now: datetime, counts: bool = True) -> Any:
        self.state, change = adjust(
            self.state, "points", Decimal(amount), counts, self.program, now, {}
        )
        return change

    def redeem(self, now: datetime, tx: str) -> Any:
        self.state, redemption = redeem(self.state, "gift", self.program, now, {}, tx)
        return redemption

    def reverse(self, tx: str, redeemed_at: datetime, now: datetime) -> Any:
        record = RedemptionRecord("gift", Delta("points", Decimal(25)), {}, redeemed_at, tx)
        self.state, change = reverse(self.state, record, self.program, now, {})
        return change

    def tick(self, now: datetime) -> Any:
        self.state, settled = settle_at(self.state, self.program, now, {})
        return settled

    @property
    def w(self) -> WalletBalance:
        return self.state.wallets["points"]

    def lots(self) -> list[tuple[Decimal, bool, datetime | None]]:
        """(remaining, pending, expires_at) of every lot, in spending order."""
        ordered = sorted(self.w.lots, key=lambda lot: (lot.expires_at or D0, lot.id))
        return [(lot.remaining, lot.pending, lot.expires_at) for lot in ordered]


def test_a_wallet_without_settings_keeps_no_lots_and_its_state_is_unchanged():
    plain = compile_program({"wallets": ("v1", {"wallets": [{"key": "points", "name": "P"}]}),
                             "events": ("v1", EARN)})  # fmt: skip
    p = Wallet(plain)
    p.earn(10, day(0))
    assert p.state.settled_at is None and p.state.takes == {}
    assert p.w == WalletBalance(balance=Decimal(10), earned=Decimal(10))


def test_points_earned_the_same_day_merge_and_another_day_makes_another_lot():
    p = Wallet(program(expiry={"after_days": 30}))
    p.earn(10, day(0))
    p.earn(20, day(0.4))
    p.earn(5, day(1))
    assert p.lots() == [(10 + 20, False, midnight(31)), (5, False, midnight(32))]
    assert p.w.balance == 35


def test_pending_lots_merge_only_when_they_wait_for_the_same_day():
    p = Wallet(program(pending_days=14, expiry={"after_days": 30}))
    out = p.earn(10, day(0))
    assert out.delta == [] and out.pending == [Delta("points", Decimal(10))]
    p.earn(20, day(0.4))
    p.adjust(7, day(0.45))  # an adjustment is available at once: a lot of its own
    p.earn(5, day(1))
    assert p.lots() == [(30, True, midnight(31)), (7, False, midnight(31)), (5, True, midnight(32))]
    assert (p.w.balance, p.w.pending, p.w.earned) == (7, 35, 7)


def test_past_the_bound_new_amounts_merge_into_the_lot_expiring_last():
    w = WalletBalance()
    wallet = program(expiry={"after_days": 3650}).wallet("points")
    assert wallet is not None
    for n in range(MAX_LOTS):
        place(w, new_lot(wallet, f"e{n}", Decimal(1), day(n), at_once=True))
    assert len(w.lots) == MAX_LOTS
    latest = max(w.lots, key=lambda lot: lot.expires_at or D0).id
    place(w, new_lot(wallet, "late", Decimal(5), day(-10), at_once=True))
    assert len(w.lots) == MAX_LOTS  # the customer never loses: the amount merged…
    assert next(lot for lot in w.lots if lot.id == latest).remaining == 6  # …expiring last


def test_spending_takes_the_soonest_expiring_lot_first_then_the_oldest_earned():
    p = Wallet(program(REWARD, expiry={"after_days": 30}))
    p.earn(10, day(5), now=day(6))
    p.earn(10, day(1), now=day(6))  # backdated: expires first
    p.earn(10, day(3), now=day(6))
    p.redeem(day(6), "r1")  # 25: all of day 1's lot, all of day 3's, 5 of day 5's
    assert p.lots() == [(5, False, midnight(36))]
    assert [(t.expires_at, t.amount) for t in p.state.takes["r1"]] == [
        (midnight(32), 10), (midnight(34), 10), (midnight(36), 5)]  # fmt: skip
    w = WalletBalance()  # equal expiry: the oldest earned, then the first created
    wallet = p.program.wallet("points")
    assert wallet is not None
    for n, (source, earned) in enumerate((("b", day(2)), ("a", day(1)), ("c", day(1)))):
        lot = new_lot(wallet, source, Decimal(1), earned, at_once=True)
        w.lots.append(msgspec.structs.replace(lot, expires_at=midnight(40), id=n))
    assert [(t.earned_at, t.amount) for t in spend(w, Decimal(2))] == [(day(1), 1), (day(1), 1)]
    assert [lot.source for lot in w.lots] == ["b"]


def test_a_reversed_redemption_gives_each_lot_back_and_an_expired_share_expires_at_once():
    p = Wallet(program(REWARD, expiry={"after_days": 10}))
    p.earn(20, day(0))  # expires at day 11's start
    p.earn(20, day(5))  # expires at day 16's start
    p.redeem(day(6), "r1")  # 20 from day 0's lot, 5 from day 5's
    assert p.lots() == [(15, False, midnight(16))]
    change = p.reverse("r1", day(6), day(12))  # day 0's lot expired at day 11
    assert change.delta == [Delta("points", Decimal(25))]
    assert change.settled.expired == {"points": Decimal(20)}
    assert p.lots() == [(20, False, midnight(16))]
    assert (p.w.balance, p.w.expired, p.w.spent, p.w.earned) == (20, 20, 0, 40)
    assert "r1" not in p.state.takes


def test_a_negative_adjustment_takes_the_soonest_expiring_points():
    p = Wallet(program(expiry={"after_days": 10}))
    p.earn(10, day(2))
    p.earn(10, day(0), now=day(2))
    change = p.adjust(-15, day(3))
    assert change.delta == [Delta("points", Decimal(-15))]
    assert p.lots() == [(5, False, midnight(13))]
    assert (p.w.balance, p.w.earned) == (5, 5)  # counts toward the level: earned moves too


def test_a_debt_is_paid_first_and_pending_applies_to_what_remains():
    p = Wallet(program(allow_negative=True, pending_days=14, expiry={"after_days": 60}))
    p.adjust(-30, day(0), counts=False)
    assert (p.w.balance, p.w.lots) == (-30, [])
    out = p.earn(100, day(1))
    assert out.delta == [Delta("points", Decimal(30))]
    assert out.pending == [Delta("points", Decimal(70))]
    assert (p.w.balance, p.w.pending, p.w.earned) == (0, 70, 30)  # the part that paid at once
    settled = p.tick(day(15))
    assert settled.released == {"points": Decimal(70)}
    assert (p.w.balance, p.w.pending, p.w.earned) == (70, 0, 100)


def test_release_raises_earned_and_the_level_at_the_due_time():
    p = Wallet(program(pending_days=14, expiry={"after_days": 365}))
    out = p.earn(120, day(0))
    assert out.leveled_up is False and out.level.level == 1
    assert p.tick(midnight(14) - timedelta(seconds=1)).changed is False
    settled = p.tick(day(20))
    assert settled.released == {"points": Decimal(120)} and settled.leveled_up
    assert settled.level_from == 1 and p.state.max_level == 2
    assert (p.w.balance, p.w.earned) == (120, 120)
    assert p.state.settled_at == day(20)
    # A write with an earlier receive time does not move the profile's *now* back.
    p.earn(1, day(19), now=day(19))
    assert p.state.settled_at == day(20)


def test_a_backdated_event_can_be_expired_within_the_write_that_creates_it():
    p = Wallet(program(expiry={"after_days": 30}))
    out = p.earn(50, day(0), now=day(40))
    assert out.delta == [Delta("points", Decimal(50))]  # awarded: a lot available at once…
    assert out.settled.expired == {"points": Decimal(50)}  # …that expired 9 days ago
    assert (p.w.balance, p.w.expired, p.w.earned, p.w.lots) == (0, 50, 50, [])
    q = Wallet(program(pending_days=14, expiry={"after_days": 30}))
    out = q.earn(50, day(0), now=day(20))
    assert out.delta == [] and out.pending == [Delta("points", Decimal(50))]
    assert out.settled.released == {"points": Decimal(50)}  # released within the write
    assert (q.w.balance, q.w.earned) == (50, 50)


def test_a_lot_expiring_before_it_would_be_available_never_raises_earned():
    p = Wallet(program(pending_days=14, expiry={"end_of": "month", "after_periods": 0}))
    p.earn(40, day(25))  # 26 March: available 9 April, expires 1 April
    settled = p.tick(day(40))
    assert settled.released == settled.expired == {"points": Decimal(40)}
    assert (p.w.balance, p.w.pending, p.w.earned, p.w.expired) == (0, 0, 0, 40)


def test_settings_added_to_a_live_wallet_make_its_balance_one_lot_and_removing_them_undoes_it():
    p = Wallet(program())
    p.earn(100, day(0))
    assert p.w.lots == []
    p.program = program(pending_days=7, expiry={"after_days": 30})
    p.earn(10, day(3))
    assert p.lots() == [(100, False, midnight(34)), (10, True, midnight(34))]
    assert (p.w.balance, p.w.pending, p.w.earned) == (100, 10, 100)
    p.program = program()  # both settings removed: lots are plain balance again
    out = p.earn(1, day(4))
    assert out.settled.released == {"points": Decimal(10)}
    assert p.w.lots == [] and (p.w.balance, p.w.earned) == (111, 111)


def test_next_due_is_the_soonest_release_or_expiry():
    from perkamo.program.settling import next_due

    p = Wallet(program(pending_days=3, expiry={"after_days": 10}))
    assert next_due(p.state, p.program) is None
    p.earn(5, day(0))
    assert next_due(p.state, p.program) == midnight(3)
    p.tick(day(4))
    assert next_due(p.state, p.program) == midnight(11)
    p.tick(day(11))
    assert next_due(p.state, p.program) is None and p.w.lots == []


def test_pending_points_count_toward_the_bound_they_will_reach_when_released():
    p = Wallet(program(pending_days=5))
    big = 10**15 // 2
    first = p.earn(big, day(0))
    assert first.pending and not first.skipped
    second = p.earn(big + 1, day(1))  # with the first, 10^15 + 1 once both are released
    assert [s.reason for s in second.skipped] == ["amount_out_of_range"]
    assert p.w.pending == big
    p.tick(day(10))
    assert p.w.balance == big and p.w.earned == big


def test_a_balance_outside_the_bound_can_be_walked_back_but_not_further_out():
    """A state an older engine let leave ±10^15 (pending points were not counted then)."""
    p = Wallet(program())
    p.adjust(10**15, day(0), counts=False)
    p.w.balance = Decimal(3 * 10**15)  # as stored before the bound counted pending points
    p.adjust(-1, day(1), counts=False)
    assert p.w.balance == 3 * 10**15 - 1
    with pytest.raises(SupportRefused):
        p.adjust(1, day(2), counts=False)
