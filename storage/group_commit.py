"""The group-commit writer: many actors' writes share one transaction.

One task owns a dedicated connection. Whenever the previous flush has finished it takes every
unit staged since (up to ``max_units``) and writes them in one transaction: events inserted
with ``ON CONFLICT DO NOTHING RETURNING``, new profiles inserted, existing ones updated only
at their expected version. A unit with a conflicting event or a stale snapshot is set aside
with its verdict and the rest is flushed again; every waiter is resolved only after COMMIT.
There is no fixed delay: a lone unit commits at once, a busy server batches naturally.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any

import psycopg
import trio

from ._errors import StorageUnavailable
from .database import connect

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EventRow:
    space_id: int
    transaction_id: str
    user_id: str
    event: str
    context: str  # JSON text
    occurred_at: datetime
    received_at: datetime
    request_hash: bytes
    outcome: str  # JSON text
    profile_version: int = 0  # the version its unit commits; with position, replay order
    position: int = 0


@dataclass(slots=True)
class IdentifyRow:
    space_id: int
    user_id: str
    traits: str  # JSON text of the patch
    received_at: datetime
    program_versions: str  # JSON text
    profile_version: int
    position: int


@dataclass(slots=True)
class RedemptionRow:
    space_id: int
    transaction_id: str
    user_id: str
    reward_key: str
    context: str  # JSON text
    received_at: datetime
    request_hash: bytes
    outcome: str  # JSON text
    profile_version: int = 0
    position: int = 0


@dataclass(slots=True)
class OutboxRow:
    """A webhook delivery, written in the same transaction as what it announces."""

    id: str
    space_id: int
    event_type: str
    body: str  # the exact JSON text that will be POSTed
    created_at: datetime


# (space_id, first day of the month, meter) -> increment
UsageKey = tuple[int, date, str]


@dataclass(slots=True)
class SnapshotWrite:
    """The profile after the unit; ``expected_version`` 0 means "create it"."""

    space_id: int
    user_id: str
    traits: str  # JSON text
    state: str  # JSON text
    expected_version: int
    updated_at: datetime


@dataclass(slots=True)
class Unit:
    """Writes that commit together or not at all (one actor's batch)."""

    events: list[EventRow]
    snapshot: SnapshotWrite | None
    redemptions: list[RedemptionRow] = field(default_factory=list)
    usage: dict[UsageKey, int] = field(default_factory=dict)
    outbox: list[OutboxRow] = field(default_factory=list)
    identifies: list[IdentifyRow] = field(default_factory=list)


class Status(Enum):
    COMMITTED = "committed"
    CONFLICT = "conflict"  # some transaction ids are taken: see Verdict.conflicts
    STALE = "stale"  # the profile's version moved: reload and re-apply
    UNAVAILABLE = "unavailable"  # nothing was committed
    OUTCOME_UNKNOWN = "outcome_unknown"  # COMMIT was in flight when the connection failed


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    conflicts: frozenset[str] = frozenset()  # event transaction ids that are taken
    redemption_conflicts: frozenset[str] = frozenset()


@dataclass(slots=True)
class WriterStatistics:
    flushes: int = 0
    units: int = 0
    events: int = 0
    retried_flushes: int = 0
    failed_flushes: int = 0
    max_flush_units: int = 0
    last_flush_seconds: float = 0.0
    total_flush_seconds: float = 0.0
    queued: int = 0


@dataclass(slots=True)
class _Pending:
    unit: Unit
    done: trio.Event = field(default_factory=trio.Event)
    verdict: Verdict | None = None


_INSERT_EVENTS = """
INSERT INTO events (space_id, transaction_id, user_id, event, context, occurred_at,
                    received_at, request_hash, outcome, profile_version, position)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::jsonb[],
                     %s::timestamptz[], %s::timestamptz[], %s::bytea[], %s::json[],
                     %s::bigint[], %s::integer[])
ON CONFLICT (space_id, transaction_id) DO NOTHING
RETURNING space_id, transaction_id, user_id
"""

_INSERT_REDEMPTIONS = """
INSERT INTO redemptions (space_id, transaction_id, user_id, reward_key, context, received_at,
                         request_hash, outcome, profile_version, position)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::jsonb[],
                     %s::timestamptz[], %s::bytea[], %s::json[], %s::bigint[], %s::integer[])
ON CONFLICT (space_id, transaction_id) DO NOTHING
RETURNING space_id, transaction_id, user_id
"""

_ADD_USAGE = """
INSERT INTO usage_counters (space_id, period, meter, used)
SELECT * FROM unnest(%s::bigint[], %s::date[], %s::text[], %s::bigint[])
ON CONFLICT (space_id, period, meter) DO UPDATE SET used = usage_counters.used + EXCLUDED.used
"""

_INSERT_IDENTIFIES = """
INSERT INTO identifies (space_id, user_id, traits, received_at, program_versions,
                        profile_version, position)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::jsonb[], %s::timestamptz[], %s::jsonb[],
                     %s::bigint[], %s::integer[])
"""

_INSERT_OUTBOX = """
INSERT INTO webhook_deliveries (id, space_id, event_type, body, status, next_attempt_at,
                                created_at)
SELECT i, s, t, b, 'pending', c, c
FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::timestamptz[])
     AS v(i, s, t, b, c)
"""

_INSERT_PROFILES = """
INSERT INTO profiles (space_id, user_id, traits, state, version, created_at, updated_at)
SELECT s, u, t, st, 1, ts, ts
FROM unnest(%s::bigint[], %s::text[], %s::jsonb[], %s::jsonb[], %s::timestamptz[])
     AS v(s, u, t, st, ts)
ON CONFLICT (space_id, user_id) DO NOTHING
RETURNING space_id, user_id
"""

_UPDATE_PROFILES = """
UPDATE profiles AS p
SET traits = v.t, state = v.st, version = v.expected + 1, updated_at = v.ts
FROM unnest(%s::bigint[], %s::text[], %s::jsonb[], %s::jsonb[], %s::timestamptz[],
            %s::bigint[]) AS v(s, u, t, st, ts, expected)
WHERE p.space_id = v.s AND p.user_id = v.u AND p.version = v.expected
RETURNING p.space_id, p.user_id
"""


class GroupCommitWriter:
    """Use :func:`open_group_commit_writer`. ``commit(unit)`` waits for the unit's verdict."""

    def __init__(self, url: str, *, max_units: int = 2000, queue_size: int = 10_000) -> None:
        self._url = url
        self._max_units = max_units
        self._send, self._receive = trio.open_memory_channel[_Pending](queue_size)
        self._conn: psycopg.Connection[Any] | None = None
        self._stats = WriterStatistics()

    async def commit(self, unit: Unit) -> Verdict:
        """Stage ``unit`` and wait until it is committed (or refused). Never raises for
        storage trouble: the verdict says what happened."""
        pending = _Pending(unit)
        self._stats.queued += 1
        await self._send.send(pending)
        await pending.done.wait()
        assert pending.verdict is not None
        return pending.verdict

    def statistics(self) -> WriterStatistics:
        return self._stats

    async def run(self) -> None:
        """The writer loop; returns when the channel is closed and drained."""
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                while len(batch) < self._max_units:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                self._stats.queued -= len(batch)
                started = time.perf_counter()
                verdicts = await trio.to_thread.run_sync(self._flush, [p.unit for p in batch])
                elapsed = time.perf_counter() - started
                self._record(len(batch), elapsed)
                for pending, verdict in zip(batch, verdicts, strict=True):
                    pending.verdict = verdict
                    pending.done.set()
        await trio.to_thread.run_sync(self._close_connection)

    async def close(self) -> None:
        """Admit nothing more; ``run`` finishes what is queued and returns."""
        await self._send.aclose()

    def _record(self, units: int, elapsed: float) -> None:
        s = self._stats
        s.flushes += 1
        s.units += units
        s.max_flush_units = max(s.max_flush_units, units)
        s.last_flush_seconds = elapsed
        s.total_flush_seconds += elapsed

    # -- in the worker thread ------------------------------------------------------------------

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._close_connection()
        if self._conn is None:
            self._conn = connect(self._url)
        return self._conn

    def _flush(self, units: list[Unit]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(units)
        pending = list(range(len(units)))
        first = True
        while pending:
            if not first:
                self._stats.retried_flushes += 1
            first = False
            try:
                conn = self._connection()
                refused = self._write(conn, [units[i] for i in pending])
            except psycopg.errors.DataError as exc:
                # A value PostgreSQL refuses is a property of one unit, not of the storage:
                # flush the halves apart so that only that unit is refused.
                self._rollback_quietly()
                if len(pending) == 1:
                    log.error("a unit cannot be stored: %s", type(exc).__name__)
                    self._stats.failed_flushes += 1
                    verdicts[pending[0]] = Verdict(Status.UNAVAILABLE)
                    break
                self._stats.retried_flushes += 1
                half = len(pending) // 2
                for part in (pending[:half], pending[half:]):
                    for i, verdict in zip(part, self._flush([units[i] for i in part]), strict=True):
                        verdicts[i] = verdict
                break
            except (psycopg.Error, StorageUnavailable) as exc:
                log.warning("flush failed before commit: %s", type(exc).__name__)
                self._stats.failed_flushes += 1
                self._rollback_quietly()
                for i in pending:
                    verdicts[i] = Verdict(Status.UNAVAILABLE)
                break
            if refused:
                conn.rollback()
                for position, verdict in refused.items():
                    verdicts[pending[position]] = verdict
                pending = [i for n, i in enumerate(pending) if n not in refused]
                continue
            try:
                conn.commit()
            except psycopg.Error as exc:
                log.error("commit outcome unknown: %s", type(exc).__name__)
                self._stats.failed_flushes += 1
                self._close_connection()
                for i in pending:
                    verdicts[i] = Verdict(Status.OUTCOME_UNKNOWN)
                break
            for i in pending:
                verdicts[i] = Verdict(Status.COMMITTED)
                self._stats.events += len(units[i].events)
            break
        return [v if v is not None else Verdict(Status.UNAVAILABLE) for v in verdicts]

    def _rollback_quietly(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except psycopg.Error:
            self._close_connection()

    def _write(self, conn: psycopg.Connection[Any], units: list[Unit]) -> dict[int, Verdict]:
        """Run the flush's statements (no COMMIT); returns the refused units by position."""
        refused: dict[int, Verdict] = {}
        with conn.cursor() as cur:
            events = [(n, e) for n, u in enumerate(units) for e in u.events]
            if events:
                cur.execute(
                    _INSERT_EVENTS,
                    (
                        [e.space_id for _, e in events],
                        [e.transaction_id for _, e in events],
                        [e.user_id for _, e in events],
                        [e.event for _, e in events],
                        [e.context for _, e in events],
                        [e.occurred_at for _, e in events],
                        [e.received_at for _, e in events],
                        [e.request_hash for _, e in events],
                        [e.outcome for _, e in events],
                        [e.profile_version for _, e in events],
                        [e.position for _, e in events],
                    ),
                    binary=True,
                )
                inserted = {(s, t, u) for s, t, u in cur.fetchall()}
                conflicts: dict[int, set[str]] = {}
                for n, e in events:
                    if (e.space_id, e.transaction_id, e.user_id) not in inserted:
                        conflicts.setdefault(n, set()).add(e.transaction_id)
                for n, txs in conflicts.items():
                    refused[n] = Verdict(Status.CONFLICT, frozenset(txs))
            redemptions = [(n, r) for n, u in enumerate(units) for r in u.redemptions]
            if redemptions:
                cur.execute(
                    _INSERT_REDEMPTIONS,
                    (
                        [r.space_id for _, r in redemptions],
                        [r.transaction_id for _, r in redemptions],
                        [r.user_id for _, r in redemptions],
                        [r.reward_key for _, r in redemptions],
                        [r.context for _, r in redemptions],
                        [r.received_at for _, r in redemptions],
                        [r.request_hash for _, r in redemptions],
                        [r.outcome for _, r in redemptions],
                        [r.profile_version for _, r in redemptions],
                        [r.position for _, r in redemptions],
                    ),
                    binary=True,
                )
                taken = {(s, t, u) for s, t, u in cur.fetchall()}
                for n, r in redemptions:
                    if (r.space_id, r.transaction_id, r.user_id) not in taken:
                        previous = refused.get(n, Verdict(Status.CONFLICT))
                        refused[n] = Verdict(
                            Status.CONFLICT,
                            previous.conflicts,
                            previous.redemption_conflicts | {r.transaction_id},
                        )
            creates = [(n, u.snapshot) for n, u in enumerate(units) if u.snapshot is not None]
            new = [(n, s) for n, s in creates if s.expected_version == 0]
            old = [(n, s) for n, s in creates if s.expected_version > 0]
            for sql, group, extra in (
                (_INSERT_PROFILES, new, False),
                (_UPDATE_PROFILES, old, True),
            ):
                if not group:
                    continue
                params: list[list[Any]] = [
                    [s.space_id for _, s in group],
                    [s.user_id for _, s in group],
                    [s.traits for _, s in group],
                    [s.state for _, s in group],
                    [s.updated_at for _, s in group],
                ]
                if extra:
                    params.append([s.expected_version for _, s in group])
                cur.execute(sql, params, binary=True)
                written = {(s, u) for s, u in cur.fetchall()}
                for n, s in group:
                    if (s.space_id, s.user_id) not in written and n not in refused:
                        refused[n] = Verdict(Status.STALE)
            if not refused:
                identifies = [row for unit in units for row in unit.identifies]
                if identifies:
                    cur.execute(
                        _INSERT_IDENTIFIES,
                        (
                            [i.space_id for i in identifies],
                            [i.user_id for i in identifies],
                            [i.traits for i in identifies],
                            [i.received_at for i in identifies],
                            [i.program_versions for i in identifies],
                            [i.profile_version for i in identifies],
                            [i.position for i in identifies],
                        ),
                        binary=True,
                    )
                outbox = [row for unit in units for row in unit.outbox]
                if outbox:
                    cur.execute(
                        _INSERT_OUTBOX,
                        (
                            [o.id for o in outbox],
                            [o.space_id for o in outbox],
                            [o.event_type for o in outbox],
                            [o.body for o in outbox],
                            [o.created_at for o in outbox],
                        ),
                        binary=True,
                    )
                # Meters count only what this transaction commits: the units that stand.
                totals: dict[UsageKey, int] = {}
                for unit in units:
                    for key, amount in unit.usage.items():
                        totals[key] = totals.get(key, 0) + amount
                if totals:
                    keys = list(totals)
                    cur.execute(
                        _ADD_USAGE,
                        (
                            [k[0] for k in keys],
                            [k[1] for k in keys],
                            [k[2] for k in keys],
                            [totals[k] for k in keys],
                        ),
                        binary=True,
                    )
        return refused


@asynccontextmanager
async def open_group_commit_writer(
    url: str, *, max_units: int = 2000
) -> AsyncIterator[GroupCommitWriter]:
    """Run a writer for the duration of the block; on exit it flushes what is queued."""
    writer = GroupCommitWriter(url, max_units=max_units)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        try:
            yield writer
        finally:
            await writer.close()
