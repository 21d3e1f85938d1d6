"""A wallet's lots (PROGRAM.md "Points that wait and points that expire"): created, merged,
spent and taken back. Pure bookkeeping on one ``WalletBalance``; settling (release and
expiry, in time) is ``settling.py``.

Invariants, for a wallet with lots: ``balance`` is the available lots' remainders when it is
not negative (a negative balance is a debt, and then no available lot has a remainder);
``pending`` is the pending lots' remainders; a lot whose remainder reaches 0 is dropped.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from perkamo.program.lotdates import lot_dates
from perkamo.program.model import ExpiredLot, Lot, TakenPart, WalletBalance, WalletDef

MAX_LOTS = 1000  # per wallet; beyond it amounts merge (``place``)
EXPIRIES_KEPT = 50  # expired lots remembered for returns (``expired_share``)
ZERO = Decimal(0)


def spending_order(lot: Lot) -> tuple[bool, datetime, datetime, int]:
    """Soonest-expiring first (never-expiring last), then oldest earned, then created."""
    expires = lot.expires_at
    return (expires is None, expires or lot.earned_at, lot.earned_at, lot.id)


def _latest_expiry(lot: Lot) -> tuple[bool, datetime]:
    return (lot.expires_at is None, lot.expires_at or lot.earned_at)


def place(w: WalletBalance, new: Lot) -> Lot:
    """Add ``new`` to the wallet's lots: merged into a lot with the same ``expires_at`` when
    both are available, or both pending with the same ``available_at``; past MAX_LOTS,
    merged into the available lot expiring last (a pending amount: the pending lot
    available last), so the customer never loses by the bound. Returns the lot it is in
    (its remainder counts in ``balance``/``pending`` by the caller)."""
    for lot in w.lots:
        if (
            lot.pending == new.pending
            and lot.expires_at == new.expires_at
            and (not new.pending or lot.available_at == new.available_at)
        ):
            _merge(lot, new)
            return lot
    if len(w.lots) >= MAX_LOTS:
        alike = [lot for lot in w.lots if lot.pending == new.pending]
        if new.pending:
            target = max(alike or w.lots, key=lambda lot: lot.available_at)
        else:
            target = max(alike or w.lots, key=_latest_expiry)
        _merge(target, new)
        return target
    if new.id < 0:  # a new lot (a released one keeps its place in the creation order)
        new.id = w.next_lot
        w.next_lot += 1
    w.lots.append(new)
    return new


def _merge(into: Lot, new: Lot) -> None:
    into.amount += new.amount
    into.remaining += new.remaining
    into.earning += new.earning


def new_lot(
    wallet: WalletDef,
    source: str,
    amount: Decimal,
    earned_at: datetime,
    *,
    earning: Decimal,
    at_once: bool,
) -> Lot:
    """A lot of points earned at ``earned_at`` (not placed yet). ``at_once``: available at
    once (adjustments, refunds), never pending."""
    available, expires = lot_dates(wallet, earned_at)
    if at_once:
        available = earned_at
    return Lot(-1, source, amount, amount, earned_at, available, expires, earning, not at_once)


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
        lot.amount = lot.remaining = rest
        lot.earning = min(lot.earning, rest)
        place(w, lot)


def add_pending(w: WalletBalance, lot: Lot) -> None:
    w.pending += lot.remaining
    place(w, lot)


def spend(w: WalletBalance, amount: Decimal) -> list[TakenPart]:
    """Take up to ``amount`` from the available lots in spending order (the balance is the
    caller's); returns what was taken from each lot."""
    parts: list[TakenPart] = []
    left = amount
    for lot in sorted((lot for lot in w.lots if not lot.pending), key=spending_order):
        if left <= 0:
            break
        taken = min(left, lot.remaining)
        lot.remaining -= taken
        left -= taken
        parts.append(TakenPart(lot.earned_at, lot.available_at, lot.expires_at, taken))
    drop_empty(w)
    return parts


def drop_empty(w: WalletBalance) -> None:
    if any(lot.remaining <= 0 for lot in w.lots):
        w.lots = [lot for lot in w.lots if lot.remaining > 0]


def available_total(w: WalletBalance) -> Decimal:
    return sum((lot.remaining for lot in w.lots if not lot.pending), ZERO)


def remember_expiry(w: WalletBalance, lot: Lot, amount: Decimal) -> None:
    assert lot.expires_at is not None
    w.expiries.append(ExpiredLot(lot.available_at, lot.expires_at, amount))
    if len(w.expiries) > EXPIRIES_KEPT:
        del w.expiries[: len(w.expiries) - EXPIRIES_KEPT]


def event_lot(
    w: WalletBalance, wallet: WalletDef, earned_at: datetime, now: datetime
) -> tuple[Lot | None, datetime, datetime | None]:
    """The lot an event's points earned at ``earned_at`` went into, found by the dates the
    wallet's settings give them: a pending lot with the same dates while they wait, else
    the available lot with the same expiry first in spending order. Returns (the lot or
    None when it is gone, available_at, expires_at)."""
    available, expires = lot_dates(wallet, earned_at)
    if wallet.pending_days > 0 and available > now:
        for lot in w.lots:
            if lot.pending and lot.available_at == available and lot.expires_at == expires:
                return lot, available, expires
        return None, available, expires
    alike = [lot for lot in w.lots if not lot.pending and lot.expires_at == expires]
    return (min(alike, key=spending_order) if alike else None), available, expires


def expired_share(w: WalletBalance, expires: datetime, most: Decimal) -> Decimal:
    """What of ``most`` points that went into a lot expiring at ``expires`` had expired
    (each expired point is counted for one return only)."""
    share = ZERO
    for record in w.expiries:
        if share >= most:
            break
        if record.expires_at == expires:
            taken = min(most - share, record.amount)
            record.amount -= taken
            share += taken
    w.expiries = [r for r in w.expiries if r.amount > 0]
    return share
