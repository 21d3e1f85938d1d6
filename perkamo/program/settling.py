"""Time moves state (PROGRAM.md "Points that wait and points that expire"): before any write
is applied, the profile is *settled* at the write's *now* — lots whose ``available_at`` has
come are released (``earned`` grows by their earning part), lots whose ``expires_at`` has
come expire — in the order of their due times, the level and the perk triggers re-checked
after each due time with that time as ``unlocked_at``. Pure: *now* is passed in (a write's
receive time, never earlier than the profile's previous *now*), so replay settles exactly
as live writes did.

A wallet's settings changing is settled here too: a wallet given ``expiry`` or
``pending_days`` turns its positive balance into one lot earned now (available at once); a
wallet that lost both turns its lots into plain balance (pending lots become available).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import localcontext
from typing import Any

from perkamo.program.evaluation import DECIMALS, Evaluation
from perkamo.program.levels import level_number
from perkamo.program.lots import (
    ZERO,
    available_total,
    new_lot,
    pay_debt,
    place,
    remember_expiry,
)
from perkamo.program.model import Lot, ProfileState, Program, WalletBalance
from perkamo.program.outcome import Settlement
from perkamo.program.perks import level_perks_boosts


def keeps_lots(state: ProfileState, program: Program) -> bool:
    """Whether there is anything to settle: a wallet with lots configured, or lots kept."""
    return bool(program.lot_wallets) or any(w.lots for w in state.wallets.values())


def profile_now(state: ProfileState, now: datetime) -> datetime:
    """A profile's *now* never goes backwards (members' clocks differ)."""
    settled = state.settled_at
    return now if settled is None or settled <= now else settled


def settle(
    state: ProfileState,
    program: Program,
    now: datetime,
    traits: Mapping[str, Any],
    into: Settlement | None = None,
) -> Settlement:
    """Settle ``state`` (changed in place) at ``now``; returns what it changed (added to
    ``into`` when given). Costs nothing for a program and a state without lots."""
    report = into if into is not None else Settlement()
    if not keeps_lots(state, program):
        return report
    with localcontext(DECIMALS):
        now = profile_now(state, now)
        state.settled_at = now
        _settings_changed(state, program, now, report)
        instants = sorted(_due(state, program, now))
        if not instants:
            return report
        run = Evaluation(
            state=state, program=program, event="", occurred=now,
            scope={"context": {}, "traits": traits},
        )  # fmt: skip
        level_before = level_number(state, program)
        for moment in instants:
            for wallet in program.lot_wallets:
                balance = state.wallets.get(wallet.key)
                if balance is not None and balance.lots:
                    _settle_wallet(wallet.key, balance, moment, report)
            run.occurred = moment  # unlocks take the due time, not the time it was noticed
            level_perks_boosts(run)
        level_after = level_number(state, program)
        if level_after > level_before:
            report.leveled_up = True
            report.level_from = report.level_from or level_before
        report.unlocked.extend(run.unlocked)
        return report


def _due(state: ProfileState, program: Program, now: datetime) -> set[datetime]:
    """The due times up to ``now``: pending lots' availability, lots' expiry."""
    instants: set[datetime] = set()
    for wallet in program.lot_wallets:
        balance = state.wallets.get(wallet.key)
        if balance is None:
            continue
        for lot in balance.lots:
            if lot.pending and lot.available_at <= now and _releases(lot):
                instants.add(lot.available_at)
            if lot.expires_at is not None and lot.expires_at <= now:
                instants.add(lot.expires_at)
    return instants


def _releases(lot: Lot) -> bool:
    """A lot expiring before (or when) it would become available is never released."""
    return lot.expires_at is None or lot.available_at < lot.expires_at


def _settle_wallet(key: str, w: WalletBalance, moment: datetime, report: Settlement) -> None:
    for lot in [lot for lot in w.lots if lot.pending and lot.available_at <= moment]:
        if _releases(lot):
            release(key, w, lot, report)
    for lot in [lot for lot in w.lots if lot.expires_at is not None and lot.expires_at <= moment]:
        _expire(key, w, lot, report)


def release(key: str, w: WalletBalance, lot: Lot, report: Settlement) -> None:
    """A pending lot becomes available: its earning part raises ``earned``, its remainder
    joins the balance (paying a debt first)."""
    w.lots.remove(lot)
    amount = lot.remaining
    w.pending -= amount
    w.earned += lot.earning
    lot.pending = False
    lot.remaining -= pay_debt(w, amount)
    w.balance += lot.remaining
    if lot.remaining > 0:
        place(w, lot)  # merges with an available lot expiring at the same time
    report.add("released", key, lot.earned_at, lot.expires_at, amount)


def _expire(key: str, w: WalletBalance, lot: Lot, report: Settlement) -> None:
    """A lot's remainder leaves the wallet. A lot that never became available is released
    and expires at once (the balance is unchanged; ``earned`` never counted it)."""
    w.lots.remove(lot)
    amount = lot.remaining
    if lot.pending:
        w.pending -= amount
        report.add("released", key, lot.earned_at, lot.expires_at, amount)
    else:
        w.balance -= amount
    w.expired += amount
    w.deducted += amount
    remember_expiry(w, lot, amount)
    report.add("expired", key, lot.earned_at, lot.expires_at, amount)


def _settings_changed(
    state: ProfileState, program: Program, now: datetime, report: Settlement
) -> None:
    for key, w in state.wallets.items():
        wallet = program.wallet(key)
        if wallet is None:
            continue
        if not wallet.has_lots:
            if w.lots:
                _unlot(key, w, report)
            continue
        unlotted = w.balance - available_total(w) if w.balance > 0 else ZERO
        if unlotted > 0:  # the wallet was given lots: its balance is one lot, earned now
            place(w, new_lot(wallet, "activation", unlotted, now, earning=ZERO, at_once=True))
            report.changed = True


def _unlot(key: str, w: WalletBalance, report: Settlement) -> None:
    """The wallet lost its expiry and pending days: its lots are plain balance now."""
    for lot in [lot for lot in w.lots if lot.pending]:
        release(key, w, lot, report)
    w.lots, w.expiries, w.next_lot, w.pending = [], [], 0, ZERO
    report.changed = True


def next_due(state: ProfileState, program: Program) -> datetime | None:
    """When settling will next change this profile (the sweeper's index), if ever."""
    soonest: datetime | None = None
    for wallet in program.lot_wallets:
        balance = state.wallets.get(wallet.key)
        if balance is None:
            continue
        for lot in balance.lots:
            due = lot.expires_at
            if lot.pending and _releases(lot):
                due = lot.available_at
            if due is not None and (soonest is None or due < soonest):
                soonest = due
    return soonest
