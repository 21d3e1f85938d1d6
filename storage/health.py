"""Whether PostgreSQL answers, as a background probe last saw it.

``/readyz`` must answer within a second however busy the server is, so it never queues a
query behind the work it reports on: a probe on its own connection and thread checks every
half second, and readiness is the probe's latest verdict — unless the pool lost a
connection since that probe began (a failover, a server stopped): then storage is not ready
until a probe begun afterwards succeeds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
import trio

from ._errors import StorageUnavailable
from .database import DEFAULT_TIMEOUTS, Database, Timeouts
from .dedicated import DedicatedConnection

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.5
STALE_SECONDS = 3.0  # a verdict older than this (the probe itself is stuck) is "not ready"
PROBE_SECONDS = 2.0  # a probe not answered by then is abandoned: "unreachable"


def _select_one(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT 1").fetchone()


class StorageHealth:
    def __init__(
        self, url: str, timeouts: Timeouts = DEFAULT_TIMEOUTS, db: Database | None = None
    ) -> None:
        self._conn = DedicatedConnection(url, timeouts, one_session=False)
        self._db = db
        self.healthy = False
        self.checked_at = -float("inf")
        self._verified_at = -float("inf")  # when the last successful probe began (monotonic)

    def ready(self) -> bool:
        lost = self._db is not None and self._db.lost_at >= self._verified_at
        return self.healthy and not lost and trio.current_time() - self.checked_at < STALE_SECONDS

    async def check(self) -> bool:
        """One probe now; returns and records its verdict."""
        began = time.monotonic()
        try:
            await self._conn.run(_select_one, seconds=PROBE_SECONDS)
            healthy = True
            self._verified_at = began
        except StorageUnavailable:
            healthy = False
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
            self._conn.close()
