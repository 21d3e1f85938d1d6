"""Admission (docs/api.md (errors)): the server holds only the work it can answer in time.

Every message admitted to a profile — batch items included — counts until it is answered.
The bound follows the rate at which messages are answered: it admits what the server
drains in ``budget`` seconds at the rate measured over the last ``WINDOW_SECONDS`` (a
window, not a moving average: answers arrive in bursts, one group commit at a time, and a
quarter second without a commit must not halve the bound), never fewer than ``floor`` (a
lone batch on an idle server always fits) nor more than ``ceiling``
(``PERKAMO_MAX_PENDING``). Beyond it new items are refused at once with 503 overloaded,
so nothing admitted waits long enough to exceed the 5 s request timeout. A fixed bound
cannot do that: how much a server drains per second depends on the machine and on the
work (measured in bench/RESULTS.md; the flood test holds every answer within 5 s).
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import trio

TICK_SECONDS = 0.25
WINDOW_SECONDS = 2.0


class _Statistics(Protocol):
    @property
    def answered(self) -> int: ...


class _System(Protocol):
    max_pending: int

    def statistics(self) -> _Statistics: ...


class Admission:
    def __init__(self, system: _System, *, budget: float, floor: int, ceiling: int) -> None:
        self._system = system
        self._budget = budget
        self._floor = floor
        self._ceiling = ceiling
        self._samples: deque[tuple[int, float]] = deque()  # (answered, seconds) per tick
        self.rate = 0.0  # messages answered per second over the window
        system.max_pending = min(floor, ceiling)

    def observe(self, answered_delta: int, seconds: float) -> int:
        """Fold in one tick; returns the new bound."""
        self._samples.append((answered_delta, seconds))
        while sum(s for _, s in self._samples) - self._samples[0][1] >= WINDOW_SECONDS:
            self._samples.popleft()
        elapsed = sum(s for _, s in self._samples)
        self.rate = sum(n for n, _ in self._samples) / elapsed if elapsed > 0 else 0.0
        bound = max(self._floor, min(self._ceiling, int(self.rate * self._budget)))
        self._system.max_pending = bound
        return bound

    async def run(self) -> None:
        last, at = self._system.statistics().answered, trio.current_time()
        while True:
            await trio.sleep(TICK_SECONDS)
            answered, now = self._system.statistics().answered, trio.current_time()
            self.observe(answered - last, now - at)
            last, at = answered, now
