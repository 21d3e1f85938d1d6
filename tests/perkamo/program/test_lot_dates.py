"""A lot's dates, computed by hand (docs/program.md "Points that wait and points that expire"): days in the wallet's time zone,
across DST changes; ``end_of`` periods with K = 0 and K = 12."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from perkamo.program import compile_program
from perkamo.program.lotdates import lot_dates
from perkamo.program.model import WalletDef


def wallet(**settings: Any) -> WalletDef:
    body = {"wallets": [{"key": "points", "name": "Points", **settings}]}
    found = compile_program({"wallets": ("v1", body)}).wallet("points")
    assert found is not None
    return found


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


PRAGUE = "Europe/Prague"  # CET (+01:00), CEST (+02:00) from 2026-03-29 02:00 to 2026-10-25 03:00


@pytest.mark.parametrize(
    ("settings", "earned", "available", "expires"),
    [
        # 23:59:59 CET on 28 March is still the 28th: usable through the 29th, gone at the
        # start of the 30th — which is CEST already.
        ({"expiry": {"after_days": 1, "timezone": PRAGUE}}, "2026-03-28T22:59:59+00:00",
         "2026-03-28T22:59:59+00:00", "2026-03-30T00:00:00+02:00"),
        # One second later it is 00:00 CET on the 29th (a day of 23 hours).
        ({"expiry": {"after_days": 1, "timezone": PRAGUE}}, "2026-03-28T23:00:00+00:00",
         "2026-03-28T23:00:00+00:00", "2026-03-31T00:00:00+02:00"),
        # Pending for a day: available at the start of the next local day.
        ({"pending_days": 1, "expiry": {"after_days": 30, "timezone": PRAGUE}},
         "2026-03-28T22:30:00+00:00", "2026-03-29T00:00:00+01:00", "2026-04-28T00:00:00+02:00"),
        ({"pending_days": 1, "expiry": {"after_days": 30, "timezone": PRAGUE}},
         "2026-03-29T10:00:00+00:00", "2026-03-30T00:00:00+02:00", "2026-04-29T00:00:00+02:00"),
        # Back to CET on 25 October (a day of 25 hours).
        ({"expiry": {"after_days": 1, "timezone": PRAGUE}}, "2026-10-24T22:30:00+00:00",
         "2026-10-24T22:30:00+00:00", "2026-10-27T00:00:00+01:00"),
        ({"expiry": {"after_days": 1, "timezone": PRAGUE}}, "2026-10-24T21:59:00+00:00",
         "2026-10-24T21:59:00+00:00", "2026-10-26T00:00:00+01:00"),
        # The example of docs/program.md: any time on 2026-03-15, 365 days → gone 2027-03-16 00:00.
        ({"expiry": {"after_days": 365, "timezone": PRAGUE}}, "2026-03-15T22:59:00+00:00",
         "2026-03-15T22:59:00+00:00", "2027-03-16T00:00:00+01:00"),
        # Havana skips midnight on 8 March 2026 (00:00 → 01:00): that day starts at 01:00.
        ({"pending_days": 1, "expiry": {"after_days": 10, "timezone": "America/Havana"}},
         "2026-03-07T12:00:00-05:00", "2026-03-08T01:00:00-04:00", "2026-03-18T00:00:00-04:00"),
        # No time zone: UTC days.
        ({"pending_days": 14}, "2026-06-01T23:59:00+00:00", "2026-06-15T00:00:00+00:00", None),
    ],
)  # fmt: skip
def test_days_are_counted_in_the_wallets_time_zone(settings, earned, available, expires):
    got = lot_dates(wallet(**settings), utc(earned))
    assert got == (utc(available), None if expires is None else utc(expires))


@pytest.mark.parametrize(
    ("end_of", "k", "earned", "expires"),
    [
        ("month", 0, "2026-03-15T12:00:00+00:00", "2026-04-01T00:00:00+00:00"),
        ("month", 12, "2026-03-15T12:00:00+00:00", "2027-04-01T00:00:00+00:00"),
        ("month", 0, "2026-12-31T23:59:59+00:00", "2027-01-01T00:00:00+00:00"),
        ("month", 12, "2026-12-31T23:59:59+00:00", "2028-01-01T00:00:00+00:00"),
        ("quarter", 0, "2026-03-15T12:00:00+00:00", "2026-04-01T00:00:00+00:00"),
        ("quarter", 0, "2026-11-30T12:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        ("quarter", 12, "2026-03-15T12:00:00+00:00", "2029-04-01T00:00:00+00:00"),
        ("quarter", 12, "2026-04-01T00:00:00+00:00", "2029-07-01T00:00:00+00:00"),
        ("year", 0, "2026-03-15T12:00:00+00:00", "2027-01-01T00:00:00+00:00"),
        ("year", 12, "2026-03-15T12:00:00+00:00", "2039-01-01T00:00:00+00:00"),
        ("year", 0, "9999-06-01T00:00:00+00:00", None),  # beyond the calendar: never
    ],
)
def test_end_of_a_period_k_periods_later(end_of, k, earned, expires):
    w = wallet(expiry={"end_of": end_of, "after_periods": k})
    assert lot_dates(w, utc(earned))[1] == (None if expires is None else utc(expires))


def test_end_of_a_year_in_a_time_zone():
    """00:30 on 1 January 2027 in Prague is 2026 in UTC, but its lot is 2027's."""
    w = wallet(expiry={"end_of": "year", "after_periods": 0, "timezone": PRAGUE})
    assert lot_dates(w, utc("2026-12-31T23:30:00+00:00"))[1] == utc("2028-01-01T00:00:00+01:00")


@pytest.mark.parametrize(
    ("settings", "path"),
    [
        ({"pending_days": 366}, "pending_days"),
        ({"pending_days": -1}, "pending_days"),
        ({"expiry": {"after_days": 0}}, "expiry.after_days"),
        ({"expiry": {"after_days": 3651}}, "expiry.after_days"),
        ({"expiry": {"after_days": 14}, "pending_days": 14}, "pending_days"),
        ({"expiry": {"end_of": "month"}}, "expiry.after_periods"),
        ({"expiry": {"end_of": "month", "after_periods": 121}}, "expiry.after_periods"),
        ({"expiry": {"end_of": "week", "after_periods": 1}}, "expiry.end_of"),
        ({"expiry": {"after_days": 5, "end_of": "month", "after_periods": 1}}, "expiry"),
        ({"expiry": {}}, "expiry"),
        ({"expiry": {"after_days": 5, "after_periods": 1}}, "expiry.after_periods"),
        ({"expiry": {"after_days": 5, "timezone": "Mars/Olympus"}}, "expiry.timezone"),
        # A directory of the zone database, and a name too long for a file: OSError inside.
        ({"expiry": {"after_days": 5, "timezone": "America"}}, "expiry.timezone"),
        ({"expiry": {"after_days": 5, "timezone": "x" * 300}}, "expiry.timezone"),
        ({"expiry": {"after_days": "5"}}, "expiry.after_days"),
        ({"expiry": {"after_days": 5, "in": "days"}}, "expiry"),
    ],
)
def test_lot_settings_are_validated_like_every_module_field(settings, path):
    from perkamo.program import InvalidConfig

    body = {"wallets": [{"key": "points", "name": "Points", **settings}]}
    with pytest.raises(InvalidConfig) as caught:
        compile_program({"wallets": ("v1", body)})
    assert any(p.path.startswith(f"wallets.wallets[0].{path}") for p in caught.value.problems), (
        caught.value.problems
    )
