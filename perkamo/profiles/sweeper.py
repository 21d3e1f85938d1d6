"""The sweeper (docs/architecture.md "Time: lots and the sweeper"): settling needs no write to
happen. Every profile whose next due time has come (a pending lot to release, a lot to expire) gets
a ``tick`` — a write of its own, ordered in the profile's actor and committed like any other
(commands/tick.py) — within 60 s of its due time.

Due times cluster at local midnights (every lot of a day expires at the same instant), so
the sweeper paces itself: at most ``rate`` ticks a second per member, in slices of
``SLICE``, leaving the rest of the server's capacity to live traffic; a sweep walks every
profile due, then it waits at most ``POLL_SECONDS`` before the next. "Within 60 s" holds
while a member's due profiles arrive slower than ``rate``; ``statistics().lag_seconds`` —
how late the last tick was — says when they do not (``/metrics``:
``perkamo_sweeper_lag_seconds``).

The sweeper owns nothing but its pace: where due profiles come from (``find``: storage,
the shards this member owns) and how a tick reaches a profile (``send``: the gateway,
forwarded to the shard's owner when that is another member) are given to it, and so is
the wall clock (virtual in tests). A sweep walks the due profiles once, in order (a keyset
cursor): a tick that fails, or finds nothing due, leaves its profile due — tried again at
the next sweep, never twice in one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import trio

from storage import is_outage
from storage.sweep import Due

log = logging.getLogger(__name__)

POLL_SECONDS = 10.0  # the longest wait between sweeps (a tick within 60 s of its due time)
SLICE = 100  # ticks sent together (one cohort of actors, one group commit)
PAGE = 1000  # due profiles read at a time

Cursor = tuple[datetime, int, str]  # (due time, Space, user) of the last profile ticked
FindDue = Callable[[datetime, Cursor | None, int], Awaitable[list[Due]]]
SendTicks = Callable[[list[Due], datetime], Awaitable[list[object]]]


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SweeperStatistics:
    sweeps: int = 0
    ticks: int = 0  # sent
    failed: int = 0  # answered with an error (tried again at the next sweep)
    lag_seconds: float = 0.0  # how late after its due time the latest tick was sent


class Sweeper:
    def __init__(
        self,
        find: FindDue,
        send: SendTicks,
        *,
        rate: float = 2000.0,
        clock: Callable[[], datetime] = wall_clock,
        poll: float = POLL_SECONDS,
    ) -> None:
        if rate <= 0:
            raise ValueError("a sweeper needs a positive rate")
        self._find = find
        self._send = send
        self._rate = rate
        self._clock = clock
        self._poll = poll
        self._stats = SweeperStatistics()

    def statistics(self) -> SweeperStatistics:
        return self._stats

    async def run(self) -> None:
        """Sweep, wait, sweep again, until cancelled. A sweep that fails (storage away)
        is logged and tried again after the wait."""
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                if not is_outage(exc):
                    log.exception("a sweep failed; the next one tries again")
                else:  # expected while the database is away: no traceback
                    log.warning("sweep paused: storage unavailable (%s)", exc)
            await trio.sleep(self._poll)

    async def sweep(self) -> int:
        """Tick every profile due now, at most ``rate`` a second; returns the ticks sent."""
        cursor: Cursor | None = None
        sent = 0
        started = trio.current_time()
        now = self._clock()
        while due := await self._find(now, cursor, PAGE):
            cursor = due[-1].cursor
            for start in range(0, len(due), SLICE):
                part = due[start : start + SLICE]
                # Paced from the sweep's start: a burst never exceeds the rate.
                await trio.sleep_until(started + (sent + len(part)) / self._rate)
                at = self._clock()
                answers = await self._send(part, at)
                sent += len(part)
                self._count(part, answers, at)
        self._stats = replace(self._stats, sweeps=self._stats.sweeps + 1)
        return sent

    def _count(self, part: list[Due], answers: list[object], at: datetime) -> None:
        failed = sum(isinstance(a, Exception) for a in answers)
        lag = max((at - d.due_at).total_seconds() for d in part)
        s = self._stats
        self._stats = replace(
            s, ticks=s.ticks + len(part), failed=s.failed + failed, lag_seconds=max(lag, 0.0)
        )
