"""docs/program.md "Bounds": the ranges that keep every computation exact and every evaluation
total (no input may make the engine raise).

Every amount, award, cost, threshold and balance lies within ±10^15: with at most 6 decimals
that is 21 significant digits, far inside the 34-digit decimal context. A formula input or
intermediate result at or beyond 10^34 has left that context (it can no longer be held
exactly), so the award is skipped with ``formula_input``. Time arithmetic saturates at the
ends of the calendar instead of overflowing (events may carry any RFC 3339 year, 0001-9999).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

LIMIT = Decimal(10) ** 15
CONTEXT_LIMIT = Decimal(10) ** 34
LIMIT_TEXT = "must lie within ±10^15"

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def within(value: Decimal | int) -> bool:
    return -LIMIT <= value <= LIMIT


def after(moment: datetime, seconds: int | float) -> datetime:
    """``moment`` plus ``seconds``, saturating at the ends of the calendar."""
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return LATEST if seconds > 0 else EARLIEST


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    """The date at ``moment`` in ``zone`` (the UTC date where the zone's would fall outside
    the calendar, on its first or last day)."""
    try:
        return moment.astimezone(zone).date()
    except OverflowError:
        return moment.astimezone(UTC).date()


def days_before(day: date, days: int) -> date:
    try:
        return day - timedelta(days=days)
    except OverflowError:
        return date.min
