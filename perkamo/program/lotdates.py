"""A lot's dates (docs/program.md "Points that wait and points that expire"): when points earned at
an instant become available and when they expire, counted in days of the wallet's time zone.

Lots are day-granular so that a profile keeps at most one lot per (availability day, expiry
day): ``available_at`` is the start (00:00 local) of the day ``pending_days`` after the local
date the points were earned (the instant itself when ``pending_days`` is 0); ``expires_at``
is the start of the day after the local date ``after_days`` after it, or the end of the
``end_of`` period ``after_periods`` periods after the one containing it. Dates beyond the
calendar saturate (a lot expiring after 9999 never expires).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from perkamo.program.bounds import LATEST, local_date
from perkamo.program.model import ExpiryDef, WalletDef

_PERIOD_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """00:00 of ``day`` in ``zone``, as a UTC instant. (A midnight a DST change skips is
    read with the offset before the change: the day starts at the first instant it has.)"""
    try:
        return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    except OverflowError:
        return LATEST


def days_after(day: date, days: int) -> date | None:
    """``day`` plus ``days``; None beyond the calendar."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return None


DAYS_KEPT = 4096  # per wallet: the dates of that many earning days are kept computed


def _day_dates(wallet: WalletDef, earned: date) -> tuple[datetime | None, datetime | None]:
    """(the start of the day points earned on ``earned`` become available, or None when
    they are available at once; when they expire, or None) — the same for every point
    earned that day, so computed once per wallet and day (kept by the wallet's compiled
    definition: a dictionary lookup by date, where a cache keyed by the definition would
    hash all its fields every time)."""
    cache = wallet.day_dates
    found = cache.get(earned)
    if found is None:
        if len(cache) >= DAYS_KEPT:
            cache.clear()
        found = cache[earned] = _compute(wallet, earned)
    return found


def _compute(wallet: WalletDef, earned: date) -> tuple[datetime | None, datetime | None]:
    available = None
    if wallet.pending_days:
        day = days_after(earned, wallet.pending_days)
        available = LATEST if day is None else day_start(day, wallet.zone)
    expires = None
    if wallet.expiry is not None:
        end = _expiry_day(wallet.expiry, earned)
        expires = None if end is None else day_start(end, wallet.zone)
    return available, expires


def _expiry_day(expiry: ExpiryDef, earned: date) -> date | None:
    """The local date at whose start the points expire."""
    if expiry.after_days is not None:
        return days_after(earned, expiry.after_days + 1)
    assert expiry.end_of is not None
    months = _PERIOD_MONTHS[expiry.end_of]
    # Periods counted from year 0: the one containing ``earned``, then K more; the points
    # expire when the period after those begins.
    index = (earned.year * 12 + earned.month - 1) // months
    first_month = (index + expiry.after_periods + 1) * months
    year, month = divmod(first_month, 12)
    return date(year, month + 1, 1) if year <= 9999 else None


def lot_dates(wallet: WalletDef, earned_at: datetime) -> tuple[datetime, datetime | None]:
    """(available_at, expires_at) of points earned at ``earned_at`` (expires_at None:
    never — no expiry, or a date beyond the calendar)."""
    if wallet.expiry is None and not wallet.pending_days:
        return earned_at, None
    available, expires = _day_dates(wallet, local_date(earned_at, wallet.zone))
    return available or earned_at, expires
