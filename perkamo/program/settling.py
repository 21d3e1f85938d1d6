"""Time moves state (docs/program.md "Points that wait and points that expire"): before any write
is applied, the profile is *settled* at the write's *now* — lots whose ``available_at`` has
come are released (``earned`` grows by their remainder), lots whose ``expires_at`` has
come expire — in the order of their due times, the level and the perk triggers re-checked
after each due time with that time as ``unlocked_at``. Pure: *now* is passed in (a write's
receive time, never earlier than the profile's previous *now*), so replay settles exactly
as live writes did. A wallet whose ``due`` has not come costs a comparison.

A wallet's settings changing is settled here too: a wallet given ``expiry`` or
``pending_days`` turns its positive balance into one lot earned now (available at once); a
wallet that lost both turns its lots into plain balance (pending lots become available).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import localcontext

import msgspec

from perkamo.program.evaluation import DECIMALS, Evaluation
from perkamo.program.levels import level_number
from perkamo.program.lots import (
    ZERO,
    new_lot,
    pay_debt,
    place,
    refresh_due,
    releases,
    remember_expiry,
)
from perkamo.program.model import Lot, ProfileState, Program, WalletBalance
from perkamo.program.outcome import Settlement
from perkamo.program.perks import level_perks_boosts


def keeps_lots(state: ProfileState, program: Program) -> bool:
    """Whether there is anything to settle: a wallet with lots configured, or lots kept.
    (Every write of every profile asks: a loop, cheaper than ``any`` over a generator.)"""
    if program.lot_wallets:
        return True
    for w in state.wallets.values():
        if w.lotted:
            return True
    return False


def profile_now(state: ProfileState, now: datetime) -> datetime:
    """A profile's *now* never goes backwards (members' clocks differ)."""
    settled = state.settled_at
    return now if settled is None or settled <= now else settled


def settle(
    state: ProfileState,
    program: Program,
    now: datetime,
    traits: Mapping[str, object],
    into: Settlement | None = None,
) -> Settlement:
    """Settle ``state`` (changed in place) at ``now``; returns what it changed (added to
    ``into`` when given). Costs nothing for a program and a state without lots, and a few
    comparisons for one with nothing due (every write asks)."""
    report = into if into is not None else Settlement()
    if not keeps_lots(state, program):
        return report
    now = profile_now(state, now)
    state.settled_at = now
    due = [
        (wallet.key, w)
        for wallet in program.lot_wallets
        if (w := state.wallets.get(wallet.key)) is not None and w.due is not None
        and w.due <= now
    ]  # fmt: skip
    if not due and not _settings_changed(state, program):
        return report
    with localcontext(DECIMALS):  # (only when there is work: entering it costs 2 µs)
        _apply_settings(state, program, now, report)
        if due:
            _settle_due(state, program, now, traits, due, report)
    return report


def _settle_due(
    state: ProfileState,
    program: Program,
    now: datetime,
    traits: Mapping[str, object],
    due: list[tuple[str, WalletBalance]],
    report: Settlement,
) -> None:
    run = Evaluation(
        state=state, program=program, event="", occurred=now,
        scope={"context": {}, "traits": traits},
    )  # fmt: skip
    level_before = level_number(state, program)
    for moment in sorted({t for _, w in due for t in _instants(w, now)}):
        for key, w in due:
            _settle_wallet(key, w, moment, report)
        run.occurred = moment  # unlocks take the due time, not the time it was noticed
        level_perks_boosts(run)
    level_after = level_number(state, program)
    if level_after > level_before:
        report.leveled_up = True
        report.level_from = report.level_from or level_before
    report.unlocked.extend(run.unlocked)


def _instants(w: WalletBalance, now: datetime) -> set[datetime]:
    """A wallet's due times up to ``now``: pending lots' availability, lots' expiry."""
    found = set()
    for lot in w.lots:
        if lot.pending and lot.available_at <= now and releases(lot):
            found.add(lot.available_at)
        if lot.expires_at is not None and lot.expires_at <= now:
            found.add(lot.expires_at)
    return found


def _settle_wallet(key: str, w: WalletBalance, moment: datetime, report: Settlement) -> None:
    if w.due is None or w.due > moment:
        return
    for lot in [lot for lot in w.lots if lot.pending and lot.available_at <= moment]:
        if releases(lot):
            release(key, w, lot, report)
    for lot in [lot for lot in w.lots if lot.expires_at is not None and lot.expires_at <= moment]:
        _expire(key, w, lot, report)
    refresh_due(w)


def release(key: str, w: WalletBalance, lot: Lot, report: Settlement) -> None:
    """A pending lot becomes available: its remainder (its earning part, lots.py) raises
    ``earned`` and joins the balance (paying a debt first)."""
    w.lots.remove(lot)
    amount = lot.remaining
    w.pending -= amount
    w.earned += amount
    rest = amount - pay_debt(w, amount)
    w.balance += rest
    if rest > 0:  # merges with an available lot expiring at the same time
        place(w, msgspec.structs.replace(lot, pending=False, remaining=rest))
    report.add("released", key, lot.earned_at, lot.expires_at, amount)


def _expire(key: str, w: WalletBalance, lot: Lot, report: Settlement) -> None:
    """A lot's remainder leaves the wallet. A lot that never became available is released
    and expires at once (the balance is unchanged; ``earned`` never counted it)."""
    assert lot.expires_at is not None
    w.lots.remove(lot)
    amount = lot.remaining
    if lot.pending:
        w.pending -= amount
        report.add("released", key, lot.earned_at, lot.expires_at, amount)
    else:
        w.balance -= amount
    w.expired += amount
    w.deducted += amount
    remember_expiry(w, lot.available_at, lot.expires_at, amount)
    report.add("expired", key, lot.earned_at, lot.expires_at, amount)


def _settings_changed(state: ProfileState, program: Program) -> bool:
    """Whether a wallet's settings changed since its lots were kept (or not)."""
    for key, w in state.wallets.items():
        wallet = program.wallet(key)
        if wallet is not None and wallet.has_lots != w.lotted:
            return True
    return False


def _apply_settings(
    state: ProfileState, program: Program, now: datetime, report: Settlement
) -> None:
    for key, w in state.wallets.items():
        wallet = program.wallet(key)
        if wallet is None or wallet.has_lots == w.lotted:
            continue
        if w.lotted:
            _unlot(key, w, report)
            continue
        w.lotted = True  # the wallet was given lots: its balance is one lot, earned now
        if w.balance > 0:
            place(w, new_lot(wallet, "activation", w.balance, now, at_once=True))
            report.changed = True


def _unlot(key: str, w: WalletBalance, report: Settlement) -> None:
    """The wallet lost its expiry and pending days: its lots are plain balance now."""
    for lot in [lot for lot in w.lots if lot.pending]:
        release(key, w, lot, report)
    w.lots, w.expiries, w.next_lot, w.pending, w.due = [], [], 0, ZERO, None
    w.lotted = False
    report.changed = True


def due_now(state: ProfileState, program: Program, now: datetime) -> bool:
    """Whether a lot is due at ``now`` (one a write just made, backdated)."""
    due = next_due(state, program)
    return due is not None and due <= profile_now(state, now)


def next_due(state: ProfileState, program: Program) -> datetime | None:
    """When settling will next change this profile (the sweeper's index), if ever."""
    soonest: datetime | None = None
    for wallet in program.lot_wallets:
        w = state.wallets.get(wallet.key)
        if w is not None and w.due is not None and (soonest is None or w.due < soonest):
            soonest = w.due
    return soonest
