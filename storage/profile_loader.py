"""Batched profile loads: every activation waiting at the same moment shares one query.

Activating a profile needs its snapshot first. Under load many profiles activate at once; a
round trip each would make the loads the bottleneck, so one task collects pending loads and
reads them all in one statement on its own (autocommit) connection, sent from trio itself
(native.py: no worker thread).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from actors import Future, wait_all

from ._errors import StorageUnavailable
from ._queue import BatchQueue
from .database import DEFAULT_TIMEOUTS, Timeouts, keyed_plans_only
from .native import NativeConnection, Session
from .profiles import ProfileRow

log = logging.getLogger(__name__)

_LOAD_MANY = """
SELECT p.space_id, p.user_id, p.traits::text, p.state::text, p.version, p.created_at, p.updated_at
FROM profiles AS p
JOIN unnest(%b::bigint[], %b::text[]) AS k(s, u) ON p.space_id = k.s AND p.user_id = k.u
"""


class _Pending(Future["ProfileRow | None"]):
    __slots__ = ("key",)

    def __init__(self, key: tuple[int, str]) -> None:
        super().__init__()
        self.key = key


class ProfileLoader:
    def __init__(
        self, url: str, *, max_batch: int = 1000, timeouts: Timeouts = DEFAULT_TIMEOUTS
    ) -> None:
        self._max_batch = max_batch
        self._queue: BatchQueue[_Pending] = BatchQueue()
        # Autocommit: a load holds no snapshot. Abandoned past the timeouts' call bound, a
        # load fails (StorageUnavailable) and the connection is discarded.
        self._conn = NativeConnection(url, timeouts, prepare=keyed_plans_only)
        self._seconds = timeouts.call

    async def load(self, space_id: int, user_id: str) -> ProfileRow | None:
        """The stored profile, or None. Raises StorageUnavailable."""
        pending = _Pending((space_id, user_id))
        self._queue.put(pending)
        return await pending.wait()

    async def load_many(
        self, keys: list[tuple[int, str]]
    ) -> list[ProfileRow | None | StorageUnavailable]:
        """Each key's stored profile (None: none stored), or the StorageUnavailable its
        load failed with; one wait for all."""
        pending = [_Pending(key) for key in keys]
        for p in pending:
            self._queue.put(p)
        await wait_all(pending)
        out: list[ProfileRow | None | StorageUnavailable] = []
        for p in pending:
            try:
                out.append(p.result())
            except StorageUnavailable as exc:
                out.append(exc)
        return out

    async def run(self) -> None:
        try:
            while batch := await self._queue.take(self._max_batch):
                try:
                    async with self._conn.session(self._seconds, "loading profiles") as session:
                        rows = await _query(session, [p.key for p in batch])
                except StorageUnavailable as exc:
                    for p in batch:
                        p.fail(exc)
                    continue
                for p in batch:
                    p.resolve(rows.get(p.key))
        finally:
            self._conn.close(finished=True)

    def close(self) -> None:
        self._queue.close()


async def _query(
    session: Session, keys: list[tuple[int, str]]
) -> dict[tuple[int, str], ProfileRow]:
    result = await session.execute(_LOAD_MANY, ([k[0] for k in keys], [k[1] for k in keys]))
    return {
        (space_id, user_id): ProfileRow(traits, state, version, created_at, updated_at)
        for space_id, user_id, traits, state, version, created_at, updated_at in session.rows(
            result
        )
    }


@asynccontextmanager
async def open_profile_loader(
    url: str, *, timeouts: Timeouts = DEFAULT_TIMEOUTS
) -> AsyncIterator[ProfileLoader]:
    loader = ProfileLoader(url, timeouts=timeouts)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(loader.run)
        try:
            yield loader
        finally:
            loader.close()
