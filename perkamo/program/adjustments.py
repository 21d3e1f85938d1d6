"""Support operations (docs/api.md (support operations)), pure like ``apply``: a balance adjustment
with a reason, and the reversal of a redemption.

Neither is an event: achievements and streaks ignore them, boosts never multiply them. Both
re-run the steps a balance change triggers (levels, perk thresholds, the boosts they grant;
docs/program.md steps 7–9).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, localcontext

import msgspec

from perkamo.errors import Code, PerkamoError, validation_failed
from perkamo.program.amounts import decimal_places, number, wallet_state
from perkamo.program.bounds import after, within
from perkamo.program.evaluation import DECIMALS, Evaluation, copy_state
from perkamo.program.levels import level_number, level_state
from perkamo.program.lotdates import lot_dates
from perkamo.program.lots import add_available, new_lot, remember_expiry, spend
from perkamo.program.model import (
    GrantedBoost,
    Lot,
    ProfileState,
    Program,
    TakenPart,
    WalletBalance,
    WalletDef,
)
from perkamo.program.outcome import Delta, LevelState, Settlement, Unlocked
from perkamo.program.perks import level_perks_boosts
from perkamo.program.settling import profile_now, settle


class SupportRefused(PerkamoError):
    """The operation cannot apply to this profile; nothing changes, the id is not used."""


@dataclass(frozen=True, slots=True)
class Change:
    """What an adjustment or a reversal changed (``unlocked`` and ``leveled_up`` include
    what settling caused)."""

    delta: list[Delta]
    unlocked: list[Unlocked]
    leveled_up: bool
    wallet_state: dict[str, Decimal]
    level: LevelState | None
    settled: Settlement = field(default_factory=Settlement)


@dataclass(frozen=True, slots=True)
class RedemptionRecord:
    """What reversing a past redemption needs to know of it."""

    reward_key: str
    cost: Delta
    effect: Mapping[str, object]
    redeemed_at: datetime
    transaction_id: str = ""  # what it took from lots is kept under it (ProfileState.takes)


def check_adjustment(program: Program, wallet_key: str, amount: Decimal) -> None:
    """The checks that need only the program: a known wallet, the wallet's precision, a
    non-zero amount within ±10^15 (400 validation_error with the path)."""
    wallet = program.wallet(wallet_key)
    if wallet is None:
        raise validation_failed("wallet", f"there is no wallet {wallet_key!r}")
    if amount == 0 or not within(amount):
        raise validation_failed("amount", "must be non-zero and within ±10^15")
    if decimal_places(amount) > wallet.precision:
        raise validation_failed("amount", f"at most {wallet.precision} decimal places")


def adjust(
    state: ProfileState,
    wallet_key: str,
    amount: Decimal,
    counts_toward_level: bool,
    program: Program,
    received_at: datetime,
    traits: Mapping[str, object],
    source: str = "adjustment",
) -> tuple[ProfileState, Change]:
    """Add ``amount`` (negative: subtract) to a wallet's balance and, when it counts toward
    the level, to its earned total (never below zero), on the profile settled at
    ``received_at``; ``source`` names its lot. Raises SupportRefused: insufficient_balance,
    or validation_error (check_adjustment, or a result outside ±10^15)."""
    check_adjustment(program, wallet_key, amount)
    earned = amount if counts_toward_level else None
    return _move(
        state, wallet_key, amount, earned, program, received_at, traits, "adjustment", source
    )


def check_opening(
    program: Program, wallet_key: str, amount: Decimal, earned: Decimal | None
) -> None:
    """An opening balance's checks that need only the program: a known wallet, amounts
    within ±10^15 and the wallet's precision, ``earned`` not negative (400
    validation_error with the path)."""
    wallet = program.wallet(wallet_key)
    if wallet is None:
        raise validation_failed("wallet", f"there is no wallet {wallet_key!r}")
    for path, value in (("amount", amount), ("earned", earned)):
        if value is None:
            continue
        if not within(value):
            raise validation_failed(path, "must be within ±10^15")
        if decimal_places(value) > wallet.precision:
            raise validation_failed(path, f"at most {wallet.precision} decimal places")
    if earned is not None and earned < 0:
        raise validation_failed("earned", "must not be negative")


def open_balance(
    state: ProfileState,
    wallet_key: str,
    amount: Decimal,
    earned: Decimal | None,
    program: Program,
    received_at: datetime,
    traits: Mapping[str, object],
    dates: tuple[datetime | None, datetime | None] = (None, None),
) -> tuple[ProfileState, Change]:
    """A customer's balance brought from another system: ``amount`` added to the balance
    (0: none) and ``earned`` added to the earned total — never set — (None: ``amount``, as
    an adjustment that counts toward the level), with ``traits`` (already merged) in scope
    for perk conditions. In a wallet with lots a positive amount is a lot available at
    once, dated by ``dates`` (its ``earned_at`` and ``expires_at`` in the old system; None:
    earned now, expiring by the wallet's rule). Raises SupportRefused like ``adjust``."""
    check_opening(program, wallet_key, amount, earned)
    wallet = program.wallet(wallet_key)
    if wallet is None or not wallet.has_lots:
        dates = (None, None)  # a wallet without lots keeps no dates
    earned_at, expires_at = dates
    if earned_at is not None and earned_at > received_at:
        raise validation_failed("earned_at", "must not be in the future")
    if expires_at is not None and expires_at <= received_at:
        raise validation_failed("expires_at", "has passed: the points would expire at once")
    if wallet is not None and earned_at is not None and expires_at is None:
        by_rule = lot_dates(wallet, earned_at)[1]  # the wallet's rule from the old date
        if by_rule is not None and by_rule <= received_at:
            raise validation_failed(
                "earned_at", "is so old that the wallet's expiry has passed: give expires_at"
            )
    by = amount if earned is None else earned
    return _move(
        state, wallet_key, amount, by, program, received_at, traits, "opening balance",
        "opening", dates,
    )  # fmt: skip


def _move(
    state: ProfileState,
    wallet_key: str,
    amount: Decimal,
    earned_by: Decimal | None,
    program: Program,
    received_at: datetime,
    traits: Mapping[str, object],
    what: str,
    source: str,
    dates: tuple[datetime | None, datetime | None] = (None, None),
) -> tuple[ProfileState, Change]:
    """``amount`` added to the balance, ``earned_by`` to the earned total (never below zero;
    None: untouched), then the level, perks and boosts re-run; ``what`` names it in a
    refusal, ``source`` its lot. In a wallet with lots a positive amount is a lot
    earned now, available at once (paying a debt first); a negative one is taken from the
    available lots in spending order."""
    wallet = program.wallet(wallet_key)
    assert wallet is not None
    with localcontext(DECIMALS):
        level_before = level_number(state, program)
        run = evaluation_of(state, program, received_at, traits)
        settled = settle(run.state, program, received_at, traits)
        current = run.state.wallets.get(wallet_key) or WalletBalance()
        balance = current.balance + amount
        earned = None if earned_by is None else max(current.earned + earned_by, Decimal(0))
        if amount < 0 and balance < 0 and not wallet.allow_negative:
            raise SupportRefused(
                Code.INSUFFICIENT_BALANCE,
                f"Not enough {wallet.name}: the balance is "
                f"{number(current.balance, wallet.precision)}, the {what} is "
                f"{number(amount, wallet.precision)}.",
            )
        # Outside the bound is refused — unless already outside and moving back toward it
        # (a state an older engine let grow must be correctable in steps).
        if _leaves(current.balance, balance) or (
            earned is not None and _leaves(current.earned, earned)
        ):
            raise SupportRefused(
                Code.VALIDATION_ERROR,
                f"The {what} would take the balance outside ±10^15.",
                details=[{"path": "amount", "message": "the result is out of range"}],
            )
        changed = run.state.wallets.setdefault(wallet_key, WalletBalance())
        if not wallet.has_lots:
            changed.balance = balance
        elif amount > 0:
            earned_at, expires_at = dates
            lot = new_lot(wallet, source, amount, earned_at or received_at, at_once=True)
            if expires_at is not None:
                lot = msgspec.structs.replace(lot, expires_at=expires_at)
            add_available(changed, lot)
        elif amount < 0:
            spend(changed, -amount)
            changed.balance = balance
        if earned is not None:
            changed.earned = earned
        delta = [Delta(wallet_key, number(amount, wallet.precision))] if amount else []
        return run.state, _change(run, level_before, delta, settled)


def reverse(
    state: ProfileState,
    record: RedemptionRecord,
    program: Program,
    received_at: datetime,
    traits: Mapping[str, object],
) -> tuple[ProfileState, Change]:
    """Give a redemption's cost back, free its per-day slot (and its count toward the
    reward's per-user limit), and end a boost whose current grant came from it, from
    ``received_at`` on (awards it already boosted stay)."""
    with localcontext(DECIMALS):
        level_before = level_number(state, program)
        run = evaluation_of(state, program, received_at, traits)
        settled = settle(run.state, program, received_at, traits)
        cost = record.cost
        wallet = run.state.wallets.setdefault(cost.wallet, WalletBalance())
        parts = run.state.takes.pop(record.transaction_id, None)
        defined = program.wallet(cost.wallet)
        if defined is not None and defined.has_lots:
            now = profile_now(run.state, received_at)
            give_back(wallet, defined, parts, record, now, settled)
        else:
            wallet.balance += cost.amount
        wallet.spent = max(wallet.spent - cost.amount, Decimal(0))
        counter = run.state.redemptions.get(record.reward_key)
        if counter is not None:
            counter.count = max(counter.count - 1, 0)
            day = record.redeemed_at.date().isoformat()
            if counter.per_day.get(day, 0) > 1:
                counter.per_day[day] -= 1
            else:
                counter.per_day.pop(day, None)
        if record.effect.get("type") == "boost":
            _end_boost(run.state, program, str(record.effect.get("boost")), record, received_at)
        return run.state, _change(run, level_before, [cost], settled)


def give_back(
    w: WalletBalance,
    wallet: WalletDef,
    parts: list[TakenPart] | None,
    record: RedemptionRecord,
    now: datetime,
    settled: Settlement,
) -> None:
    """A redemption's cost back into the lots it was taken from (same dates, merged as
    usual, never raising ``earned``); a share whose lot has expired by now expires at once.
    A redemption whose parts are no longer kept gives its cost back as one lot earned at
    the redemption."""
    if parts is None:
        _, expires = lot_dates(wallet, record.redeemed_at)
        at = record.redeemed_at
        parts = [TakenPart(at, at, expires, record.cost.amount)]
    source = "refund:" + record.transaction_id
    for part in parts:
        if part.expires_at is not None and part.expires_at <= now:
            w.expired += part.amount
            w.deducted += part.amount
            remember_expiry(w, part.available_at, part.expires_at, part.amount)
            settled.add("expired", wallet.key, part.earned_at, part.expires_at, part.amount)
            continue
        add_available(w, Lot(
            -1, source, part.amount, part.earned_at, part.available_at, part.expires_at, False
        ))  # fmt: skip


def _end_boost(
    state: ProfileState, program: Program, key: str, record: RedemptionRecord, now: datetime
) -> None:
    boost = next((b for b in program.boosts if b.key == key), None)
    granted = state.boosts.get(key)
    if boost is None or boost.duration_seconds is None or granted is None:
        return
    from_this = granted.expires_at == after(record.redeemed_at, boost.duration_seconds)
    if from_this and granted.expires_at > now:
        state.boosts[key] = GrantedBoost(granted.granted_at, max(granted.granted_at, now))


def evaluation_of(
    state: ProfileState, program: Program, received_at: datetime, traits: Mapping[str, object]
) -> Evaluation:
    """A run on a copy of ``state`` for a write that is not an event (no event, no
    context: only the traits), at its receive time."""
    return Evaluation(
        state=copy_state(state),
        program=program,
        event="",
        occurred=received_at,
        scope={"context": {}, "traits": traits},
    )


def _leaves(before: Decimal, after: Decimal) -> bool:
    """Whether a change ends outside ±10^15 other than by coming back toward it."""
    return not within(after) and abs(after) >= abs(before)


def _change(run: Evaluation, level_before: int, delta: list[Delta], settled: Settlement) -> Change:
    level_after = level_perks_boosts(run)
    return Change(
        delta=delta,
        unlocked=settled.unlocked + run.unlocked,
        leveled_up=level_after > level_before,
        wallet_state=wallet_state(run.state, run.program),
        level=level_state(run.state, run.program),
        settled=settled,
    )
