"""RFC 3339 timestamps: the strict parser the API accepts and the format it writes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z"
)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with zone into an aware UTC datetime (microseconds).

    Raises ValueError for anything else (no zone, leap second ``:60``, bad ranges).
    """
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError("expected an RFC 3339 timestamp with zone, e.g. 2026-06-01T10:00:00Z")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if second == 60:
        raise ValueError("leap seconds are not accepted")
    fraction = (m.group(7) or "").ljust(6, "0")[:6]
    if m.group(8):
        zone: timezone = UTC
    else:
        hours, minutes = int(m.group(10)), int(m.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError("invalid zone offset")
        offset = timedelta(hours=hours, minutes=minutes)
        zone = timezone(-offset if m.group(9) == "-" else offset)
    try:
        value = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=zone)
        return value.astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"invalid date or time: {exc}") from None
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before the calendar starts
        raise ValueError("the time lies outside years 0001-9999 in UTC") from None


def format_rfc3339(value: datetime) -> str:
    """``2026-06-01T10:00:00.000Z``: UTC, milliseconds (truncated), ``Z``."""
    value = value.astimezone(UTC)
    # %Y does not pad years before 1000 on glibc ("1-01-01"): RFC 3339 needs four digits.
    return (
        f"{value.year:04d}"
        + value.strftime("-%m-%dT%H:%M:%S.")
        + f"{value.microsecond // 1000:03d}Z"
    )
