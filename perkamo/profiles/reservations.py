"""The usage one unit reserves while it is staged (docs/api.md: reserve → apply → commit, or
release). Limits are exact because a reservation counts against them at once; the unit's
commit adds exactly what it holds to the meters, in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from perkamo.profiles.usage import UsageLedger, period_of
from storage.group_commit import UsageKey


class Reservations:
    def __init__(self, ledger: UsageLedger, space_id: int) -> None:
        self._ledger = ledger
        self._space_id = space_id
        self._held: dict[tuple[date, str], int] = {}
        self._limits: dict[tuple[date, str], int] = {}

    def reserve(self, moment: datetime, meter: str, limits: Mapping[str, int]) -> bool:
        """One more ``meter`` in the period of ``moment``; False when over the limit."""
        period = period_of(moment)
        if not self._ledger.reserve(self._space_id, period, meter, 1, limits):
            return False
        self._held[(period, meter)] = self._held.get((period, meter), 0) + 1
        if (limit := limits.get(meter)) is not None:
            self._limits[(period, meter)] = int(limit)
        return True

    def release(self, moment: datetime, meter: str) -> None:
        """Give back one reservation (the message was refused after reserving)."""
        key = (period_of(moment), meter)
        self._held[key] -= 1
        if not self._held[key]:
            del self._held[key]
        self._ledger.settle(self._space_id, key[0], meter, 1, 0)

    def increments(self) -> dict[UsageKey, int]:
        """What the unit's commit adds to the meters."""
        return {(self._space_id, period, meter): n for (period, meter), n in self._held.items()}

    def limits(self) -> dict[UsageKey, int]:
        """The limits of the meters the unit adds to (PostgreSQL holds the commit to them)."""
        return {
            (self._space_id, period, meter): self._limits[(period, meter)]
            for (period, meter) in self._held
            if (period, meter) in self._limits
        }

    def settle(self, committed: bool) -> None:
        """The commit's verdict: reservations become usage, or are released."""
        for (period, meter), n in self._held.items():
            self._ledger.settle(self._space_id, period, meter, n, n if committed else 0)
        self._held.clear()
