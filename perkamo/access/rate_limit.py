"""Per-API-key token buckets. The clock is injectable so tests run in virtual time."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

DEFAULT_RATE = 1000.0  # requests per second
DEFAULT_BURST = 2000


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # unix time at which the bucket is full again
    retry_after: int

    def headers(self) -> dict[str, str]:
        return {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(self.reset),
        }


class RateLimiter:
    def __init__(
        self,
        clock: Callable[[], float] = trio.current_time,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall_clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, rate: float, burst: int, cost: int = 1) -> Decision:
        """Take ``cost`` tokens (a batch takes one per item) or none at all."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - at) * rate)
        allowed = tokens >= cost
        if allowed:
            tokens -= cost
        self._buckets[key] = (tokens, now)
        full_in = (burst - tokens) / rate
        return Decision(
            allowed=allowed,
            limit=burst,
            remaining=int(tokens),
            reset=math.ceil(self._wall() + full_in),
            retry_after=0 if allowed else max(1, math.ceil((min(cost, burst) - tokens) / rate)),
        )
