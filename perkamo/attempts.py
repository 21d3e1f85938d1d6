"""Event writes that did not apply — duplicates and refusals — kept for the console's Events
screen (its ``status`` filter). Recorded in memory and written once a second in one
statement, best effort: bounded (beyond 10,000 waiting, the oldest are dropped and
counted), never on a write's path, lost if the process dies before the next write."""

from __future__ import annotations

import logging
from collections import deque
from datetime import datetime
from typing import TypeAlias

import trio

from storage import Database, StorageUnavailable
from storage.browse import record_attempts

log = logging.getLogger(__name__)

MAX_WAITING = 10_000
# (space_id, received_at, transaction_id, user_id, event, status, code, message, request_id)
Attempt: TypeAlias = tuple[
    int, datetime, str | None, str | None, str | None, str, str | None, str | None, str | None
]


class AttemptLog:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: deque[Attempt] = deque(maxlen=MAX_WAITING)
        self.dropped = 0

    def record(
        self,
        space_id: int,
        received_at: datetime,
        transaction_id: str | None,
        user_id: str | None,
        event: str | None,
        status: str,
        code: str | None = None,
        message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        if len(self._waiting) == MAX_WAITING:
            self.dropped += 1
        self._waiting.append(
            (space_id, received_at, transaction_id, user_id, event, status, code,
             (message or "")[:500] or None, request_id)
        )  # fmt: skip

    async def flush(self) -> None:
        rows = list(self._waiting)
        self._waiting.clear()
        if not rows:
            return
        try:
            await self._db.run(record_attempts, rows)
        except StorageUnavailable:
            log.warning("could not record %d refused or duplicate event writes", len(rows))

    async def run(self) -> None:
        while True:
            await trio.sleep(1)
            await self.flush()
