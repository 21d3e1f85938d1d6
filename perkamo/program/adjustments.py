"""Support operations (docs/api.md (support operations)), pure like ``apply``: a balance adjustment
with a reason, and the reversal of a redemption.

Neither is an event: achievements and streaks ignore them, boosts never multiply them. Both
re-run the steps a balance change triggers (levels, perk thresholds, the boosts they grant;
docs/program.md steps 7–9).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from perkamo.errors import Code, PerkamoError, validation_failed
from perkamo.program.amounts import decimal_places, number, wallet_state
from perkamo.program.bounds import after, within
from perkamo.program.engine import level_perks_boosts
from perkamo.program.evaluation import DECIMALS, Evaluation, copy_state
from perkamo.program.levels import level_number, level_state
from perkamo.program.model import GrantedBoost, ProfileState, Program, WalletBalance
from perkamo.program.outcome import Delta, LevelState, Unlocked


class SupportRefused(PerkamoError):
    """The operation cannot apply to this profile; nothing changes, the id is not used."""


@dataclass(frozen=True, slots=True)
class Change:
    """What an adjustment or a reversal changed."""

    delta: list[Delta]
    unlocked: list[Unlocked]
    leveled_up: bool
    wallet_state: dict[str, Decimal]
    level: LevelState | None


@dataclass(frozen=True, slots=True)
class RedemptionRecord:
    """What reversing a past redemption needs to know of it."""

    reward_key: str
    cost: Delta
    effect: Mapping[str, object]
    redeemed_at: datetime


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
) -> tuple[ProfileState, Change]:
    """Add ``amount`` (negative: subtract) to a wallet's balance and, when it counts toward
    the level, to its earned total (never below zero). Raises SupportRefused:
    insufficient_balance, or validation_error (check_adjustment, or a result outside
    ±10^15)."""
    check_adjustment(program, wallet_key, amount)
    earned = amount if counts_toward_level else None
    return _move(state, wallet_key, amount, earned, program, received_at, traits, "adjustment")


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
) -> tuple[ProfileState, Change]:
    """A customer's balance brought from another system: ``amount`` added to the balance
    (0: none) and ``earned`` added to the earned total — never set — (None: ``amount``, as
    an adjustment that counts toward the level), with ``traits`` (already merged) in scope
    for perk conditions. Raises SupportRefused like ``adjust``."""
    check_opening(program, wallet_key, amount, earned)
    by = amount if earned is None else earned
    return _move(state, wallet_key, amount, by, program, received_at, traits, "opening balance")


def _move(
    state: ProfileState,
    wallet_key: str,
    amount: Decimal,
    earned_by: Decimal | None,
    program: Program,
    received_at: datetime,
    traits: Mapping[str, object],
    what: str,
) -> tuple[ProfileState, Change]:
    """``amount`` added to the balance, ``earned_by`` to the earned total (never below zero;
    None: untouched), then the level, perks and boosts re-run; ``what`` names it in a
    refusal."""
    wallet = program.wallet(wallet_key)
    assert wallet is not None
    with localcontext(DECIMALS):
        current = state.wallets.get(wallet_key) or WalletBalance()
        balance = current.balance + amount
        earned = None if earned_by is None else max(current.earned + earned_by, Decimal(0))
        if amount < 0 and balance < 0 and not wallet.allow_negative:
            raise SupportRefused(
                Code.INSUFFICIENT_BALANCE,
                f"Not enough {wallet.name}: the balance is "
                f"{number(current.balance, wallet.precision)}, the {what} is "
                f"{number(amount, wallet.precision)}.",
            )
        if not within(balance) or (earned is not None and not within(earned)):
            raise SupportRefused(
                Code.VALIDATION_ERROR,
                f"The {what} would take the balance outside ±10^15.",
                details=[{"path": "amount", "message": "the result is out of range"}],
            )
        run = _run(state, program, received_at, traits)
        level_before = level_number(state, program)
        changed = run.state.wallets.setdefault(wallet_key, WalletBalance())
        changed.balance = balance
        if earned is not None:
            changed.earned = earned
        delta = [Delta(wallet_key, number(amount, wallet.precision))] if amount else []
        return run.state, _change(run, level_before, delta)


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
        run = _run(state, program, received_at, traits)
        level_before = level_number(state, program)
        cost = record.cost
        wallet = run.state.wallets.setdefault(cost.wallet, WalletBalance())
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
        return run.state, _change(run, level_before, [cost])


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


def _run(
    state: ProfileState, program: Program, received_at: datetime, traits: Mapping[str, object]
) -> Evaluation:
    return Evaluation(
        state=copy_state(state),
        program=program,
        event="",
        occurred=received_at,
        scope={"context": {}, "traits": traits},
    )


def _change(run: Evaluation, level_before: int, delta: list[Delta]) -> Change:
    level_after = level_perks_boosts(run)
    return Change(
        delta=delta,
        unlocked=run.unlocked,
        leveled_up=level_after > level_before,
        wallet_state=wallet_state(run.state, run.program),
        level=level_state(run.state, run.program),
    )
