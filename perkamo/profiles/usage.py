"""Usage meters per calendar month (UTC) and their limits.

Meters are counted in the same transaction as the work they count (the group commit adds
each unit's increments). Limits are enforced exactly within one process by reserving before
applying: reserve → apply → commit (the reservation becomes usage) or release on failure.
``api_requests`` is the one meter that may lag: requests are counted in memory and written
with a flush at most a second later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import trio

from perkamo.errors import Code, PerkamoError
from storage import Database, Status, Unit, Verdict
from storage.cache import SharedCache
from storage.profiles import usage_counters

METERS = ("events", "api_requests", "profiles", "redemptions")
# Counted like api_requests but not limits: what share of the mutating requests were signed.
REQUEST_METERS = ("api_requests", "mutating_requests", "signed_requests")
LIMIT_NAMES = METERS  # per-Space limits share the meters' names


def period_of(moment: datetime) -> date:
    """The first day (UTC) of the month ``moment`` falls in. Every message asks this several
    times for the same receive time: the last answer is kept."""
    global _last_period
    if _last_period[0] is moment:
        return _last_period[1]
    period = moment.astimezone(UTC).date().replace(day=1)
    _last_period = (moment, period)
    return period


_last_period: tuple[datetime | None, date] = (None, date.min)


def period_end(period: date) -> datetime:
    following = date(period.year + (period.month == 12), period.month % 12 + 1, 1)
    return datetime(following.year, following.month, 1, tzinfo=UTC)


def limit_exceeded(meter: str, moment: datetime) -> PerkamoError:
    retry = max(1, int((period_end(period_of(moment)) - moment).total_seconds()))
    return PerkamoError(
        Code.USAGE_LIMIT_EXCEEDED,
        f"The Space's {meter} limit for this month is reached; it resets at the start of "
        "next month or when the limit is raised.",
        retry_after=retry,
    )


class UsageLedger:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._used: SharedCache[tuple[int, date], dict[str, int]] = SharedCache(self._committed)
        self._reserved: dict[tuple[int, date, str], int] = {}
        self._requests: dict[tuple[int, date, str], int] = {}  # not yet flushed
        self._settled: trio.Event | None = None  # set at the next settle, if anyone waits

    async def _committed(self, key: tuple[int, date]) -> dict[str, int]:
        return await self._db.run(usage_counters, *key)

    async def load(self, space_id: int, period: date) -> dict[str, int]:
        """The committed meters of a period (read from storage once per process; what this
        process commits is added as it commits)."""
        return await self._used.get((space_id, period))

    async def refresh(self, space_id: int, period: date) -> None:
        """Read the period's committed meters again: other server processes add to them
        too, and PostgreSQL found a limit reached that this process's count had not."""
        self._used.put((space_id, period), await self._committed((space_id, period)))

    def reserve(
        self, space_id: int, period: date, meter: str, amount: int, limits: Mapping[str, int]
    ) -> bool:
        """Reserve ``amount`` under the limit (call ``load`` first); False when over."""
        limit = limits.get(meter)
        key = (space_id, period, meter)
        if limit is not None:
            used = (self._used.peek((space_id, period)) or {}).get(meter, 0)
            if used + self._reserved.get(key, 0) + amount > limit:
                return False
        self._reserved[key] = self._reserved.get(key, 0) + amount
        return True

    def settle(self, space_id: int, period: date, meter: str, reserved: int, used: int) -> None:
        """Turn a reservation into committed usage (``used`` may be less; the rest frees)."""
        key = (space_id, period, meter)
        self._reserved[key] = self._reserved.get(key, 0) - reserved
        meters = self._used.peek((space_id, period))
        if used and meters is not None:
            meters[meter] = meters.get(meter, 0) + used
        if self._settled is not None:
            self._settled.set()
            self._settled = None

    def in_flight(self, space_id: int, period: date, meter: str) -> int:
        """Reserved and not yet settled: usage that may still be released (a duplicate, a
        refusal), so a limit it fills is not yet certainly reached."""
        return self._reserved.get((space_id, period, meter), 0)

    async def wait_until_settled(self, space_id: int, period: date, meter: str) -> None:
        """Until nothing of that meter is in flight (the caller must hold no reservation)."""
        while self.in_flight(space_id, period, meter) > 0:
            if self._settled is None:
                self._settled = trio.Event()
            await self._settled.wait()

    def count_request(self, space_id: int, moment: datetime, meter: str = "api_requests") -> None:
        key = (space_id, period_of(moment), meter)
        self._requests[key] = self._requests.get(key, 0) + 1

    async def flush_requests(self, commit: Callable[[Unit], Awaitable[Verdict]]) -> None:
        pending, self._requests = self._requests, {}
        if not pending:
            return
        verdict = await commit(Unit({}, None, usage=dict(pending)))
        if verdict.status is Status.COMMITTED:
            for (space_id, period, meter), n in pending.items():
                if (meters := self._used.peek((space_id, period))) is not None:
                    meters[meter] = meters.get(meter, 0) + n
        else:  # keep them for the next flush
            for key, n in pending.items():
                self._requests[key] = self._requests.get(key, 0) + n

    async def run_request_flusher(self, commit: Callable[[Unit], Awaitable[Verdict]]) -> None:
        while True:
            await trio.sleep(1)
            await self.flush_requests(commit)

    async def meters(self, space_id: int, moment: datetime, limits: Mapping[str, int]) -> Meters:
        """The period's meters: committed, plus the requests not yet flushed."""
        period = period_of(moment)
        used = dict(await self._db.run(usage_counters, space_id, period))
        for meter in REQUEST_METERS:
            used[meter] = used.get(meter, 0) + self._requests.get((space_id, period, meter), 0)
        return Meters(
            start=datetime(period.year, period.month, 1, tzinfo=UTC),
            end=period_end(period),
            used={m: used.get(m, 0) for m in METERS},
            limits={m: limits.get(m) for m in METERS},
            signed_share=signed_share(used),
        )


@dataclass(frozen=True, slots=True)
class Meters:
    """One Space's usage in one calendar month (UTC): [start, end)."""

    start: datetime
    end: datetime
    used: dict[str, int]
    limits: dict[str, int | None]
    signed_share: Decimal | None


def signed_share(used: dict[str, int]) -> Decimal | None:
    """The share of the period's mutating requests that carried a valid signature (three
    decimals); None before the first mutating request."""
    mutating = used.get("mutating_requests", 0)
    if not mutating:
        return None
    return (Decimal(used.get("signed_requests", 0)) / mutating).quantize(Decimal("0.001"))
