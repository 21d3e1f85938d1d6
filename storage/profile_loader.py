"""Batched profile loads: every activation waiting at the same moment shares one query.

Activating a profile needs its snapshot first. Under load many profiles activate at once; a
thread hop and a round trip each would make the hand-off between trio and worker threads the
bottleneck, so one task collects pending loads and reads them all in one statement on its own
(autocommit) connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import trio
from psycopg.rows import class_row

from actors import Future, wait_all

from ._errors import StorageUnavailable
from ._queue import BatchQueue
from .database import DEFAULT_TIMEOUTS, Timeouts, keyed_plans_only
from .dedicated import DedicatedConnection
from .profiles import ProfileRow

log = logging.getLogger(__name__)

_LOAD_MANY = """
SELECT p.space_id, p.user_id, p.traits::text, p.state::text, p.version, p.created_at, p.updated_at
FROM profiles AS p
JOIN unnest(%b::bigint[], %b::text[]) AS k(s, u) ON p.space_id = k.s AND p.user_id = k.u
"""


@dataclass(frozen=True, slots=True)
class _KeyedRow:
    space_id: int
    user_id: str
    traits: str
    state: str
    version: int
    created_at: Any
    updated_at: Any


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
        self._conn = DedicatedConnection(url, timeouts, prepare=keyed_plans_only, one_session=False)

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
                    rows = await self._conn.run(_query, [p.key for p in batch])
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


def _query(
    conn: psycopg.Connection[Any], keys: list[tuple[int, str]]
) -> dict[tuple[int, str], ProfileRow]:
    with conn.cursor(row_factory=class_row(_KeyedRow)) as cur:
        cur.execute(_LOAD_MANY, ([k[0] for k in keys], [k[1] for k in keys]), binary=True)
        found = cur.fetchall()
    return {
        (r.space_id, r.user_id): ProfileRow(
            r.traits, r.state, r.version, r.created_at, r.updated_at
        )
        for r in found
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
