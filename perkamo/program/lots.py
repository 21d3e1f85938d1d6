"""A wallet's lots (docs/program.md "Points that wait and points that expire"): created, merged,
spent and taken back. Pure bookkeeping on one ``WalletBalance``; settling (release and
expiry, in time) is ``settling.py``.

Invariants, for a wallet with lots: ``balance`` is the available lots' remainders when it is
not negative (a negative balance is a debt, and then no available lot has a remainder);
``pending`` is the pending lots' remainders; a lot whose remainder reaches 0 is dropped;
``due`` is the soonest due time of its lots (a release or an expiry), so that nothing needs
to look at the lots of a wallet with nothing due.

Lots are immutable values, replaced when they change: a state can then be copied without
copying its lots (``evaluation.copy_state``) — the lots are most of a large profile's state,
and every write copies it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import msgspec

from perkamo.program.lotdates import lot_dates
from perkamo.program.model import ExpiredLot, Lot, TakenPart, WalletBalance, WalletDef

MAX_LOTS = 1000  # per wallet; beyond it amounts merge (``place``)
EXPIRIES_KEPT = 50  # expired lots remembered for returns (``expired_share``)
ZERO = Decimal(0)
_replace = msgspec.structs.replace


def spending_order(lot: Lot) -> tuple[bool, datetime, datetime, int]:
    """Soonest-expiring first (never-expiring last), then oldest earned, then created."""
    expires = lot.expires_at
    return (expires is None, expires or lot.earned_at, lot.earned_at, lot.id)


def releases(lot: Lot) -> bool:
    """A lot expiring before (or when) it would become available is never released."""
    return lot.expires_at is None or lot.available_at < lot.expires_at


def due_of(lot: Lot) -> datetime | None:
    """When settling next changes the lot: its release while pending, else its expiry."""
    return lot.available_at if lot.pending and releases(lot) else lot.expires_at


def refresh_due(w: WalletBalance) -> None:
    """``due`` from the lots (after lots were removed or changed)."""
    dues = [d for lot in w.lots if (d := due_of(lot)) is not None]
    w.due = min(dues) if dues else None


def _latest_expiry(lot: Lot) -> tuple[bool, datetime]:
    return (lot.expires_at is None, lot.expires_at or lot.earned_at)


def place(w: WalletBalance, new: Lot) -> None:
    """Add ``new`` to the wallet's lots: merged into a lot with the same ``expires_at`` when
    both are available, or both pending with the same ``available_at``; past MAX_LOTS,
    merged into the available lot expiring last (a pending amount: the pending lot
    available last), so the customer never loses by the bound. (Its remainder counts in
    ``balance``/``pending`` by the caller.) The newest lots are looked at first: points
    earned together mostly land in the lot made last."""
    w.lotted = True
    lots = w.lots
    for index in range(len(lots) - 1, -1, -1):
        lot = lots[index]
        if (
            lot.pending == new.pending
            and lot.expires_at == new.expires_at
            and (not new.pending or lot.available_at == new.available_at)
        ):
            lots[index] = _merged(lot, new)
            return
    if len(lots) >= MAX_LOTS:
        alike = [i for i, lot in enumerate(lots) if lot.pending == new.pending] or range(len(lots))
        if new.pending:
            index = max(alike, key=lambda i: lots[i].available_at)
        else:
            index = max(alike, key=lambda i: _latest_expiry(lots[i]))
        lots[index] = _merged(lots[index], new)
        return
    if new.id < 0:  # a new lot (a released one keeps its place in the creation order)
        new = _replace(new, id=w.next_lot)
        w.next_lot += 1
    lots.append(new)
    due = due_of(new)
    if due is not None and (w.due is None or due < w.due):
        w.due = due


def _merged(into: Lot, new: Lot) -> Lot:
    return _replace(into, remaining=into.remaining + new.remaining)


def new_lot(
    wallet: WalletDef, source: str, amount: Decimal, earned_at: datetime, *, at_once: bool
) -> Lot:
    """A lot of points earned at ``earned_at`` (not placed yet). ``at_once``: available at
    once (adjustments, refunds), never pending."""
    available, expires = lot_dates(wallet, earned_at)
    if at_once:
        available = earned_at
    return Lot(-1, source, amount, earned_at, available, expires, not at_once)


def pay_debt(w: WalletBalance, amount: Decimal) -> Decimal:
    """What of a positive ``amount`` pays the wallet's debt (its negative balance) first;
    the balance grows by it."""
    paid = min(amount, -w.balance) if w.balance < 0 else ZERO
    w.balance += paid
    return paid


def add_available(w: WalletBalance, lot: Lot) -> None:
    """A positive amount available at once: it pays a debt first, the rest is a lot (the
    balance grows by the whole amount)."""
    paid = pay_debt(w, lot.remaining)
    rest = lot.remaining - paid
    w.balance += rest
    if rest > 0:
        place(w, _replace(lot, remaining=rest))


def add_pending(w: WalletBalance, lot: Lot) -> None:
    w.pending += lot.remaining
    place(w, lot)


def take(w: WalletBalance, index: int, amount: Decimal) -> Lot:
    """``amount`` out of the lot at ``index`` (dropped when empty); returns the lot as it
    was. The balance and ``pending`` are the caller's."""
    lot = w.lots[index]
    if amount >= lot.remaining:
        del w.lots[index]
        refresh_due(w)
    else:
        w.lots[index] = _replace(lot, remaining=lot.remaining - amount)
    return lot


def spend(w: WalletBalance, amount: Decimal) -> list[TakenPart]:
    """Take up to ``amount`` from the available lots in spending order (the balance is the
    caller's); returns what was taken from each lot."""
    parts: list[TakenPart] = []
    left = amount
    order = sorted((i for i, lot in enumerate(w.lots) if not lot.pending),
                   key=lambda i: spending_order(w.lots[i]))  # fmt: skip
    emptied = []
    for index in order:
        if left <= 0:
            break
        lot = w.lots[index]
        taken = min(left, lot.remaining)
        left -= taken
        parts.append(TakenPart(lot.earned_at, lot.available_at, lot.expires_at, taken))
        if taken == lot.remaining:
            emptied.append(index)
        else:
            w.lots[index] = _replace(lot, remaining=lot.remaining - taken)
    if emptied:
        gone = set(emptied)
        w.lots = [lot for i, lot in enumerate(w.lots) if i not in gone]
        refresh_due(w)
    return parts


def available_total(w: WalletBalance) -> Decimal:
    return sum((lot.remaining for lot in w.lots if not lot.pending), ZERO)


def remember_expiry(
    w: WalletBalance, available: datetime, expires: datetime, amount: Decimal
) -> None:
    w.expiries.append(ExpiredLot(available, expires, amount))
    if len(w.expiries) > EXPIRIES_KEPT:
        w.expiries = w.expiries[len(w.expiries) - EXPIRIES_KEPT :]


def event_lot(
    w: WalletBalance, wallet: WalletDef, earned_at: datetime, now: datetime
) -> tuple[int | None, datetime, datetime | None]:
    """Where an event's points earned at ``earned_at`` went, found by the dates the
    wallet's settings give them: a pending lot with the same dates while they wait, else
    the available lot with the same expiry first in spending order. Returns (its index, or
    None when it is gone; available_at; expires_at)."""
    available, expires = lot_dates(wallet, earned_at)
    lots = w.lots
    if wallet.pending_days > 0 and available > now:
        for index, lot in enumerate(lots):
            if lot.pending and lot.available_at == available and lot.expires_at == expires:
                return index, available, expires
        return None, available, expires
    alike = [i for i, lot in enumerate(lots) if not lot.pending and lot.expires_at == expires]
    found = min(alike, key=lambda i: spending_order(lots[i])) if alike else None
    return found, available, expires


def expired_share(w: WalletBalance, expires: datetime, most: Decimal) -> Decimal:
    """What of ``most`` points that went into a lot expiring at ``expires`` had expired
    (each expired point is counted for one return only)."""
    share = ZERO
    kept = []
    for record in w.expiries:
        if share < most and record.expires_at == expires:
            taken = min(most - share, record.amount)
            share += taken
            record = _replace(record, amount=record.amount - taken)
        if record.amount > 0:
            kept.append(record)
    w.expiries = kept
    return share
