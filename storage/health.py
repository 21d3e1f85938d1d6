"""Whether PostgreSQL answers, as a background probe last saw it.

``/readyz`` must answer within a second however busy the server is, so it never queues a
query behind the work it reports on: a probe on its own connection and thread checks every
half second, and readiness is the probe's latest verdict.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import trio

from ._errors import StorageUnavailable
from .database import DEFAULT_TIMEOUTS, Timeouts, connect

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.5
STALE_SECONDS = 3.0  # a verdict older than this (the probe itself is stuck) is "not ready"


class StorageHealth:
    def __init__(self, url: str, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        self._url = url
        self._timeouts = timeouts
        self._conn: psycopg.Connection[Any] | None = None
        self._limiter = trio.CapacityLimiter(1)
        self.healthy = False
        self.checked_at = -float("inf")

    def ready(self) -> bool:
        return self.healthy and trio.current_time() - self.checked_at < STALE_SECONDS

    async def check(self) -> bool:
        """One probe now; returns and records its verdict."""
        # Not abandoned on cancel: the thread owns the connection until it returns (bounded
        # by the connect and statement timeouts).
        healthy = await trio.to_thread.run_sync(self._probe, limiter=self._limiter)
        if healthy != self.healthy:
            log.log(
                logging.INFO if healthy else logging.WARNING,
                "storage is %s",
                "reachable" if healthy else "unreachable",
            )
        self.healthy, self.checked_at = healthy, trio.current_time()
        return healthy

    async def run(self) -> None:
        try:
            while True:
                await self.check()
                await trio.sleep(INTERVAL_SECONDS)
        finally:
            if self._conn is not None:
                self._conn.close()

    def _probe(self) -> bool:
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = connect(self._url, autocommit=True, timeouts=self._timeouts)
            self._conn.execute("SELECT 1").fetchone()
            return True
        except (psycopg.Error, StorageUnavailable):
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            return False
